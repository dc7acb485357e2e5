"""All HoVer-Net nuclei metrics of one image in one call: :func:`nuclei_metrics`.

Inputs are a predicted and a ground-truth instance map (0 = background, any non-negative ids, contiguous or not,
with or without background pixels) and optionally their type maps (0 = background or untyped, 1..T). Each
instance's type is the majority type of its typed pixels (ties to the smallest type; 0 if none of its pixels is
typed). Centroids are mean pixel (row, col).

Keys of the returned dict (all values are python floats in [0, 1], counts are python ints):

==================  ===========================================================================================
``dice``            binary Dice 2|T & P| / (|T| + |P|) of the foregrounds (HoVer-Net ``get_dice_1``)
``aji``             MoNuSeg AJI: each GT takes its highest-IoU prediction, which may serve several GTs
``aji_plus``        AJI+: one-to-one pairing of maximal total IoU (Hungarian), pairs with IoU > 0
``dq``              detection quality TP / (TP + FP/2 + FN/2) of pairs with IoU > ``match_iou`` (MONAI's ``rq``)
``sq``              segmentation quality: mean IoU of those pairs
``pq``              panoptic quality dq * sq
``num_true``        ground-truth instances
``num_pred``        predicted instances
``tp fp fn``        paired / unpaired predicted / unpaired ground-truth instances of the PQ matching
==================  ===========================================================================================

With type maps, also (centroid pairing within ``radius`` pixels, inclusive; see :mod:`.detection`):

==================  ===========================================================================================
``f1_detection``    2 TP_d / (2 TP_d + FP_d + FN_d) of the centroid pairing (HoVer-Net F1_d)
``accuracy_type``   fraction of centroid pairs whose two nuclei have the same type
``f1_type_{t}``     for t = 1..num_types: 2 TP_c / (2 TP_c + 2 FP_c + 2 FN_c + FP_d + FN_d) (HoVer-Net F1_t)
``pq_type_{t}``     for t = 1..num_types: PQ after keeping only the instances of type t on both sides
==================  ===========================================================================================

Centroid pairing defaults to HoVer-Net's own (``pairing="hovernet"``); ``pairing="within_radius"`` is the variant
that cannot lose pairs within the radius (see :mod:`.detection`).

Empty cases. HoVer-Net returns NaN, raises, or inserts a dummy nucleus there; these metrics never do. The rule: a
score whose denominator is 0 because neither side has anything is 1.0 (nothing to find, nothing found); every other
score follows its formula, which gives 0.0 when exactly one side is empty.

===============================  =======  =============  ===========  ============================  ==================
case                             dice     aji, aji_plus  dq, sq, pq   f1_detection, accuracy_type   f1_type_t, pq_type_t
===============================  =======  =============  ===========  ============================  ==================
both maps empty                  1.0      1.0            1.0          1.0                           1.0
exactly one map empty            0.0      0.0            0.0          0.0                           0.0 if t present
both non-empty, no IoU pair      formula  formula        0.0          formula                       formula
both non-empty, no centroid pair formula  formula        formula      0.0                           formula
type t on neither side           --       --             --           --                            1.0
type t on one side only          --       --             --           --                            0.0
===============================  =======  =============  ===========  ============================  ==================

Where HoVer-Net's code gives a number, these give the same number, except: SQ divides by TP rather than
TP + 1e-6 (a relative change below 1e-6); centroids are float64 where HoVer-Net casts them to float32; per-type F1
is reported for every type 1..num_types rather than for the types present in the ground truth; and an image
without nuclei gets no dummy centroid at (0, 0) (which in HoVer-Net can pair with a real prediction near the
origin).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from monai_dafgan.data.instances import centroid_per_id, majority_type_per_id
from monai_dafgan.data.types import require_type_range
from monai_dafgan.metrics.detection import (
    DetectionCounts,
    Pairing,
    check_radius,
    detection_counts,
)
from monai_dafgan.metrics.instance import InstanceOverlap, as_label_map, remap_instances

__all__ = [
    "INSTANCE_METRICS",
    "COUNT_KEYS",
    "NucleiEvaluation",
    "evaluate_nuclei",
    "nuclei_metrics",
    "typed_metric_names",
]

INSTANCE_METRICS = ("dice", "aji", "aji_plus", "dq", "sq", "pq")
COUNT_KEYS = ("num_true", "num_pred", "tp", "fp", "fn")


def typed_metric_names(num_types: int) -> tuple[str, ...]:
    """Names of the keys that need type maps, in the order :func:`nuclei_metrics` returns them."""
    per_type = tuple(f"f1_type_{t}" for t in range(1, num_types + 1))
    return ("f1_detection", "accuracy_type") + per_type + tuple(f"pq_type_{t}" for t in range(1, num_types + 1))


@dataclass(frozen=True, eq=False)
class NucleiEvaluation:
    """Everything measured on one image.

    Attributes:
        scores: instance metrics, PQ counts and (with types) ``pq_type_{t}``, keyed as in :func:`nuclei_metrics`.
        detection: centroid pairing counts when type maps were given, else None; they pool over images by ``+``.
    """

    scores: dict[str, float]
    detection: DetectionCounts | None

    def as_dict(self) -> dict[str, float]:
        """The :func:`nuclei_metrics` dict: ``scores`` plus the detection scores of ``detection``."""
        result = {key: value for key, value in self.scores.items() if not key.startswith("pq_type_")}
        if self.detection is not None:
            result.update(self.detection.scores())
            result.update({key: value for key, value in self.scores.items() if key.startswith("pq_type_")})
        return result


def evaluate_nuclei(
    pred_inst,
    true_inst,
    pred_type=None,
    true_type=None,
    num_types: int = 4,
    match_iou: float = 0.5,
    radius: float = 12.0,
    pairing: Pairing = "hovernet",
) -> NucleiEvaluation:
    """Measure one image; :func:`nuclei_metrics` is the dict view. Arguments as in :func:`nuclei_metrics`."""
    check_radius(radius)
    pred_inst = as_label_map(pred_inst, "pred_inst")
    true_inst = as_label_map(true_inst, "true_inst")
    if pred_inst.shape != true_inst.shape:
        raise ValueError(
            f"pred_inst and true_inst must have the same shape, got {pred_inst.shape} and {true_inst.shape}."
        )
    if (pred_type is None) != (true_type is None):
        raise ValueError("give both pred_type and true_type, or neither.")
    pred, num_pred = remap_instances(pred_inst)
    true, num_true = remap_instances(true_inst)
    overlap = InstanceOverlap.from_remapped(pred, true, num_pred, num_true)
    quality = overlap.panoptic_quality(match_iou)
    scores = {
        "dice": overlap.dice(),
        "aji": overlap.aji(),
        "aji_plus": overlap.aji_plus(),
        "dq": quality["dq"],
        "sq": quality["sq"],
        "pq": quality["pq"],
        "num_true": num_true,
        "num_pred": num_pred,
        "tp": quality["tp"],
        "fp": quality["fp"],
        "fn": quality["fn"],
    }
    if pred_type is None:
        return NucleiEvaluation(scores, None)

    type_maps = {}
    for name, type_map in (("pred_type", pred_type), ("true_type", true_type)):
        type_map = as_label_map(type_map, name)
        if type_map.shape != pred_inst.shape:
            raise ValueError(f"{name} must have the instance maps' shape {pred_inst.shape}, got {type_map.shape}.")
        require_type_range(type_map, num_types, name)
        type_maps[name] = type_map
    pred_types = majority_type_per_id(pred, type_maps["pred_type"], num_pred).astype(np.int64)
    true_types = majority_type_per_id(true, type_maps["true_type"], num_true).astype(np.int64)
    detection = detection_counts(
        centroid_per_id(true, num_true),
        centroid_per_id(pred, num_pred),
        true_types,
        pred_types,
        num_types=num_types,
        radius=radius,
        pairing=pairing,
    )
    for t in range(1, num_types + 1):
        typed_overlap = overlap.restrict(true_types == t, pred_types == t)
        scores[f"pq_type_{t}"] = typed_overlap.panoptic_quality(match_iou)["pq"]
    return NucleiEvaluation(scores, detection)


def nuclei_metrics(
    pred_inst,
    true_inst,
    pred_type=None,
    true_type=None,
    num_types: int = 4,
    match_iou: float = 0.5,
    radius: float = 12.0,
    pairing: Pairing = "hovernet",
) -> dict[str, float]:
    """HoVer-Net's nuclei segmentation, detection and classification metrics of one image.

    Args:
        pred_inst: predicted instance map, (H, W) or (1, H, W), numpy array or torch tensor, integer ids >= 0
            (0 = background; ids need not be contiguous and the map need not contain background).
        true_inst: ground-truth instance map, same shape and conventions.
        pred_type: optional predicted type map, same shape, values 0..num_types (0 = background/untyped).
        true_type: optional ground-truth type map; give both type maps or neither.
        num_types: number of nucleus types T (4: other, inflammatory, epithelial, spindle for merged CoNSeP).
        match_iou: IoU a PQ pair must exceed (strictly); below 0.5 pairs come from a maximal-IoU Hungarian pairing.
        radius: centroid pairing radius in pixels, inclusive, finite and > 0 (HoVer-Net: 12 on CoNSeP at 40x).
        pairing: centroid pairing, ``"hovernet"`` (HoVer-Net's, default) or ``"within_radius"``; see
            :mod:`monai_dafgan.metrics.detection`.

    Returns:
        dict of python floats (counts as ints) with the keys listed in the module docstring; the type keys only
        when type maps are given. Never NaN: see the empty-case table in the module docstring.

    Raises:
        ValueError: on a map that is not (H, W) or (1, H, W), maps of different shapes, negative or non-integer
            labels, type values above ``num_types``, only one type map, or ``match_iou`` outside [0, 1].
    """
    return evaluate_nuclei(pred_inst, true_inst, pred_type, true_type, num_types, match_iou, radius, pairing).as_dict()
