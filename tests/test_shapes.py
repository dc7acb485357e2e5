"""Shape-aware point encoding: moment ellipses of real nuclei, ellipse point maps, the library's nucleus shapes, and
one home for the generators' inputs (a training pair and a synthesized sample of the same labels get the same
condition)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.draw import ellipse as draw_ellipse
from skimage.measure import regionprops

from monai_dafgan.data import make_toy_sample, sample_points
from monai_dafgan.data.conditions import mask_condition
from monai_dafgan.data.instances import instance_ellipses
from monai_dafgan.data.pairs import mask_to_image_pairs, points_to_mask_pairs
from monai_dafgan.data.transforms import LabelsToPoints
from monai_dafgan.networks import DAFFGenerator
from monai_dafgan.points import CentroidLibrary, NucleusShapes, orientation_deviations, points_to_maps
from monai_dafgan.synthesis import NucleiSynthesizer

pytestmark = pytest.mark.usefixtures("single_thread")

TINY = dict(ngf=8, n_downsampling=2, n_blocks=1, local_enhancer=True, ngf_local=4, n_blocks_local=1)


def two_ellipses() -> np.ndarray:
    inst = np.zeros((80, 80), np.int32)
    rr, cc = draw_ellipse(25, 30, 12, 5, rotation=0.6, shape=inst.shape)
    inst[rr, cc] = 1
    rr, cc = draw_ellipse(60, 50, 4, 9, rotation=-0.3, shape=inst.shape)
    inst[rr, cc] = 2
    return inst


def test_instance_ellipses_match_scikit_image():
    inst = two_ellipses()
    ours = instance_ellipses(inst)
    for region, (major, minor, orientation) in zip(regionprops(inst), ours):
        assert major == pytest.approx(region.axis_major_length)
        assert minor == pytest.approx(region.axis_minor_length)
        assert np.sqrt(1 - (minor / major) ** 2) == pytest.approx(region.eccentricity)
        assert orientation == pytest.approx(np.mod(region.orientation, np.pi))
    assert np.all(instance_ellipses(inst, 3)[2] == 0)  # an id with no pixel
    assert instance_ellipses(np.zeros((5, 5), np.int32)).shape == (0, 3)


def test_ellipse_encoding_redraws_the_ellipse_it_was_given():
    inst = two_ellipses()
    points, _ = LabelsToPoints()(inst[None], (inst > 0)[None].astype(np.int32) * 3)
    point_map, markers = points_to_maps(points, inst.shape, shapes=instance_ellipses(inst, len(points)))
    for k in (1, 2):
        drawn, real = markers[0] == k, inst == k
        assert (drawn & real).sum() / (drawn | real).sum() > 0.85  # the moment ellipse of a drawn ellipse
    assert point_map[3].sum() == (markers > 0).sum() and point_map[0].sum() == inst.size - (markers > 0).sum()


def test_ellipse_encoding_keeps_every_centre_and_splits_overlaps_by_normalised_distance():
    points = np.array([[20, 20, 1], [20, 26, 2], [40, 40, 4]], np.float32)
    shapes = np.array([[20, 6, np.pi / 2], [20, 6, np.pi / 2], [0.0, 0.0, 0.0]])  # two overlapping, one degenerate
    _, markers = points_to_maps(points, (64, 64), shapes=shapes)
    for k, (r, c, _) in enumerate(points.astype(int), start=1):
        assert markers[0, r, c] == k
    assert markers[0, 20, 22] == 1 and markers[0, 20, 24] == 2  # each side goes to its nearer centre
    assert (markers == 3).sum() == 1  # axes under 1 px still draw the centre pixel
    with pytest.raises(ValueError, match="one .* row per point"):
        points_to_maps(points, (64, 64), shapes=shapes[:2])
    with pytest.raises(ValueError, match="finite"):
        points_to_maps(points, (64, 64), shapes=np.where(shapes == 0, np.nan, shapes))


def test_library_measures_saves_and_draws_nucleus_shapes(tmp_path):
    samples = [make_toy_sample(128, seed=0, index=i) for i in range(3)]
    library = CentroidLibrary.from_samples(samples)
    assert "shapes=yes" in repr(library) and library.shapes is not None
    library.save(tmp_path / "library.npz")
    loaded = CentroidLibrary.load(tmp_path / "library.npz")
    for a, b in zip(library.shapes, loaded.shapes):
        np.testing.assert_array_equal(a, b)
    shapes = loaded.nucleus_shapes
    points = sample_points(samples[0])
    drawn = shapes.draw_for(points)
    np.testing.assert_array_equal(drawn, shapes.draw_for(points.copy()))  # a function of the point set
    assert drawn.shape == (len(points), 3) and np.all((drawn[:, 2] >= 0) & (drawn[:, 2] < np.pi))
    for t in np.unique(points[:, 2]).astype(int):  # axes are those of real nuclei of the same type
        real = {tuple(a) for a in shapes.axes[t - 1].tolist()}
        assert all(tuple(a) in real for a in drawn[points[:, 2] == t, :2].tolist())
    with pytest.raises(ValueError, match="no nucleus shapes"):
        CentroidLibrary(library.points, library.sizes).nucleus_shapes


def test_drawn_shapes_follow_the_library_per_type():
    rng = np.random.default_rng(0)
    types = np.repeat([1, 2], 500)
    axes = np.where(types[:, None] == 1, [20.0, 8.0], [10.0, 9.0]) * rng.uniform(0.9, 1.1, (1000, 1))
    shapes = NucleusShapes(types, np.column_stack([axes, rng.uniform(0, np.pi, 1000)]), np.zeros(1000))
    points = np.column_stack([rng.uniform(0, 100, (400, 2)), np.repeat([1, 2], 200)])
    drawn = shapes.draw(points, np.random.default_rng(1))
    assert np.median(drawn[:200, 0]) == pytest.approx(20, rel=0.05) and np.median(drawn[200:, 0]) == pytest.approx(10, rel=0.05)
    assert np.ptp(drawn[:, 2]) == pytest.approx(0.0, abs=1e-9)  # zero deviations: all along the dominant direction
    unknown = shapes.draw(np.array([[5.0, 5.0, 3.0]]), np.random.RandomState(0))  # no type-3 nuclei: any type
    assert unknown[0, 0] > 0


def test_orientation_deviations_are_zero_in_an_aligned_field():
    points = np.array([[r, c, 4] for r in range(0, 50, 10) for c in range(0, 50, 10)], np.float32)
    shapes = np.column_stack([np.full(len(points), 20.0), np.full(len(points), 5.0), np.full(len(points), 0.4)])
    np.testing.assert_allclose(orientation_deviations(points, shapes), 0.0, atol=1e-9)
    shapes[0, 2] = 0.4 + 0.5
    assert orientation_deviations(points, shapes)[0] == pytest.approx(0.5)


# ------------------------------------------------------------------ one home for the generators' inputs
@pytest.fixture(scope="module")
def sample() -> dict:
    return make_toy_sample(64, seed=0, index=1)


@pytest.mark.parametrize("encoding", ["disk", "ellipse"])
def test_training_pair_and_synthesis_give_g1_the_same_point_map(sample, encoding):
    pair = points_to_mask_pairs(None, augment=False, point_encoding=encoding)(sample)
    torch.manual_seed(0)
    g1, g2 = DAFFGenerator(5, 5, output_activation=None, **TINY), DAFFGenerator(6, 3, **TINY)
    library = CentroidLibrary.from_samples([sample])
    synthesizer = NucleiSynthesizer(g1, g2, device="cpu", point_encoding=encoding, nucleus_shapes=library.nucleus_shapes)
    real_shapes = instance_ellipses(np.asarray(sample["label_inst"])[0], len(sample_points(sample)))
    point_maps, _ = synthesizer.encode_points([sample_points(sample)], 64, shapes=[real_shapes])
    np.testing.assert_array_equal(pair["condition"].numpy(), point_maps[0])


def test_training_pair_and_synthesis_give_g2_the_same_condition_and_image_range(sample):
    pair = mask_to_image_pairs(None, augment=False)(sample)
    torch.manual_seed(0)
    synthesizer = NucleiSynthesizer(DAFFGenerator(5, 5, output_activation=None, **TINY), DAFFGenerator(6, 3, **TINY), device="cpu")
    condition = synthesizer.condition(sample["label_inst"], sample["label_type"])
    np.testing.assert_array_equal(pair["condition"].numpy(), condition)
    np.testing.assert_array_equal(condition, mask_condition(sample["label_inst"], sample["label_type"]))
    np.testing.assert_allclose(pair["target"].numpy(), np.asarray(sample["image"]) / 127.5 - 1, atol=1e-6)


def test_ellipse_synthesizer_needs_shapes_and_is_deterministic(sample):
    torch.manual_seed(0)
    g1, g2 = DAFFGenerator(5, 5, output_activation=None, **TINY), DAFFGenerator(6, 3, **TINY)
    with pytest.raises(ValueError, match="needs nucleus_shapes"):
        NucleiSynthesizer(g1, g2, device="cpu", point_encoding="ellipse")
    with pytest.raises(ValueError, match="point_encoding must be one of"):
        NucleiSynthesizer(g1, g2, device="cpu", point_encoding="star")
    shapes = CentroidLibrary.from_samples([sample]).nucleus_shapes
    synthesizer = NucleiSynthesizer(g1, g2, device="cpu", point_encoding="ellipse", nucleus_shapes=shapes)
    a, b = (synthesizer.synthesize([sample_points(sample)], 64, return_intermediates=True)[0] for _ in range(2))
    np.testing.assert_array_equal(a["point_map"], b["point_map"])
    assert a["point_map"][1:].sum() > points_to_maps(sample_points(sample), (64, 64))[0][1:].sum()  # shapes, not dots
