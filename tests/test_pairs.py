"""Label encodings for the generators and the G1/G2 training pairs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_dafgan.data import make_toy_sample, sample_points
from monai_dafgan.data.pairs import mask_to_image_pairs, points_to_mask_pairs
from monai_dafgan.data.transforms import InstanceEdges, LabelsToPoints, LabelsToPointsd, TypeOneHot
from monai_dafgan.points import RandPointFlip, points_to_maps


def test_type_one_hot():
    types = np.array([[[0, 1, 4], [2, 3, 0]]])
    one_hot = TypeOneHot()(types)
    assert one_hot.shape == (5, 2, 3) and one_hot.dtype == np.float32
    np.testing.assert_array_equal(one_hot.argmax(0), types[0])
    assert isinstance(TypeOneHot()(torch.as_tensor(types)), torch.Tensor)
    with pytest.raises(ValueError, match="0..4"):
        TypeOneHot()(np.array([[[5]]]))


def test_instance_edges_separate_touching_nuclei():
    inst = np.zeros((1, 5, 8), np.int32)
    inst[0, 1:4, 1:4] = 1
    inst[0, 1:4, 4:7] = 2  # touches nucleus 1 along a column
    edges = InstanceEdges()(inst)[0]
    assert edges[2, 3] == 1 and edges[2, 4] == 1  # both sides of the shared boundary
    assert edges[2, 2] == 0 and edges[2, 5] == 0  # interiors
    assert edges[0, 2] == 1 and edges[1, 2] == 1  # both sides of the background boundary
    assert edges[4, 7] == 0


def test_labels_to_points_agrees_with_point_flip():
    sample = make_toy_sample(128, seed=3)
    inst, types = np.asarray(sample["label_inst"]), np.asarray(sample["label_type"])
    points, relabelled = LabelsToPoints()(inst, types)
    np.testing.assert_allclose(points, sample_points(sample), atol=1e-4)
    np.testing.assert_array_equal(relabelled, inst)
    # flipping the labels then recomputing gives the flipped points (as a set: ids get renumbered)
    flipped_points, _ = LabelsToPoints()(inst[:, ::-1, ::-1].copy(), types[:, ::-1, ::-1].copy())
    flip = RandPointFlip(prob=1.0)
    expected, _ = flip(sample_points(sample), (128, 128))
    key = lambda p: np.lexsort((p[:, 1], p[:, 0]))  # noqa: E731
    np.testing.assert_allclose(flipped_points[key(flipped_points)], expected[key(expected)], atol=1e-3)
    out = LabelsToPointsd()({"label_inst": inst[:, :60, :60], "label_type": types[:, :60, :60]})
    assert out["points"].shape[0] == out["label_inst"].max()


def test_points_to_mask_pairs_match_the_sample():
    sample = make_toy_sample(128, seed=1)
    pairs = points_to_mask_pairs(patch_size=None, augment=False)(sample)
    assert set(pairs) == {"condition", "target", "name"}
    assert pairs["condition"].shape == (5, 128, 128) and pairs["target"].shape == (5, 128, 128)
    assert pairs["condition"].dtype == torch.float32 and type(pairs["target"]) is torch.Tensor
    expected_map, _ = points_to_maps(sample_points(sample), (128, 128))
    np.testing.assert_array_equal(pairs["condition"].numpy(), expected_map)
    np.testing.assert_array_equal(pairs["target"].numpy().argmax(0), sample["label_type"][0])


def test_random_pairs_are_consistent_and_seedable():
    sample = make_toy_sample(128, seed=2)
    transform = points_to_mask_pairs(patch_size=64)
    transform.set_random_state(0)
    a = transform(sample)
    transform.set_random_state(0)
    b = transform(sample)
    np.testing.assert_array_equal(a["condition"], b["condition"])
    # the point disks lie on nuclei of the same type in the target (the pair stays aligned under augmentation)
    disk_types = a["condition"].numpy().argmax(0)
    target_types = a["target"].numpy().argmax(0)
    on_disks = disk_types > 0
    assert on_disks.any() and (target_types[on_disks] == disk_types[on_disks]).mean() > 0.9


def test_mask_to_image_pairs():
    sample = make_toy_sample(128, seed=4)
    pairs = mask_to_image_pairs(patch_size=96)(sample)
    condition, target = pairs["condition"], pairs["target"]
    assert condition.shape == (6, 96, 96) and target.shape == (3, 96, 96)
    assert type(target) is torch.Tensor and target.dtype == torch.float32
    assert -1.0 <= float(target.min()) and float(target.max()) <= 1.0
    np.testing.assert_array_equal(condition[:5].sum(0).numpy(), 1.0)
    assert set(np.unique(condition[5].numpy())) <= {0.0, 1.0}


def test_label_boundaries_and_dict_transforms_follow_monai_conventions():
    from monai_dafgan.data.instances import label_boundaries
    from monai_dafgan.data.transforms import InstanceEdgesd, TypeOneHotd

    labels = np.array([[1, 1, 0], [1, 2, 2], [0, 0, 0]])
    expected = np.array([[0, 1, 1], [1, 1, 1], [1, 1, 1]], bool)  # both sides of every change, 4-neighbours only
    np.testing.assert_array_equal(label_boundaries(labels), expected)
    for transform in (LabelsToPointsd(allow_missing_keys=True), TypeOneHotd(allow_missing_keys=True),
                      InstanceEdgesd(allow_missing_keys=True)):
        assert transform({"image": 1}) == {"image": 1}
    with pytest.raises(ValueError, match="instance map and the type map"):
        LabelsToPointsd(keys="label_inst")
    renamed = LabelsToPointsd(keys=("inst", "types"), points_key="p")({"inst": labels[None], "types": labels[None]})
    assert renamed["p"].shape == (2, 3)
