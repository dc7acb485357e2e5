"""The data layer on real CoNSeP tiles ($CONSEP_DIR; skipped when unset)."""

from __future__ import annotations

import numpy as np
import scipy.io

from monai_dafgan.data import SlidingWindowCropDataset, check_sample, consep_file_list, merge_types, sample_points

# Published facts about CoNSeP's Train split (27 tiles): 15,555 nuclei, merged-type histogram below.
CONSEP_TRAIN_NUCLEI = 15555
CONSEP_TRAIN_TYPES = {1: 371, 2: 3941, 3: 5537, 4: 5706}


def test_every_tile_matches_its_files(consep_dir, consep_train):
    files = consep_file_list(consep_dir, "Train")
    assert [s["name"] for s in consep_train] == [f["name"] for f in files]
    for sample, f in zip(consep_train, files):
        check_sample(sample)
        mat = scipy.io.loadmat(f["label"])
        inst_type = merge_types(mat["inst_type"][:, 0])
        points = sample_points(sample)
        assert len(points) == len(inst_type), sample["name"]
        np.testing.assert_array_equal(points[:, 2], inst_type)
        # (row, col) points against CoNSeP's (x, y) = (col, row) centroids
        np.testing.assert_allclose(points[:, :2], mat["inst_centroid"][:, ::-1], atol=1e-3)
        # label_type holds each nucleus's inst_type; type_map pixels may disagree only where annotators mixed types
        inst = mat["inst_map"] > 0
        agree = np.asarray(sample["label_type"])[0][inst] == merge_types(mat["type_map"])[inst]
        assert agree.mean() >= 0.99, sample["name"]
        assert sample["image"].shape == (3, *mat["inst_map"].shape)


def test_consep_train_counts(consep_train):
    names = {s["name"] for s in consep_train}
    types = np.concatenate([sample_points(s)[:, 2] for s in consep_train]).astype(int)
    if names == {f"train_{i}" for i in range(1, 28)}:
        assert types.size == CONSEP_TRAIN_NUCLEI
        assert {t: int((types == t).sum()) for t in range(1, 5)} == CONSEP_TRAIN_TYPES
    assert set(np.unique(types)) <= {1, 2, 3, 4}


def test_paper_crops_on_real_tiles(consep_dir, consep_train):
    crops = SlidingWindowCropDataset(consep_train, window=512, stride=512)
    per_tile = [len(SlidingWindowCropDataset([s], 512, 512)) for s in consep_train[:3]]
    assert per_tile == [4, 4, 4] and len(crops) == 4 * len(consep_train)  # 108 for the 27 Train tiles
    streamed = SlidingWindowCropDataset(consep_file_list(consep_dir), window=540, stride=164, pad=188)
    assert len(streamed) == 49 * len(consep_train)  # HoVer-Net's padded 540/164 extraction
    for i in (0, 24, 48):
        crop = streamed[i]
        check_sample(crop)
        assert crop["image"].shape == (3, 540, 540)
    # an inner window shows every nucleus whose pixels it contains
    crop = crops[0]
    tile = consep_train[0]
    assert crop["label_inst"].max() == np.unique(tile["label_inst"][0, :512, :512]).size - 1
