"""Instance segmentation metrics of HoVer-Net: binary Dice, AJI, AJI+ and panoptic quality (DQ, SQ, PQ).

Everything derives from one :class:`InstanceOverlap`: the areas of the ground-truth and predicted instances and
the intersection of every overlapping pair, counted in a single ``np.bincount`` pass over the pixels. The metrics
then work on that sparse list of overlapping pairs, never on masks, so their cost does not grow with the number of
instances times the number of pixels as HoVer-Net's per-instance loops do.

Definitions follow ``hover_net/metrics/stats_utils.py`` (see :mod:`monai_dafgan.metrics.nuclei` for the values of
the empty cases, which HoVer-Net leaves undefined).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from monai.utils import convert_to_numpy

from monai_dafgan.data.instances import relabel_sequential
from monai_dafgan.metrics._assignment import match_sparse

__all__ = [
    "as_label_map",
    "remap_instances",
    "InstanceOverlap",
    "dice_score",
    "aji_score",
    "aji_plus_score",
    "panoptic_quality",
]

# HoVer-Net ranks candidate pairs for AJI and AJI+ by I / (U + 1e-6); the epsilon breaks exact IoU ties towards
# the pair with the larger union, so it is kept to pick the same pairs.
_AJI_IOU_EPSILON = 1.0e-6
# Intersections are counted in a dense bincount up to this many (true, pred) id combinations, sparsely beyond.
_DENSE_PAIR_LIMIT = 1 << 24


def as_label_map(labels, name: str) -> np.ndarray:
    """Validate a 2-D label map (instance ids or types) and return it as a non-negative integer numpy array.

    Args:
        labels: array-like or torch tensor of shape (H, W) or (1, H, W), integer, boolean, or floating point holding
            integral values, all >= 0.
        name: argument name used in error messages.

    Returns:
        (H, W) integer array (the input's integer dtype when it has one, else int64).

    Raises:
        ValueError: when the shape is neither (H, W) nor (1, H, W), or a value is negative or not an integer.
    """
    array = convert_to_numpy(labels)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise ValueError(f"{name} must have shape (H, W) or (1, H, W), got {tuple(array.shape)}.")
    if array.dtype == np.bool_ or array.dtype == np.uint64:
        array = array.astype(np.int64)
    elif not np.issubdtype(array.dtype, np.integer):
        integral = np.issubdtype(array.dtype, np.floating) and np.isfinite(array).all()
        if not integral or not np.array_equal(array, np.floor(array)):
            raise ValueError(f"{name} must hold integer labels, got dtype {array.dtype} with non-integer values.")
        array = array.astype(np.int64)
    if array.size and array.min() < 0:
        raise ValueError(f"{name} must hold labels >= 0, got minimum {array.min()}.")
    return array


def remap_instances(inst) -> tuple[np.ndarray, int]:
    """Relabel the non-zero ids of an instance map to 1..K, keeping their sorted order (HoVer-Net ``remap_label``).

    Unlike HoVer-Net's ``remap_label``, a map without any background pixel is fine.

    Args:
        inst: (H, W) or (1, H, W) instance map, 0 = background, any non-negative ids (array or tensor).

    Returns:
        ``(relabelled, num_instances)``: (H, W) int32 map with ids 1..K (0 stays background), and K.
    """
    relabelled, old_ids = relabel_sequential(as_label_map(inst, "inst"))
    return relabelled, int(old_ids.size)


@dataclass(frozen=True)
class InstanceOverlap:
    """Areas of two instance maps and the intersections of their overlapping instance pairs.

    Instance ``i`` (0-based) is id ``i + 1`` of the remapped map (see :func:`remap_instances`).

    Attributes:
        true_area: (Kt,) int64, pixel count of each ground-truth instance.
        pred_area: (Kp,) int64, pixel count of each predicted instance.
        rows: (E,) int64, ground-truth index of each overlapping pair, sorted by (row, col).
        cols: (E,) int64, predicted index of each overlapping pair.
        intersection: (E,) int64, pixels shared by the pair (> 0).
    """

    true_area: np.ndarray
    pred_area: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    intersection: np.ndarray

    @classmethod
    def from_remapped(cls, pred: np.ndarray, true: np.ndarray, num_pred: int, num_true: int) -> InstanceOverlap:
        """Build from maps already relabelled to 1..K by :func:`remap_instances` (same shape)."""
        true_area = np.bincount(true.ravel(), minlength=num_true + 1)[1:]
        pred_area = np.bincount(pred.ravel(), minlength=num_pred + 1)[1:]
        both = (true > 0) & (pred > 0)
        stride = num_pred + 1
        codes = true[both].astype(np.int64) * stride + pred[both]
        if (num_true + 1) * stride <= _DENSE_PAIR_LIMIT:
            counts = np.bincount(codes, minlength=(num_true + 1) * stride)
            codes = np.flatnonzero(counts)
            intersection = counts[codes]
        else:
            codes, intersection = np.unique(codes, return_counts=True)
        return cls(true_area, pred_area, codes // stride - 1, codes % stride - 1, intersection.astype(np.int64))

    @classmethod
    def from_maps(cls, pred_inst, true_inst) -> InstanceOverlap:
        """Build from two instance maps of the same shape, (H, W) or (1, H, W), any non-negative ids."""
        pred, num_pred = remap_instances(as_label_map(pred_inst, "pred_inst"))
        true, num_true = remap_instances(as_label_map(true_inst, "true_inst"))
        if pred.shape != true.shape:
            raise ValueError(f"pred_inst and true_inst must have the same shape, got {pred.shape} and {true.shape}.")
        return cls.from_remapped(pred, true, num_pred, num_true)

    @property
    def num_true(self) -> int:
        return int(self.true_area.size)

    @property
    def num_pred(self) -> int:
        return int(self.pred_area.size)

    @property
    def union(self) -> np.ndarray:
        """(E,) int64 union of each overlapping pair."""
        return self.true_area[self.rows] + self.pred_area[self.cols] - self.intersection

    @property
    def iou(self) -> np.ndarray:
        """(E,) float64 intersection over union of each overlapping pair, in (0, 1]."""
        return self.intersection / self.union

    def restrict(self, true_keep: np.ndarray, pred_keep: np.ndarray) -> InstanceOverlap:
        """The overlap of the instances selected by the (Kt,) and (Kp,) boolean masks (e.g. one nucleus type)."""
        true_index = np.cumsum(true_keep) - 1
        pred_index = np.cumsum(pred_keep) - 1
        kept = true_keep[self.rows] & pred_keep[self.cols]
        return InstanceOverlap(
            self.true_area[true_keep],
            self.pred_area[pred_keep],
            true_index[self.rows[kept]],
            pred_index[self.cols[kept]],
            self.intersection[kept],
        )

    def _both_empty(self) -> bool:
        return self.num_true == 0 and self.num_pred == 0

    def dice(self) -> float:
        """Binary Dice 2|T & P| / (|T| + |P|) of the foregrounds (HoVer-Net ``get_dice_1``), in [0, 1]."""
        denominator = int(self.true_area.sum() + self.pred_area.sum())
        return 2.0 * int(self.intersection.sum()) / denominator if denominator else 1.0

    def _aji_from_pairs(self, paired: np.ndarray) -> float:
        """AJI ratio for the given overlapping pairs; a pred paired k times enters the union k times."""
        if self._both_empty():
            return 1.0
        unpaired_true = np.ones(self.num_true, dtype=bool)
        unpaired_true[self.rows[paired]] = False
        unpaired_pred = np.ones(self.num_pred, dtype=bool)
        unpaired_pred[self.cols[paired]] = False
        intersection = int(self.intersection[paired].sum())
        union = (
            int(self.union[paired].sum())
            + int(self.true_area[unpaired_true].sum())
            + int(self.pred_area[unpaired_pred].sum())
        )
        return intersection / union

    def _aji_ranking_iou(self) -> np.ndarray:
        return self.intersection / (self.union + _AJI_IOU_EPSILON)

    def aji(self) -> float:
        """Aggregated Jaccard Index of MoNuSeg (HoVer-Net ``get_fast_aji``), in [0, 1].

        Every ground-truth instance takes the prediction of highest IoU (first one on ties), so one prediction may
        serve several ground-truth instances and then enters the union once per use.
        """
        if self.rows.size == 0:
            return self._aji_from_pairs(np.zeros(0, dtype=np.int64))
        # edges sorted by row, then decreasing IoU, then increasing col: the first of each row is its argmax
        order = np.lexsort((self.cols, -self._aji_ranking_iou(), self.rows))
        first_of_row = np.r_[True, np.diff(self.rows[order]) != 0]
        return self._aji_from_pairs(order[first_of_row])

    def aji_plus(self) -> float:
        """AJI+ (HoVer-Net ``get_fast_aji_plus``), in [0, 1]: AJI with a one-to-one pairing of maximal total IoU."""
        paired = match_sparse(
            self.rows, self.cols, self._aji_ranking_iou(), self.num_true, self.num_pred, "max_weight"
        )
        return self._aji_from_pairs(paired)

    def matched_pairs(self, match_iou: float = 0.5) -> np.ndarray:
        """Indices of the overlapping pairs that panoptic quality counts as true positives.

        Pairs need IoU > ``match_iou`` (strict). From 0.5 up they are unique by construction; below 0.5 they come
        from the one-to-one pairing of maximal total IoU, as in HoVer-Net ``get_fast_pq``.
        """
        if not 0.0 <= match_iou <= 1.0:
            raise ValueError(f"match_iou must be in [0, 1], got {match_iou}.")
        iou = self.iou
        if match_iou >= 0.5:
            return np.flatnonzero(iou > match_iou)
        paired = match_sparse(self.rows, self.cols, iou, self.num_true, self.num_pred, "max_weight")
        return paired[iou[paired] > match_iou]

    def panoptic_quality(self, match_iou: float = 0.5) -> dict[str, float]:
        """Panoptic quality of HoVer-Net ``get_fast_pq``.

        Returns:
            dict with ``dq`` = TP / (TP + FP/2 + FN/2), ``sq`` = mean IoU of the TP pairs, ``pq`` = dq * sq (all
            in [0, 1]), and the int counts ``tp``, ``fp`` (unpaired predictions), ``fn`` (unpaired ground truth).
        """
        paired = self.matched_pairs(match_iou)
        tp = int(paired.size)
        fp, fn = self.num_pred - tp, self.num_true - tp
        if self._both_empty():
            dq = sq = 1.0
        else:
            dq = tp / (tp + 0.5 * fp + 0.5 * fn)
            sq = float(self.iou[paired].sum()) / tp if tp else 0.0
        return {"dq": dq, "sq": sq, "pq": dq * sq, "tp": tp, "fp": fp, "fn": fn}


def dice_score(pred_inst, true_inst) -> float:
    """Binary Dice 2|T & P| / (|T| + |P|) of the foregrounds of two instance (or binary) maps, in [0, 1].

    The same value as :meth:`InstanceOverlap.dice`, without labelling instances; 1.0 when both maps are empty.
    """
    pred = as_label_map(pred_inst, "pred_inst") > 0
    true = as_label_map(true_inst, "true_inst") > 0
    if pred.shape != true.shape:
        raise ValueError(f"pred_inst and true_inst must have the same shape, got {pred.shape} and {true.shape}.")
    denominator = np.count_nonzero(pred) + np.count_nonzero(true)
    return 2.0 * np.count_nonzero(pred & true) / denominator if denominator else 1.0


def aji_score(pred_inst, true_inst) -> float:
    """AJI of two instance maps; see :meth:`InstanceOverlap.aji`."""
    return InstanceOverlap.from_maps(pred_inst, true_inst).aji()


def aji_plus_score(pred_inst, true_inst) -> float:
    """AJI+ of two instance maps; see :meth:`InstanceOverlap.aji_plus`."""
    return InstanceOverlap.from_maps(pred_inst, true_inst).aji_plus()


def panoptic_quality(pred_inst, true_inst, match_iou: float = 0.5) -> dict[str, float]:
    """DQ, SQ, PQ and TP/FP/FN of two instance maps; see :meth:`InstanceOverlap.panoptic_quality`."""
    return InstanceOverlap.from_maps(pred_inst, true_inst).panoptic_quality(match_iou)
