"""Loop-based reference implementation of HoVer-Net's nuclei metrics: the test oracle and the benchmark baseline.

The end of the file builds the inputs both feed it: random disk maps and the perturbations that turn a ground
truth into a plausible prediction (erosion, dropping, merging neighbours, splitting, shifting, retyping).

Deliberately straightforward: it follows ``hover_net/metrics/stats_utils.py`` and ``compute_stats.py`` step by step
(one boolean mask per instance, per-instance loops, dense pairwise matrices, dense Hungarian), with only the
additions ``monai_dafgan.metrics`` documents: the empty-case values, maps without background, SQ = sum IoU / TP
without epsilon, and per-type PQ. It shares no code with the package, so agreement between the two is evidence.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from scipy.optimize import linear_sum_assignment


def remap_label(inst: np.ndarray) -> np.ndarray:
    """HoVer-Net ``remap_label(by_size=False)``, also for maps without background."""
    ids = [i for i in np.unique(inst) if i != 0]
    relabelled = np.zeros(inst.shape, np.int32)
    for new_id, old_id in enumerate(ids, start=1):
        relabelled[inst == old_id] = new_id
    return relabelled


def _masks(inst: np.ndarray) -> list:
    return [None] + [np.array(inst == i, np.uint8) for i in range(1, int(inst.max(initial=0)) + 1)]


def pairwise_intersection_union(true: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense (Kt, Kp) intersection and union of remapped maps, zero where instances do not overlap."""
    true_masks, pred_masks = _masks(true), _masks(pred)
    inter = np.zeros((len(true_masks) - 1, len(pred_masks) - 1), np.float64)
    union = np.zeros_like(inter)
    for true_id in range(1, len(true_masks)):
        t_mask = true_masks[true_id]
        for pred_id in np.unique(pred[t_mask > 0]):
            if pred_id == 0:
                continue
            p_mask = pred_masks[pred_id]
            total = (t_mask.astype(np.int64) + p_mask).sum()
            both = (t_mask * p_mask).sum()
            inter[true_id - 1, pred_id - 1] = both
            union[true_id - 1, pred_id - 1] = total - both
    return inter, union


def get_dice_1(true: np.ndarray, pred: np.ndarray) -> float:
    true, pred = (true > 0).astype(np.int64), (pred > 0).astype(np.int64)
    denominator = np.sum(true + pred)
    return 1.0 if denominator == 0 else 2.0 * np.sum(true * pred) / denominator


def _aji_sums(true, pred, inter, union, paired_true, paired_pred) -> float:
    """Overall intersection / union for the given pairs plus every unpaired instance's area (HoVer-Net's tail)."""
    if true.max(initial=0) == 0 and pred.max(initial=0) == 0:
        return 1.0
    overall_inter = inter[paired_true, paired_pred].sum()
    overall_union = union[paired_true, paired_pred].sum()
    for true_id in range(1, int(true.max(initial=0)) + 1):
        if (true_id - 1) not in list(paired_true):
            overall_union += (true == true_id).sum()
    for pred_id in range(1, int(pred.max(initial=0)) + 1):
        if (pred_id - 1) not in list(paired_pred):
            overall_union += (pred == pred_id).sum()
    return overall_inter / overall_union


def get_fast_aji(true: np.ndarray, pred: np.ndarray) -> float:
    """HoVer-Net ``get_fast_aji`` on remapped maps."""
    inter, union = pairwise_intersection_union(true, pred)
    if inter.shape[1] == 0:
        return _aji_sums(true, pred, inter, union, np.zeros(0, int), np.zeros(0, int))
    iou = inter / (union + 1.0e-6)
    paired_pred = np.argmax(iou, axis=1)
    best = np.max(iou, axis=1)
    paired_true = np.nonzero(best > 0.0)[0]
    paired_pred = paired_pred[paired_true]
    return _aji_sums(true, pred, inter, union, paired_true, paired_pred)


def get_fast_aji_plus(true: np.ndarray, pred: np.ndarray) -> float:
    """HoVer-Net ``get_fast_aji_plus`` on remapped maps."""
    inter, union = pairwise_intersection_union(true, pred)
    iou = inter / (union + 1.0e-6)
    paired_true, paired_pred = linear_sum_assignment(-iou)
    keep = iou[paired_true, paired_pred] > 0.0
    return _aji_sums(true, pred, inter, union, paired_true[keep], paired_pred[keep])


def get_fast_pq(true: np.ndarray, pred: np.ndarray, match_iou: float = 0.5) -> dict:
    """HoVer-Net ``get_fast_pq`` on remapped maps, with the documented empty cases and SQ = sum IoU / TP."""
    inter, union = pairwise_intersection_union(true, pred)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
    if match_iou >= 0.5:
        paired_true, paired_pred = np.nonzero(iou > match_iou)
    else:
        paired_true, paired_pred = linear_sum_assignment(-iou)
        keep = iou[paired_true, paired_pred] > match_iou
        paired_true, paired_pred = paired_true[keep], paired_pred[keep]
    paired_iou = iou[paired_true, paired_pred]
    tp = len(paired_true)
    fp = iou.shape[1] - tp
    fn = iou.shape[0] - tp
    if iou.shape == (0, 0):
        return {"dq": 1.0, "sq": 1.0, "pq": 1.0, "tp": 0, "fp": 0, "fn": 0}
    dq = tp / (tp + 0.5 * fp + 0.5 * fn)
    sq = paired_iou.sum() / tp if tp > 0 else 0.0
    return {"dq": dq, "sq": sq, "pq": dq * sq, "tp": tp, "fp": fp, "fn": fn}


def centroids(inst: np.ndarray) -> np.ndarray:
    """(K, 2) mean (row, col) of each id 1..K of a remapped map."""
    result = np.zeros((int(inst.max(initial=0)), 2))
    for k in range(1, int(inst.max(initial=0)) + 1):
        rows, cols = np.nonzero(inst == k)
        result[k - 1] = rows.mean(), cols.mean()
    return result


def majority_types(inst: np.ndarray, type_map: np.ndarray) -> np.ndarray:
    """(K,) majority of the non-zero type pixels of each id 1..K (ties: smallest type; none typed: 0)."""
    result = np.zeros(int(inst.max(initial=0)), np.int64)
    for k in range(1, int(inst.max(initial=0)) + 1):
        values = type_map[inst == k]
        values = values[values > 0]
        if values.size:
            counts = np.bincount(values)
            result[k - 1] = int(np.flatnonzero(counts == counts.max())[0])
    return result


def pair_coordinates(set_a: np.ndarray, set_b: np.ndarray, radius: float, pairing: str = "hovernet"):
    """HoVer-Net ``pair_coordinates``; ``"within_radius"`` forbids pairs beyond the radius before Hungarian."""
    if len(set_a) == 0 or len(set_b) == 0:
        return np.zeros((0, 2), np.int64), np.arange(len(set_a)), np.arange(len(set_b))
    distance = np.sqrt((((set_a[:, None, :] - set_b[None, :, :]) ** 2)).sum(axis=-1))
    cost = distance
    if pairing == "within_radius":
        # every pair beyond the radius costs more than all the pairs within it together
        cost = np.where(distance <= radius, distance, distance[distance <= radius].sum() + 1.0)
    index_a, index_b = linear_sum_assignment(cost)
    keep = distance[index_a, index_b] <= radius
    paired_a, paired_b = index_a[keep], index_b[keep]
    unpaired_a = np.array([i for i in range(len(set_a)) if i not in list(paired_a)], np.int64)
    unpaired_b = np.array([i for i in range(len(set_b)) if i not in list(paired_b)], np.int64)
    return np.array(list(zip(paired_a, paired_b)), np.int64).reshape(-1, 2), unpaired_a, unpaired_b


def type_stats(images: list, num_types: int = 4, radius: float = 12.0, pairing: str = "hovernet") -> dict:
    """HoVer-Net ``run_nuclei_type_stat`` pooled over ``images``: a list of
    (true_centroids, true_types, pred_centroids, pred_types) tuples; no dummy centroid for empty images."""
    paired_true_type, paired_pred_type, unpaired_true_type, unpaired_pred_type = [], [], [], []
    for true_centroid, true_type, pred_centroid, pred_type in images:
        paired, unpaired_true, unpaired_pred = pair_coordinates(true_centroid, pred_centroid, radius, pairing)
        paired_true_type += [true_type[i] for i in paired[:, 0]]
        paired_pred_type += [pred_type[i] for i in paired[:, 1]]
        unpaired_true_type += [true_type[i] for i in unpaired_true]
        unpaired_pred_type += [pred_type[i] for i in unpaired_pred]
    paired_true_type, paired_pred_type = np.array(paired_true_type, int), np.array(paired_pred_type, int)
    unpaired_true_type, unpaired_pred_type = np.array(unpaired_true_type, int), np.array(unpaired_pred_type, int)

    tp_d, fp_d, fn_d = len(paired_true_type), len(unpaired_pred_type), len(unpaired_true_type)
    nothing = tp_d + fp_d + fn_d == 0
    result = {
        "f1_detection": 1.0 if nothing else 2 * tp_d / (2 * tp_d + fp_d + fn_d),
        "accuracy_type": (paired_true_type == paired_pred_type).sum() / tp_d if tp_d else float(nothing),
    }
    w = [2, 2, 1, 1]
    for type_id in range(1, num_types + 1):
        type_samples = (paired_true_type == type_id) | (paired_pred_type == type_id)
        paired_true, paired_pred = paired_true_type[type_samples], paired_pred_type[type_samples]
        tp_dt = ((paired_true == type_id) & (paired_pred == type_id)).sum()
        tn_dt = ((paired_true != type_id) & (paired_pred != type_id)).sum()
        fp_dt = ((paired_true != type_id) & (paired_pred == type_id)).sum()
        fn_dt = ((paired_true == type_id) & (paired_pred != type_id)).sum()
        fp_dd = (unpaired_pred_type == type_id).sum()
        fn_dd = (unpaired_true_type == type_id).sum()
        denominator = 2 * (tp_dt + tn_dt) + w[0] * fp_dt + w[1] * fn_dt + w[2] * fp_dd + w[3] * fn_dd
        result[f"f1_type_{type_id}"] = 1.0 if denominator == 0 else 2 * (tp_dt + tn_dt) / denominator
    return result


def _keep_type(inst: np.ndarray, types: np.ndarray, type_id: int) -> np.ndarray:
    kept = np.zeros_like(inst)
    for k in range(1, int(inst.max(initial=0)) + 1):
        if types[k - 1] == type_id:
            kept[inst == k] = k
    return remap_label(kept)


def reference_nuclei_metrics(
    pred_inst, true_inst, pred_type=None, true_type=None, num_types=4, match_iou=0.5, radius=12.0, pairing="hovernet"
) -> dict:
    """Same keys and conventions as ``monai_dafgan.metrics.nuclei_metrics``, computed the slow, obvious way."""
    true, pred = remap_label(np.asarray(true_inst)), remap_label(np.asarray(pred_inst))
    quality = get_fast_pq(true, pred, match_iou)
    result = {
        "dice": get_dice_1(true, pred),
        "aji": get_fast_aji(true, pred),
        "aji_plus": get_fast_aji_plus(true, pred),
        "dq": quality["dq"],
        "sq": quality["sq"],
        "pq": quality["pq"],
        "num_true": int(true.max(initial=0)),
        "num_pred": int(pred.max(initial=0)),
        "tp": quality["tp"],
        "fp": quality["fp"],
        "fn": quality["fn"],
    }
    if pred_type is None:
        return result
    true_types, pred_types = majority_types(true, np.asarray(true_type)), majority_types(pred, np.asarray(pred_type))
    image = (centroids(true), true_types, centroids(pred), pred_types)
    result.update(type_stats([image], num_types, radius, pairing))
    for type_id in range(1, num_types + 1):
        typed_true, typed_pred = _keep_type(true, true_types, type_id), _keep_type(pred, pred_types, type_id)
        result[f"pq_type_{type_id}"] = get_fast_pq(typed_true, typed_pred, match_iou)["pq"]
    return result


# ---------------------------------------------------------------------------------------------------------------------
# Test inputs: synthetic maps and perturbations of a ground truth (vectorised where it is cheap, loops where clearer)


def random_disk_maps(
    rng: np.random.Generator, shape=(96, 96), num_disks=12, radius_range=(3, 9), num_types=4
) -> tuple[np.ndarray, np.ndarray]:
    """Instance and type maps of random disks painted in order (later disks cover earlier ones, so instances
    touch, overlap and sometimes break into pieces). Ids are 1..num_disks; a fully covered id is absent."""
    inst = np.zeros(shape, np.int32)
    for disk_id in range(1, num_disks + 1):
        centre = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        radius = rng.uniform(*radius_range)
        top, left = max(int(centre[0] - radius), 0), max(int(centre[1] - radius), 0)
        bottom, right = min(int(centre[0] + radius) + 1, shape[0]), min(int(centre[1] + radius) + 1, shape[1])
        rows, cols = np.ogrid[top:bottom, left:right]
        window = inst[top:bottom, left:right]
        window[(rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2] = disk_id
    disk_types = np.concatenate([[0], rng.integers(1, num_types + 1, num_disks)])
    return inst, disk_types[inst].astype(np.int32)


def erode_instances(inst: np.ndarray, pixels: int) -> np.ndarray:
    """Remove a band of ``pixels`` from every instance boundary (against background and against other instances)."""
    size = 2 * pixels + 1
    interior = (ndi.grey_erosion(inst, size=size) == inst) & (ndi.grey_dilation(inst, size=size) == inst)
    return np.where(interior, inst, 0)


def drop_instances(inst: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Delete a random ``fraction`` of the instances."""
    ids = np.unique(inst[inst > 0])
    dropped = rng.choice(ids, size=int(round(fraction * ids.size)), replace=False)
    return np.where(np.isin(inst, dropped), 0, inst)


def neighbour_pairs(inst: np.ndarray, gap: int = 2) -> np.ndarray:
    """(P, 2) sorted unique pairs of distinct ids closer than ``gap`` pixels (touching ones included)."""
    grown = ndi.grey_dilation(inst, size=gap + 1)
    grown = np.where(inst > 0, inst, grown)
    pairs = [
        np.stack([a[(a > 0) & (b > 0) & (a != b)], b[(a > 0) & (b > 0) & (a != b)]], axis=1)
        for a, b in ((grown[:, :-1], grown[:, 1:]), (grown[:-1, :], grown[1:, :]))
    ]
    pairs = np.sort(np.concatenate(pairs), axis=1)
    return np.unique(pairs, axis=0)


def merge_neighbours(inst: np.ndarray, rng: np.random.Generator, fraction: float = 1.0) -> np.ndarray:
    """Merge disjoint pairs of neighbouring instances (each id in at most one pair) into one id."""
    lookup = np.arange(int(inst.max(initial=0)) + 1)
    used: set = set()
    for a, b in rng.permutation(neighbour_pairs(inst)):
        if a in used or b in used or rng.random() > fraction:
            continue
        used.update((a, b))
        lookup[b] = a
    return lookup[inst]


def split_instances(inst: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Cut a random ``fraction`` of the instances into left and right halves at their centroid column."""
    ids = np.unique(inst[inst > 0])
    chosen = np.zeros(int(inst.max(initial=0)) + 1, bool)
    chosen[rng.choice(ids, size=int(round(fraction * ids.size)), replace=False)] = True
    _, cols = np.indices(inst.shape)
    area = np.maximum(np.bincount(inst.ravel(), minlength=chosen.size), 1)
    centre_col = np.bincount(inst.ravel(), weights=cols.ravel(), minlength=chosen.size) / area
    left = chosen[inst] & (cols < centre_col[inst])
    return np.where(left, inst + int(inst.max(initial=0)), inst)


def shift_map(labels: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Translate a label map, filling the uncovered border with 0."""
    shifted = np.zeros_like(labels)
    height, width = labels.shape
    shifted[max(rows, 0) : height + min(rows, 0), max(cols, 0) : width + min(cols, 0)] = labels[
        max(-rows, 0) : height + min(-rows, 0), max(-cols, 0) : width + min(-cols, 0)
    ]
    return shifted


def retype_instances(inst: np.ndarray, num_types: int, rng: np.random.Generator) -> np.ndarray:
    """A type map giving every instance a uniformly random type 1..num_types."""
    lookup = np.concatenate([[0], rng.integers(1, num_types + 1, int(inst.max(initial=0)))])
    return lookup[inst].astype(np.int32)
