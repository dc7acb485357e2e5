"""Picture helpers: overlays, type maps, grids, legend and PNG writing."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from monai_dafgan.data.types import TYPE_COLORS
from monai_dafgan.visualize import (
    UNTYPED_COLOR,
    image_grid,
    instance_boundaries,
    legend_strip,
    line_plot,
    overlay_nuclei,
    paired_dot_plot,
    save_png,
    to_rgb_uint8,
    type_map_to_rgb,
)


@pytest.fixture
def two_touching_nuclei():
    """A 12x16 grey image with two touching 4x4 squares: id 1 (inflammatory) and id 2 (epithelial)."""
    image = np.full((3, 12, 16), 100.0, dtype=np.float32)
    inst = np.zeros((1, 12, 16), dtype=np.int32)
    inst[0, 4:8, 4:8] = 1
    inst[0, 4:8, 8:12] = 2
    types = np.where(inst == 1, 2, np.where(inst == 2, 3, 0)).astype(np.int32)
    return image, inst, types


def _ring(top, left, size, shape):
    ring = np.zeros(shape, dtype=bool)
    ring[top : top + size, left : left + size] = True
    ring[top + 1 : top + size - 1, left + 1 : left + size - 1] = False
    return ring


def test_to_rgb_uint8_layouts():
    chw = np.stack([np.full((5, 7), v, dtype=np.float32) for v in (-3.0, 127.6, 300.0)])
    rgb = to_rgb_uint8(chw)
    assert rgb.shape == (5, 7, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[0, 0], [0, 128, 255])
    hwc = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(to_rgb_uint8(hwc), hwc)
    np.testing.assert_array_equal(to_rgb_uint8(hwc[..., 0]), np.repeat(hwc[..., :1], 3, axis=-1))
    with pytest.raises(ValueError):
        to_rgb_uint8(np.zeros((4, 5, 6)))


def test_instance_boundaries_of_touching_squares(two_touching_nuclei):
    _, inst, _ = two_touching_nuclei
    expected = _ring(4, 4, 4, inst.shape[1:]) | _ring(4, 8, 4, inst.shape[1:])
    np.testing.assert_array_equal(instance_boundaries(inst), expected)


def test_overlay_draws_type_coloured_boundaries(two_touching_nuclei):
    image, inst, types = two_touching_nuclei
    out = overlay_nuclei(image, inst, types)
    assert out.shape == (12, 16, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[_ring(4, 4, 4, (12, 16))], np.tile(TYPE_COLORS[2], (12, 1)))
    np.testing.assert_array_equal(out[_ring(4, 8, 4, (12, 16))], np.tile(TYPE_COLORS[3], (12, 1)))
    assert np.all(out[0, 0] == 100) and np.all(out[5, 5] == 100)  # background and interiors untouched

    untyped = overlay_nuclei(image.transpose(1, 2, 0).astype(np.uint8), inst[0])
    assert tuple(untyped[4, 4]) == UNTYPED_COLOR and np.all(untyped[5, 5] == 100)


def test_overlay_fill(two_touching_nuclei):
    image, inst, types = two_touching_nuclei
    filled = overlay_nuclei(image, inst, types, alpha=1.0)
    assert tuple(filled[5, 5]) == TYPE_COLORS[2] and tuple(filled[5, 9]) == TYPE_COLORS[3]
    half = overlay_nuclei(image, inst, types, alpha=0.5)
    np.testing.assert_array_equal(half[5, 5], np.rint((np.array(TYPE_COLORS[2]) + 100) / 2))
    with pytest.raises(ValueError):
        overlay_nuclei(image, inst, types, alpha=1.5)
    with pytest.raises(ValueError):
        overlay_nuclei(image, inst[:, :6], types)


def test_type_map_to_rgb(two_touching_nuclei):
    _, _, types = two_touching_nuclei
    rgb = type_map_to_rgb(types)
    assert rgb.shape == (12, 16, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 0]) == (0, 0, 0)
    assert tuple(rgb[5, 5]) == TYPE_COLORS[2] and tuple(rgb[5, 9]) == TYPE_COLORS[3]
    with pytest.raises(ValueError):
        type_map_to_rgb(np.full((2, 2), 5))


def test_image_grid_dimensions_and_placement():
    a = np.zeros((10, 20, 3), dtype=np.uint8)
    b = np.full((10, 30, 3), 50, dtype=np.uint8)
    c = np.full((3, 15, 20), 200.0, dtype=np.float32)
    grid = image_grid([[a, b], [c]], pad=4)
    assert grid.shape == (4 + 10 + 4 + 15 + 4, 4 + 20 + 4 + 30 + 4, 3) and grid.dtype == np.uint8
    np.testing.assert_array_equal(grid[4:14, 4:24], a)
    np.testing.assert_array_equal(grid[4:14, 28:58], b)
    assert np.all(grid[18:33, 4:24] == 200)
    assert np.all(grid[18:33, 28:58] == 255)  # missing cell stays white
    assert np.all(grid[:4] == 255) and np.all(grid[:, :4] == 255)

    labelled = image_grid([[a, b], [c]], titles=["first", "second"], row_labels=["r1", "r2"], pad=4)
    assert labelled.shape[0] > grid.shape[0] and labelled.shape[1] > grid.shape[1]
    assert np.any(labelled[:8, 30:] < 128)  # some title text is drawn
    with pytest.raises(ValueError):
        image_grid([[a]], row_labels=["one", "two"])
    with pytest.raises(ValueError):
        image_grid([])


@pytest.mark.parametrize("width", [600, 200, 60])
def test_legend_strip(width):
    legend = legend_strip(width)
    assert legend.ndim == 3 and legend.shape[1:] == (width, 3) and legend.dtype == np.uint8
    colours = {tuple(c) for c in legend.reshape(-1, 3)}
    assert all(TYPE_COLORS[t] in colours for t in TYPE_COLORS)
    assert legend_strip(60).shape[0] > legend_strip(600).shape[0]  # narrow strips wrap onto more lines


def test_save_png_round_trip(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    path = save_png(rgb, tmp_path / "new" / "folder" / "rgb.png")
    with Image.open(path) as img:
        assert img.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(img), rgb)
    grey = rgb[..., 0]
    with Image.open(save_png(grey, tmp_path / "grey.png")) as img:
        assert img.mode == "L"
        np.testing.assert_array_equal(np.asarray(img), grey)
    with Image.open(save_png(rgb.transpose(2, 0, 1).astype(np.float32), tmp_path / "chw.png")) as img:
        np.testing.assert_array_equal(np.asarray(img), rgb)
    assert sorted(p.name for p in (tmp_path / "new" / "folder").iterdir()) == ["rgb.png"]  # no temporary file left


def _dot_rows(plot, color, columns):
    """Mean row of the pixels of one colour within a column range (a condition's dot on one item)."""
    rows, _ = np.nonzero(np.all(plot[:, columns[0] : columns[1]] == color, axis=-1))
    return rows.mean() if len(rows) else None


def test_paired_dot_plot_places_each_condition_by_value():
    width = 720
    plot = paired_dot_plot({"real": {"t1": 0.2, "t2": 0.8}, "synthetic": {"t1": 0.5, "t2": 0.5, "t3": float("nan")}},
                           width=width, title="pq")  # fmt: skip
    assert plot.shape == (240, width, 3) and plot.dtype == np.uint8
    left, right = 56, width - 170  # the plot area; the legend lies right of it
    third = (right - left) // 3
    blue, red = (31, 119, 180), (214, 39, 40)
    t1, t2, t3 = [(left + i * third, left + (i + 1) * third) for i in range(3)]
    # image rows grow downwards: a larger value is a smaller row
    assert _dot_rows(plot, blue, t1) > _dot_rows(plot, red, t1)
    assert _dot_rows(plot, blue, t2) < _dot_rows(plot, red, t2)
    assert _dot_rows(plot, blue, t3) is None and _dot_rows(plot, red, t3) is None  # absent and NaN: no dot
    assert _dot_rows(plot, blue, (right, width)) is not None  # legend entries
    with pytest.raises(ValueError, match="at least one"):
        paired_dot_plot({})
    with pytest.raises(ValueError, match="at most 8"):
        paired_dot_plot({str(i): {"t": 0.5} for i in range(9)})
    assert paired_dot_plot({"real": {"t1": float("nan")}}).shape == (240, 720, 3)  # nothing finite: "no data"


def test_line_plot_draws_each_series_and_keeps_long_names_inside():
    width, height = 720, 360
    long_name = "generator feature-matching loss of the multiscale discriminator " * 2
    plot = line_plot({"rising": (np.arange(10), np.arange(10.0)), long_name: (np.arange(10), 9.0 - np.arange(10.0))},
                     width=width, height=height, title="losses")  # fmt: skip
    assert plot.shape == (height, width, 3) and plot.dtype == np.uint8
    blue, red = (31, 119, 180), (214, 39, 40)
    left, right = 56, width - 150  # the plot area; the legend lies right of it
    first_fifth = (left, left + (right - left) // 5)
    # image rows grow downwards: the rising series starts low (a large row), the falling one high
    assert _dot_rows(plot, blue, first_fifth) > _dot_rows(plot, red, first_fifth)
    assert (plot[:, -3:] == 255).all()  # the long legend name is shortened, not cut off at the image's edge
    assert line_plot({"empty": (np.array([]), np.array([]))}).shape == (360, 720, 3)  # "no data"
