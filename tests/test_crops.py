"""Sliding-window crops: window placement, mirrored borders, and the transform/dataset forms."""

from __future__ import annotations

import numpy as np
import pytest
from monai.data import DataLoader, Dataset
from monai.transforms import Compose

from monai_dafgan.data import (
    LabelsToPointsd,
    SlidingWindowCropd,
    SlidingWindowCropDataset,
    check_sample,
    consep_file_list,
    crop_sample,
    nuclei_collate,
    sample_points,
    window_starts,
    write_consep_sample,
)
from monai_dafgan.data.io import LabelFile, make_sample


def _sample(h=40, w=50, seed=0):
    rng = np.random.default_rng(seed)
    inst = np.zeros((h, w), np.int64)
    for k in range(1, 16):  # 15 random rectangles, later ones overwrite earlier (touching/partial nuclei)
        r, c = rng.integers(0, h - 4), rng.integers(0, w - 4)
        inst[r : r + rng.integers(2, 6), c : c + rng.integers(2, 6)] = k
    types = rng.integers(1, 5, 16)
    return make_sample(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), LabelFile(inst, inst_type=types), "tile")


@pytest.mark.parametrize(
    "args, expected",
    [
        ((1000, 512, 512), [0, 488]),  # paper: 4 crops of 512 per tile -> 108 from 27 tiles
        ((1000, 256, 256), [0, 256, 512, 744]),
        ((1000, 540, 164, 188), [-188, -24, 140, 304, 468, 632, 648]),  # HoVer-Net padded mode: 7x7 per tile
        ((100, 256, 64), [0]),  # window larger than the tile: one mirrored window
        ((10, 4, 3), [0, 3, 6]),
    ],
)
def test_window_starts(args, expected):
    assert window_starts(*args) == expected


def test_window_starts_rejects_bad_sizes():
    with pytest.raises(ValueError, match="stride"):
        window_starts(100, 10, 0)


def test_inner_crop_equals_slicing():
    s = _sample()
    c = crop_sample(s, 5, 7, 20, 30)
    check_sample(c)
    np.testing.assert_array_equal(c["image"], s["image"][:, 5:25, 7:37])
    # same partition into instances, renumbered 1..K in sorted order of the old ids
    old = s["label_inst"][0, 5:25, 7:37]
    for new_id in range(1, c["label_inst"].max() + 1):
        olds = np.unique(old[c["label_inst"][0] == new_id])
        assert olds.size == 1 and olds[0] > 0
    np.testing.assert_array_equal(c["label_type"][0], s["label_type"][0, 5:25, 7:37])
    assert c["name"] == "tile_y5_x7"


def test_mirrored_crop_makes_new_instances():
    inst = np.zeros((10, 10), np.int64)
    inst[0:3, 0:2] = 1  # touches the top-left corner
    s = make_sample(np.zeros((10, 10, 3), np.uint8), LabelFile(inst, inst_type=np.array([2])))
    c = crop_sample(s, -3, -2, 6, 4)  # window straddles the corner
    check_sample(c)
    # the original and its three mirror copies (above, left, diagonal) form one 6x4 block but are 4 instances
    assert (c["label_inst"][0] > 0).all() and c["label_inst"].max() == 4
    np.testing.assert_allclose(sorted(map(tuple, sample_points(c)[:, :2])), [(1, 0.5), (1, 2.5), (4, 0.5), (4, 2.5)])
    assert set(sample_points(c)[:, 2]) == {2}
    # symmetric mirroring of pixels: row -1 mirrors row 0
    img = np.arange(10 * 10 * 3, dtype=np.uint8).reshape(10, 10, 3)
    c = crop_sample(make_sample(img, LabelFile(np.zeros((10, 10), np.int64))), -1, 0, 3, 10)
    np.testing.assert_array_equal(c["image"][:, 0], c["image"][:, 1])


def test_transform_returns_list_and_covers_tile():
    s = _sample(40, 50)
    crops = SlidingWindowCropd(window=(16, 20), stride=(16, 20))(s)
    assert [c["name"] for c in crops][:3] == ["tile_y0_x0", "tile_y0_x20", "tile_y0_x30"]
    assert len(crops) == 3 * 3  # rows 0,16,24; cols 0,20,30
    for c in crops:
        check_sample(c)
    # inside a MONAI pipeline: the crops of both tiles flatten into one batch with MONAI's default collate
    crops = SlidingWindowCropd(16)(s)
    assert len(crops) == 3 * 4  # rows 0,16,24; cols 0,16,32,34
    ds = Dataset([s, s], transform=Compose([SlidingWindowCropd(16)]))
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert tuple(batch["image"].shape) == (2 * 12, 3, 16, 16) and len(batch["name"]) == 24
    # with points added per crop, nuclei_collate pads them to one tensor
    ds = Dataset([s, s], transform=Compose([SlidingWindowCropd(16), LabelsToPointsd()]))
    batch = next(iter(DataLoader(ds, batch_size=2, collate_fn=nuclei_collate)))
    counts = [len(sample_points(c)) for c in crops + crops]
    assert batch["num_points"].tolist() == counts and tuple(batch["points"].shape) == (24, max(counts), 3)


def test_dataset_in_memory_and_from_files(tmp_path):
    samples = [_sample(seed=i) for i in range(2)]
    for i, s in enumerate(samples):
        write_consep_sample(tmp_path / "Train", s, name=f"t_{i}")
    in_memory = SlidingWindowCropDataset(samples, 24, 16, pad=4)
    from_files = SlidingWindowCropDataset(consep_file_list(tmp_path), 24, 16, pad=4)
    assert len(in_memory) == len(from_files) == 2 * 3 * 4
    for i in (0, 5, len(in_memory) - 1):
        a, b = in_memory[i], from_files[i]
        check_sample(b)
        for key in ("image", "label_inst", "label_type"):
            np.testing.assert_array_equal(a[key], b[key])
