"""Tests of monai_dafgan.metrics: hand-worked cases, agreement with a loop-based HoVer-Net oracle and with MONAI,
the cumulative MONAI metric in an evaluator, and real CoNSeP tiles (skipped unless $CONSEP_DIR is set)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.io as sio
import torch
from monai.metrics import compute_panoptic_quality
from scipy.optimize import linear_sum_assignment

import reference_metrics as ref
from monai_dafgan.metrics import (
    INSTANCE_METRICS,
    DetectionCounts,
    NucleiMetric,
    aji_plus_score,
    aji_score,
    detection_counts,
    dice_score,
    evaluate_nuclei,
    instance_centroids,
    instance_types,
    nuclei_metrics,
    pair_centroids,
    panoptic_quality,
    remap_instances,
    typed_metric_names,
)
from monai_dafgan.metrics import instance as instance_module
from monai_dafgan.metrics._assignment import match_sparse

PAIRINGS = ("hovernet", "within_radius")
ALL_TYPED_KEYS = INSTANCE_METRICS + typed_metric_names(4)


def boxes(shape, *regions) -> np.ndarray:
    """Instance map with id k + 1 painted over the k-th (row_slice, col_slice) region, later regions on top."""
    inst = np.zeros(shape, np.int32)
    for instance_id, (rows, cols) in enumerate(regions, start=1):
        inst[rows, cols] = instance_id
    return inst


def assert_metrics_close(actual: dict, expected: dict, tol: float = 1e-6) -> None:
    assert actual.keys() == expected.keys()
    for key in actual:
        assert actual[key] == pytest.approx(expected[key], abs=tol), key


# ---------------------------------------------------------------------------------------------------------------------
# hand-worked cases


def test_two_nuclei_under_one_prediction():
    # two GTs of area a = 10 side by side; one pred of area 2.5a = 25 covers both
    true = boxes((4, 12), (slice(0, 2), slice(0, 5)), (slice(0, 2), slice(5, 10)))
    pred = boxes((4, 12), (slice(0, 2), slice(0, 10)))
    pred[2, 0:5] = 1
    result = nuclei_metrics(pred, true)
    # AJI: both GTs take the pred: C = 10 + 10, U = 25 + 25 (the pred enters the union twice) -> 20 / 50
    assert result["aji"] == pytest.approx(0.40)
    # AJI+: one pair (I 10, U 25), the other GT unpaired (+10) -> 10 / 35
    assert result["aji_plus"] == pytest.approx(10 / 35)
    # IoU 10/25 = 0.4 <= 0.5: no PQ pair; 1 FP and 2 FN
    assert (result["dq"], result["sq"], result["pq"]) == (0.0, 0.0, 0.0)
    assert (result["tp"], result["fp"], result["fn"]) == (0, 1, 2)
    # binary Dice: |T & P| = 20, |T| + |P| = 20 + 25
    assert result["dice"] == pytest.approx(40 / 45)


@pytest.mark.parametrize("match_iou, expected_pq", [(0.5, 0.0), (0.4, 1 / 3)])
def test_one_nucleus_split_in_halves(match_iou, expected_pq):
    # GT of 20 px, two preds of 10 px each: IoU 10/20 = 0.5 for both
    true = boxes((2, 10), (slice(0, 2), slice(0, 10)))
    pred = boxes((2, 10), (slice(0, 2), slice(0, 5)), (slice(0, 2), slice(5, 10)))
    result = nuclei_metrics(pred, true, match_iou=match_iou)
    # AJI = AJI+: one pair (I 10, U 20) plus the other half unpaired (+10) -> 10 / 30
    assert result["aji"] == pytest.approx(1 / 3)
    assert result["aji_plus"] == pytest.approx(1 / 3)
    # at 0.5 the pairs need IoU > 0.5 strictly: none; at 0.4 Hungarian keeps one (TP 1, FP 1, FN 0):
    # DQ = 1 / (1 + 0.5) = 2/3, SQ = 0.5, PQ = 1/3
    assert result["pq"] == pytest.approx(expected_pq)


def test_partial_overlap_with_known_iou():
    # 4x4 GT, 4x4 pred shifted one column: I = 12, U = 20, IoU 0.6
    true = boxes((4, 6), (slice(0, 4), slice(0, 4)))
    pred = boxes((4, 6), (slice(0, 4), slice(1, 5)))
    expected = {"dice": 24 / 32, "aji": 0.6, "aji_plus": 0.6, "dq": 1.0, "sq": 0.6, "pq": 0.6}
    result = nuclei_metrics(pred, true)
    for key, value in expected.items():
        assert result[key] == pytest.approx(value), key


def test_aji_ties_take_the_first_prediction():
    # preds A = cols 0-3, B = cols 4-7 (8 px each); GT1 = cols 2-5 straddles both, GT2 = cols 6-9
    pred = boxes((2, 10), (slice(0, 2), slice(0, 4)), (slice(0, 2), slice(4, 8)))
    true = boxes((2, 10), (slice(0, 2), slice(2, 6)), (slice(0, 2), slice(6, 10)))
    # IoU(GT1, A) = IoU(GT1, B) = 4 / 12 and IoU(GT2, B) = 4 / 12. HoVer-Net's argmax gives GT1 the first, A:
    # C = 4 + 4, U = 12 + 12 -> 1/3 (had GT1 taken B, A would join the union: 8 / 32)
    assert nuclei_metrics(pred, true)["aji"] == pytest.approx(1 / 3)
    assert nuclei_metrics(pred, true)["aji_plus"] == pytest.approx(1 / 3)


def test_touching_nuclei_with_moved_boundary():
    # GT: A = cols 0-2, B = cols 3-5 (9 px each), no background between them
    true = boxes((3, 7), (slice(0, 3), slice(0, 3)), (slice(0, 3), slice(3, 6)))
    # pred: the boundary moved right by one column: A' = cols 0-3 (12 px), B' = cols 4-5 (6 px); ids 5 and 9
    pred = np.where(boxes((3, 7), (slice(0, 3), slice(0, 4)), (slice(0, 3), slice(4, 6))) == 1, 5, 0)
    pred[:, 4:6] = 9
    # IoU(A, A') = 9/12, IoU(B, B') = 6/9, IoU(B, A') = 3/18
    result = nuclei_metrics(pred, true)
    assert result["dice"] == 1.0  # same foreground
    assert result["sq"] == pytest.approx((9 / 12 + 6 / 9) / 2)
    assert result["dq"] == 1.0
    # AJI: A -> A', B -> B' (6/9 > 3/18): C = 9 + 6, U = 12 + 9
    assert result["aji"] == pytest.approx(15 / 21)
    assert result["aji_plus"] == pytest.approx(15 / 21)


def test_single_nucleus_and_identity():
    true = boxes((5, 5), (slice(1, 4), slice(1, 4)))
    types = np.where(true > 0, 3, 0)
    result = nuclei_metrics(true, true, types, types)
    assert all(result[key] == 1.0 for key in ALL_TYPED_KEYS)
    assert (result["num_true"], result["tp"], result["fp"], result["fn"]) == (1, 1, 0, 0)


def test_non_contiguous_ids_match_contiguous():
    rng = np.random.default_rng(3)
    true, true_type = ref.random_disk_maps(rng, (64, 64), 15)
    pred, pred_type = ref.random_disk_maps(rng, (64, 64), 15)
    expected = nuclei_metrics(pred, true, pred_type, true_type)
    # huge, sparse ids force the sort-based remap; small sparse ids the lookup table
    scattered_pred = np.where(pred > 0, pred.astype(np.int64) * 2**40 + 7, 0)
    scattered_true = np.where(true > 0, true * 17 + 3, 0)
    assert nuclei_metrics(scattered_pred, scattered_true, pred_type, true_type) == expected


@pytest.mark.parametrize("pairing", PAIRINGS)
def test_maps_without_background(pairing):
    # the whole image is covered; HoVer-Net's remap_label raises here
    true = boxes((4, 8), (slice(0, 4), slice(0, 4)), (slice(0, 4), slice(4, 8)))
    pred = boxes((4, 8), (slice(0, 4), slice(0, 5)), (slice(0, 4), slice(5, 8))) + 10
    types = np.ones_like(true)
    assert remap_instances(pred)[1] == 2
    result = nuclei_metrics(pred, true, types, types, pairing=pairing)
    # IoU 16/20 and 12/16; both pairs matched
    assert result["sq"] == pytest.approx((16 / 20 + 12 / 16) / 2)
    assert result["dice"] == 1.0 and result["f1_detection"] == 1.0
    assert_metrics_close(result, ref.reference_nuclei_metrics(pred, true, types, types, pairing=pairing))


EMPTY = np.zeros((6, 6), np.int32)
ONE = boxes((6, 6), (slice(1, 4), slice(1, 4)))  # one nucleus of type 1
# exactly one side empty: every overlap and detection score is 0.0; types 2-4 are on neither side: 1.0
ONE_SIDE_EMPTY = {key: 0.0 for key in ALL_TYPED_KEYS} | {f"{m}_type_{t}": 1.0 for m in ("f1", "pq") for t in (2, 3, 4)}


@pytest.mark.parametrize(
    "pred, true, expected",
    [
        # nothing to find, nothing found: every score is 1.0
        (EMPTY, EMPTY, {key: 1.0 for key in ALL_TYPED_KEYS}),
        (EMPTY, ONE, ONE_SIDE_EMPTY),
        (ONE, EMPTY, ONE_SIDE_EMPTY),
    ],
    ids=["both_empty", "pred_empty", "true_empty"],
)
def test_empty_maps(pred, true, expected):
    result = nuclei_metrics(pred, true, (pred > 0).astype(int), (true > 0).astype(int))
    assert {key: result[key] for key in ALL_TYPED_KEYS} == expected
    assert not any(math.isnan(value) for value in result.values())
    assert result == ref.reference_nuclei_metrics(pred, true, (pred > 0).astype(int), (true > 0).astype(int))


@pytest.mark.parametrize("pairing", PAIRINGS)
@pytest.mark.parametrize("offset, paired", [((0.0, 12.0), True), ((7.2, 9.6), True), ((0.0, 12.0001), False)])
def test_pairing_radius_is_inclusive(pairing, offset, paired):
    pairs, unpaired_a, unpaired_b = pair_centroids([[5.0, 5.0]], [[5.0 + offset[0], 5.0 + offset[1]]], 12.0, pairing)
    assert (len(pairs), len(unpaired_a), len(unpaired_b)) == ((1, 0, 0) if paired else (0, 1, 1))


@pytest.mark.parametrize("gap, f1", [(12, 1.0), (13, 0.0)])
def test_detection_radius_on_maps(gap, f1):
    # single-pixel nuclei: centroids are the pixels themselves, 12 or 13 px apart
    true, pred = np.zeros((3, 20), np.int32), np.zeros((3, 20), np.int32)
    true[1, 2], pred[1, 2 + gap] = 1, 1
    assert nuclei_metrics(pred, true, pred, true)["f1_detection"] == f1


def test_hovernet_pairing_can_lose_pairs_within_radius():
    # (xview3-reference#9) GT at 100, 200, 300; preds at 101, 201 and a stray one at 50. The near pairing costs
    # 1 + 1 + 250 = 252, the shifted one 50 + 99 + 99 = 248: the dense assignment takes it and keeps no pair
    true = np.array([[0.0, 100.0], [0.0, 200.0], [0.0, 300.0]])
    pred = np.array([[0.0, 101.0], [0.0, 201.0], [0.0, 50.0]])
    assert len(pair_centroids(true, pred, 12.0, "hovernet")[0]) == 0
    assert len(pair_centroids(true, pred, 12.0, "within_radius")[0]) == 2


def test_per_type_f1_by_hand():
    # GT and pred centroids along a line; pairs (GT type, pred type): (1, 1), (1, 2), (2, 2);
    # GT 300 (type 3) and GT 400 (type 1) unpaired; pred 500 (type 1) unpaired (too far from everything)
    true_points = np.array([[0, 0], [100, 0], [200, 0], [300, 0], [400, 0]], float)
    pred_points = np.array([[1, 0], [101, 0], [201, 0], [500, 0]], float)
    true_types, pred_types = np.array([1, 1, 2, 3, 1]), np.array([1, 2, 2, 1])
    counts = detection_counts(true_points, pred_points, true_types, pred_types, num_types=4)
    scores = counts.scores()
    # F1_d: TP 3, FP 1, FN 2 -> 6 / 9; accuracy: 2 of 3 pairs agree
    assert scores["f1_detection"] == pytest.approx(6 / 9)
    assert scores["accuracy_type"] == pytest.approx(2 / 3)
    # type 1: TP_c 1, FP_c 0, FN_c 1, FP_d 1, FN_d 1 -> 2 / (2 + 0 + 2 + 1 + 1)
    assert scores["f1_type_1"] == pytest.approx(2 / 6)
    # type 2: TP_c 1, FP_c 1 (GT 1 / pred 2), FN_c 0, no unpaired -> 2 / (2 + 2)
    assert scores["f1_type_2"] == pytest.approx(0.5)
    # type 3: only an unpaired GT -> 0 / 1; type 4 nowhere -> 1.0
    assert scores["f1_type_3"] == 0.0 and scores["f1_type_4"] == 1.0
    assert scores == pytest.approx(ref.type_stats([(true_points, true_types, pred_points, pred_types)]))


def test_instance_types_and_centroids():
    inst = boxes((4, 6), (slice(0, 2), slice(0, 3)), (slice(2, 4), slice(0, 6)), (slice(0, 2), slice(4, 6)))
    inst = np.where(inst > 0, inst * 10, 0)  # ids 10, 20, 30
    type_map = np.zeros_like(inst)
    type_map[0, 0:3] = [2, 2, 1]  # id 10: majority 2
    type_map[2:4, 0:6] = [[3, 3, 4, 4, 0, 0]] * 2  # id 20: tie 3/4 -> 3
    # id 30: no typed pixel -> 0
    np.testing.assert_array_equal(instance_types(inst, type_map), [2, 3, 0])
    np.testing.assert_allclose(instance_centroids(inst), [[0.5, 1.0], [2.5, 2.5], [0.5, 4.5]])


def test_remap_instances():
    inst = np.array([[0, 7, 7], [3, 0, 100]])
    relabelled, num = remap_instances(inst)
    np.testing.assert_array_equal(relabelled, [[0, 2, 2], [1, 0, 3]])
    assert num == 3 and relabelled.dtype == np.int32
    assert remap_instances(np.zeros((0, 0), int))[1] == 0
    big = np.array([[2**50, 5], [5, 2**50]], dtype=np.int64)
    np.testing.assert_array_equal(remap_instances(big)[0], [[2, 1], [1, 2]])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"pred_inst": np.zeros((2, 3, 4)), "true_inst": np.zeros((2, 3, 4))}, r"pred_inst must .*got \(2, 3, 4\)"),
        ({"pred_inst": np.zeros((3, 4)), "true_inst": np.zeros(4)}, r"true_inst must have shape .*\(4,\)"),
        ({"pred_inst": np.zeros((3, 4)), "true_inst": np.zeros((4, 3))}, "same shape"),
        ({"pred_inst": -np.ones((3, 4)), "true_inst": np.zeros((3, 4))}, ">= 0"),
        ({"pred_inst": np.full((3, 4), 0.5), "true_inst": np.zeros((3, 4))}, "integer"),
        ({"pred_inst": np.zeros((3, 4)), "true_inst": np.zeros((3, 4)), "pred_type": np.zeros((3, 4))}, "both"),
        (
            {"pred_inst": np.ones((3, 4)), "true_inst": np.ones((3, 4)), "pred_type": np.full((3, 4), 5),
             "true_type": np.ones((3, 4))},
            r"pred_type must lie in 0\.\.4, got 5\.\.5",
        ),
        ({"pred_inst": np.zeros((3, 4)), "true_inst": np.zeros((3, 4)), "match_iou": 1.5}, "match_iou"),
    ],
    ids=["3d", "1d", "mismatch", "negative", "fractional", "one_type_map", "type_too_large", "bad_iou"],
)
def test_invalid_inputs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        nuclei_metrics(**kwargs)


def test_torch_channel_first_input():
    rng = np.random.default_rng(5)
    true, true_type = ref.random_disk_maps(rng, (48, 48), 8)
    pred, pred_type = ref.random_disk_maps(rng, (48, 48), 8)
    as_tensor = [torch.as_tensor(x[None]).float() for x in (pred, true, pred_type, true_type)]
    assert nuclei_metrics(*as_tensor) == nuclei_metrics(pred, true, pred_type, true_type)


# ---------------------------------------------------------------------------------------------------------------------
# randomised agreement with the loop-based oracle and with MONAI


def random_pair(seed: int, shape=(72, 72)):
    """A random GT and a prediction that is either unrelated or a perturbed copy of it (several kinds)."""
    rng = np.random.default_rng(seed)
    true, true_type = ref.random_disk_maps(rng, shape, int(rng.integers(1, 25)))
    kind = seed % 4
    if kind == 0:
        pred, pred_type = ref.random_disk_maps(rng, shape, int(rng.integers(1, 25)))
    else:
        perturb = [
            lambda x: ref.erode_instances(x, 1),
            lambda x: ref.split_instances(x, 0.4, rng),
            lambda x: ref.merge_neighbours(x, rng, 0.7),
        ][kind - 1]
        pred = ref.shift_map(perturb(true), int(rng.integers(-2, 3)), int(rng.integers(-2, 3)))
        pred_type = ref.retype_instances(pred, 4, rng) if rng.random() < 0.5 else np.where(pred > 0, true_type, 0)
    return pred, true, pred_type, true_type


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("match_iou, pairing", [(0.5, "hovernet"), (0.3, "within_radius")])
def test_agrees_with_reference(seed, match_iou, pairing):
    pred, true, pred_type, true_type = random_pair(seed)
    expected = ref.reference_nuclei_metrics(pred, true, pred_type, true_type, match_iou=match_iou, radius=6.0,
                                            pairing=pairing)
    actual = nuclei_metrics(pred, true, pred_type, true_type, match_iou=match_iou, radius=6.0, pairing=pairing)
    assert_metrics_close(actual, expected)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("match_iou", [0.5, 0.3])
def test_agrees_with_monai_panoptic_quality(seed, match_iou):
    pred, true, _, _ = random_pair(seed)
    ours = nuclei_metrics(pred, true, match_iou=match_iou)
    pred_t, true_t = torch.as_tensor(pred), torch.as_tensor(true)
    for ours_name, monai_name in (("pq", "pq"), ("sq", "sq"), ("dq", "rq")):
        theirs = compute_panoptic_quality(pred_t, true_t, monai_name, match_iou_threshold=match_iou)
        # MONAI computes IoU in float32 and adds 1e-6 to denominators
        assert ours[ours_name] == pytest.approx(float(theirs), abs=1e-5), ours_name


@pytest.mark.parametrize("seed", range(4))
def test_single_metric_functions_match_nuclei_metrics(seed):
    pred, true, _, _ = random_pair(seed)
    together = nuclei_metrics(pred, true)
    assert dice_score(pred, true) == pytest.approx(together["dice"])
    assert aji_score(pred, true) == together["aji"]
    assert aji_plus_score(pred, true) == together["aji_plus"]
    assert panoptic_quality(pred, true) == {key: together[key] for key in ("dq", "sq", "pq", "tp", "fp", "fn")}


def test_sparse_intersection_path(monkeypatch):
    pred, true, _, _ = random_pair(2)
    dense = nuclei_metrics(pred, true)
    monkeypatch.setattr(instance_module, "_DENSE_PAIR_LIMIT", 0)
    assert nuclei_metrics(pred, true) == dense


@pytest.mark.parametrize("seed", range(5))
def test_sparse_matching_is_optimal(seed):
    rng = np.random.default_rng(seed)
    weights = np.where(rng.random((30, 25)) < 0.12, rng.random((30, 25)), 0.0)
    rows, cols = np.nonzero(weights)
    matched = match_sparse(rows, cols, weights[rows, cols], 30, 25, "max_weight")
    assert len(set(rows[matched])) == len(matched) == len(set(cols[matched]))
    best_rows, best_cols = linear_sum_assignment(weights, maximize=True)
    assert weights[rows[matched], cols[matched]].sum() == pytest.approx(weights[best_rows, best_cols].sum())


# ---------------------------------------------------------------------------------------------------------------------
# the MONAI cumulative metric


def to_batch(*images) -> torch.Tensor:
    """B x 2 x H x W tensor from (instance map, type map) pairs."""
    return torch.as_tensor(np.stack([np.stack(image) for image in images]))


def test_cumulative_means_instance_metrics_and_pools_detection():
    metric = NucleiMetric(metric_name=("pq", "aji", "f1_detection", "f1_type_1", "pq_type_1", "pq_type_2", "tp"))
    pairs = [random_pair(seed) for seed in range(6)]
    for batch in (pairs[:4], pairs[4:]):
        metric(
            y_pred=to_batch(*[(pred, pred_type) for pred, _, pred_type, _ in batch]),
            y=to_batch(*[(true, true_type) for _, true, _, true_type in batch]),
        )
    per_image = [evaluate_nuclei(*pair) for pair in pairs]
    assert metric.last_scores == [e.as_dict() for e in per_image[4:]]  # the last call's images, computed once
    result = metric.aggregate()
    assert result["pq"] == pytest.approx(np.mean([e.scores["pq"] for e in per_image]))
    assert result["aji"] == pytest.approx(np.mean([e.scores["aji"] for e in per_image]))
    assert result["tp"] == sum(e.scores["tp"] for e in per_image)
    pooled = sum((e.detection for e in per_image[1:]), per_image[0].detection).scores()
    assert result["f1_detection"] == pytest.approx(pooled["f1_detection"])
    assert result["f1_type_1"] == pytest.approx(pooled["f1_type_1"])
    images = [
        (ref.centroids(ref.remap_label(true)), ref.majority_types(ref.remap_label(true), true_type),
         ref.centroids(ref.remap_label(pred)), ref.majority_types(ref.remap_label(pred), pred_type))
        for pred, true, pred_type, true_type in pairs
    ]
    assert result["f1_type_1"] == pytest.approx(ref.type_stats(images)["f1_type_1"])
    # per-type PQ: mean over the images where the type occurs on some side
    occurs = [(e.detection.num_true_of_type() + e.detection.num_pred_of_type())[1] > 0 for e in per_image]
    present = [e.scores["pq_type_2"] for e, seen in zip(per_image, occurs) if seen]
    assert result["pq_type_2"] == pytest.approx(np.mean(present))


def test_pooled_f1_differs_from_mean_of_f1():
    nucleus = boxes((8, 8), (slice(1, 4), slice(1, 4)))
    three = boxes((8, 8), (slice(0, 2), slice(0, 2)), (slice(5, 7), slice(0, 2)), (slice(5, 7), slice(5, 7)))
    empty = np.zeros((8, 8), np.int32)
    metric = NucleiMetric(metric_name=("f1_detection", "f1_type_1", "dice"))
    # image 1: one nucleus found (F1 1); image 2: three nuclei, nothing predicted (F1 0)
    metric(
        y_pred=to_batch((nucleus, nucleus > 0), (empty, empty)),
        y=to_batch((nucleus, nucleus > 0), (three, three > 0)),
    )
    result = metric.aggregate()
    # pooled: TP 1, FP 0, FN 3 -> 2 / (2 + 3) = 0.4, not the mean (1 + 0) / 2
    assert result["f1_detection"] == pytest.approx(0.4)
    # type 1: TP_c 1, FN_d 3 -> 2 / (2 + 3)
    assert result["f1_type_1"] == pytest.approx(0.4)
    # Dice is a mean over images: (1 + 0) / 2
    assert result["dice"] == pytest.approx(0.5)


def test_cumulative_reset_and_single_name():
    metric = NucleiMetric(metric_name="dice")
    one = boxes((6, 6), (slice(1, 4), slice(1, 4)))[None, None]
    metric(torch.as_tensor(one), torch.as_tensor(one))
    assert metric.aggregate() == 1.0
    metric.reset()
    with pytest.raises(ValueError, match="no data"):
        metric.aggregate()
    metric(torch.as_tensor(np.zeros_like(one)), torch.as_tensor(one))
    assert metric.aggregate() == 0.0


@pytest.mark.parametrize(
    "kwargs, y_shape, match",
    [
        ({"metric_name": "nope"}, None, "unknown metric"),
        ({"metric_name": "f1_detection"}, (1, 1, 6, 6), "type channel"),
        ({}, (1, 3, 6, 6), "B x C x H x W"),
    ],
)
def test_cumulative_invalid(kwargs, y_shape, match):
    with pytest.raises(ValueError, match=match):
        metric = NucleiMetric(**kwargs)
        metric(torch.zeros(y_shape), torch.zeros(y_shape))


def test_in_a_monai_evaluator():
    from monai.data import DataLoader
    from monai.engines import SupervisedEvaluator
    from monai.handlers import IgniteMetricHandler, from_engine

    pairs = [random_pair(seed, shape=(40, 40)) for seed in range(5)]
    data = [
        {"image": torch.as_tensor(np.stack([pred, pred_type])).float(), "label": torch.as_tensor(np.stack([true, tt]))}
        for pred, true, pred_type, tt in pairs
    ]
    transform = from_engine(["pred", "label"])
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=DataLoader(data, batch_size=2),
        network=torch.nn.Identity(),
        key_val_metric={"val_pq": IgniteMetricHandler(NucleiMetric("pq"), output_transform=transform)},
        additional_metrics={
            "nuclei": IgniteMetricHandler(
                NucleiMetric(("aji", "f1_detection")), output_transform=transform, save_details=False
            )
        },
    )
    evaluator.run()
    per_image = [evaluate_nuclei(*pair) for pair in pairs]
    assert evaluator.state.metrics["val_pq"] == pytest.approx(np.mean([e.scores["pq"] for e in per_image]))
    assert evaluator.state.best_metric == pytest.approx(evaluator.state.metrics["val_pq"])
    assert evaluator.state.metrics["aji"] == pytest.approx(np.mean([e.scores["aji"] for e in per_image]))
    pooled = sum((e.detection for e in per_image[1:]), per_image[0].detection)
    assert evaluator.state.metrics["f1_detection"] == pytest.approx(pooled.scores()["f1_detection"])



def test_metric_handler_names_every_score_and_keeps_each_image():
    """NucleiMetricHandler as a key metric: every score under its own name (key metric pq, compared for the best),
    one named row per image in order, each image computed once (decollated lists of 2 per iteration)."""
    from monai.data import DataLoader
    from monai.engines import SupervisedEvaluator

    from monai_dafgan.metrics import NucleiMetricHandler

    pairs = [random_pair(seed, shape=(40, 40)) for seed in range(5)]
    data = [
        {"image": torch.as_tensor(np.stack([pred, pred_type])).float(), "label": torch.as_tensor(np.stack([true, tt])),
         "name": f"tile_{i}"}
        for i, (pred, true, pred_type, tt) in enumerate(pairs)
    ]  # fmt: skip
    handler = NucleiMetricHandler(output_transform=lambda output: ([o["pred"] for o in output], [o["label"] for o in output]))
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=DataLoader(data, batch_size=2),
        network=torch.nn.Identity(),
        key_val_metric={"pq": handler},
    )
    for _ in range(2):  # a second run starts afresh
        evaluator.run()
        per_image = [evaluate_nuclei(*pair).as_dict() for pair in pairs]
        assert [row["name"] for row in handler.images] == [f"tile_{i}" for i in range(5)]
        assert [{k: v for k, v in row.items() if k != "name"} for row in handler.images] == per_image
        metrics = evaluator.state.metrics
        assert metrics["pq"] == pytest.approx(np.mean([e["pq"] for e in per_image]))
        assert evaluator.state.best_metric == metrics["pq"]
        assert metrics["tp"] == sum(e["tp"] for e in per_image)
        assert {"dice", "aji", "aji_plus", "f1_detection", "f1_type_4", "pq_type_4"} <= set(metrics)


def test_detection_counts_round_trip():
    counts = detection_counts(np.array([[0.0, 0.0]]), np.array([[1.0, 1.0]]), np.array([2]), np.array([3]))
    again = DetectionCounts.from_array(counts.to_array())
    np.testing.assert_array_equal(again.to_array(), counts.to_array())
    assert (again + again).tp == 2


# ---------------------------------------------------------------------------------------------------------------------
# real CoNSeP tiles ($CONSEP_DIR; skipped when unset)

TILES = ("train_1", "train_11", "train_18")


@pytest.fixture(scope="module")
def consep_tiles(consep_dir) -> dict:
    tiles = {}
    for name in TILES:
        mat = sio.loadmat(str(consep_dir / "Train" / "Labels" / f"{name}.mat"))
        tiles[name] = {key: mat[key] for key in ("inst_map", "type_map", "inst_type", "inst_centroid")}
    return tiles


@pytest.fixture(params=TILES)
def tile(request, consep_tiles) -> dict:
    return consep_tiles[request.param]


def test_consep_building_blocks_match_the_files(tile):
    # CoNSeP stores (x, y) = (col, row) image-moment centroids and the majority type of each instance
    np.testing.assert_allclose(instance_centroids(tile["inst_map"]), tile["inst_centroid"][:, ::-1], atol=1e-6)
    np.testing.assert_array_equal(instance_types(tile["inst_map"], tile["type_map"]), tile["inst_type"][:, 0])


def test_consep_ground_truth_against_itself(tile):
    result = nuclei_metrics(tile["inst_map"], tile["inst_map"], tile["type_map"], tile["type_map"])
    assert all(result[key] == 1.0 for key in ALL_TYPED_KEYS)
    assert result["tp"] == len(tile["inst_type"]) and result["fp"] == result["fn"] == 0


def _check_erosion(result: dict, tile: dict) -> None:
    assert result["dice"] < 0.9 and result["sq"] < 0.8
    assert result["dq"] > 0.8  # most nuclei still overlap their GT by IoU > 0.5
    assert result["f1_detection"] > 0.99 and result["accuracy_type"] == 1.0


def _check_drop(result: dict, tile: dict) -> None:
    kept = result["num_pred"] / result["num_true"]  # about 0.8
    assert result["sq"] == 1.0 and result["fp"] == 0
    assert result["dq"] == pytest.approx(2 * kept / (1 + kept))
    assert result["f1_detection"] == pytest.approx(result["dq"])
    assert result["dice"] < 0.95 and result["aji"] < 0.9


def _check_merge(result: dict, tile: dict) -> None:
    assert result["dice"] == 1.0  # same foreground
    assert result["num_pred"] < result["num_true"]
    assert result["aji"] < 0.9 and result["pq"] < 0.9


def _check_split(result: dict, tile: dict) -> None:
    assert result["dice"] == 1.0
    assert result["num_pred"] > result["num_true"]
    assert result["aji"] < 0.85 and result["pq"] < 0.85


def _check_retype(result: dict, tile: dict) -> None:
    assert all(result[key] == 1.0 for key in INSTANCE_METRICS + ("f1_detection",))
    assert result["accuracy_type"] < 0.5
    assert np.mean([result[f"f1_type_{t}"] for t in range(1, 5)]) < 0.4


@pytest.mark.parametrize(
    "perturb, check",
    [
        (lambda inst, types, rng: (ref.erode_instances(inst, 1), types), _check_erosion),
        (lambda inst, types, rng: (ref.drop_instances(inst, 0.2, rng), types), _check_drop),
        (lambda inst, types, rng: (ref.merge_neighbours(inst, rng), types), _check_merge),
        (lambda inst, types, rng: (ref.split_instances(inst, 0.3, rng), types), _check_split),
        (lambda inst, types, rng: (inst, ref.retype_instances(inst, 4, rng)), _check_retype),
    ],
    ids=["erode_1px", "drop_20pc", "merge_neighbours", "split_30pc", "shuffle_types"],
)
def test_consep_metrics_move_the_right_way(tile, perturb, check):
    pred, pred_type = perturb(tile["inst_map"], tile["type_map"], np.random.default_rng(0))
    check(nuclei_metrics(pred, tile["inst_map"], pred_type, tile["type_map"]), tile)


def test_consep_erosion_is_monotonic(tile):
    inst, types = tile["inst_map"], tile["type_map"]
    one, two = (nuclei_metrics(ref.erode_instances(inst, px), inst, types, types) for px in (1, 2))
    assert two["dice"] < one["dice"] and two["sq"] < one["sq"] and two["aji"] < one["aji"]
    assert two["f1_detection"] > 0.97


@pytest.mark.parametrize("pairing", PAIRINGS)
def test_consep_crop_agrees_with_reference(consep_tiles, pairing):
    tile = consep_tiles["train_1"]
    true, true_type = tile["inst_map"][300:556, 300:556], tile["type_map"][300:556, 300:556]
    rng = np.random.default_rng(1)
    merged = ref.merge_neighbours(ref.erode_instances(true, 1), rng, 0.3)
    pred = ref.shift_map(ref.split_instances(merged, 0.2, rng), 1, 2)
    pred_type = np.where(pred > 0, ref.retype_instances(pred, 4, rng), 0)
    expected = ref.reference_nuclei_metrics(pred, true, pred_type, true_type, pairing=pairing)
    assert_metrics_close(nuclei_metrics(pred, true, pred_type, true_type, pairing=pairing), expected)


def test_type_ids_out_of_range_are_one_error_everywhere():
    """Metrics, pictures and the one-hot transform check merged type ids with one message."""
    from monai_dafgan.data.transforms import TypeOneHot
    from monai_dafgan.metrics import detection_counts
    from monai_dafgan.metrics.nuclei import evaluate_nuclei
    from monai_dafgan.visualize import overlay_nuclei

    inst = np.zeros((8, 8), np.int32)
    inst[2:5, 2:5] = 1
    types = np.where(inst > 0, 6, 0)
    image = np.zeros((3, 8, 8), np.float32)
    calls = {
        "detection": lambda: detection_counts(np.zeros((1, 2)), np.zeros((1, 2)), np.array([6]), np.array([1])),
        "metrics": lambda: evaluate_nuclei(inst, inst, types, types, num_types=4),
        "picture": lambda: overlay_nuclei(image, inst, types),
        "one-hot": lambda: TypeOneHot(4)(types[None]),
    }
    for what, call in calls.items():
        with pytest.raises(ValueError, match=r"must lie in 0\.\.4, got 0\.\.6|must lie in 0\.\.4, got 6\.\.6"):
            call()
