"""Nuclei segmentation metrics with HoVer-Net's published definitions, vectorised, plus a MONAI cumulative metric.

- :func:`nuclei_metrics`: every metric of one image (Dice, AJI, AJI+, DQ/SQ/PQ, F1_d, type accuracy, F1_t, per-type
  PQ); the key list and the empty-case table are in :mod:`monai_dafgan.metrics.nuclei`.
- :class:`NucleiMetric`: the same over a dataset, as a ``monai.metrics.CumulativeIterationMetric`` (instance metrics
  averaged over images, detection/classification F1 pooled over images, as HoVer-Net reports them), and
  :class:`NucleiMetricHandler`, the same in a MONAI evaluator (every metric under its own name, plus per-image rows).
- Building blocks: :func:`remap_instances`, :class:`InstanceOverlap`, :func:`instance_centroids`,
  :func:`instance_types`, :func:`pair_centroids`, :class:`DetectionCounts`.
"""

from __future__ import annotations

from monai_dafgan.metrics.cumulative import NucleiMetric
from monai_dafgan.metrics.detection import (
    DetectionCounts,
    Pairing,
    detection_counts,
    instance_centroids,
    instance_types,
    pair_centroids,
)
from monai_dafgan.metrics.handler import NucleiMetricHandler
from monai_dafgan.metrics.instance import (
    InstanceOverlap,
    aji_plus_score,
    aji_score,
    as_label_map,
    dice_score,
    panoptic_quality,
    remap_instances,
)
from monai_dafgan.metrics.nuclei import (
    COUNT_KEYS,
    INSTANCE_METRICS,
    NucleiEvaluation,
    evaluate_nuclei,
    nuclei_metrics,
    typed_metric_names,
)

__all__ = [
    "COUNT_KEYS",
    "INSTANCE_METRICS",
    "DetectionCounts",
    "InstanceOverlap",
    "NucleiEvaluation",
    "NucleiMetric",
    "NucleiMetricHandler",
    "Pairing",
    "aji_plus_score",
    "aji_score",
    "as_label_map",
    "detection_counts",
    "dice_score",
    "evaluate_nuclei",
    "instance_centroids",
    "instance_types",
    "nuclei_metrics",
    "pair_centroids",
    "panoptic_quality",
    "remap_instances",
    "typed_metric_names",
]
