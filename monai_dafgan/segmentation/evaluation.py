"""Whole-tile evaluation of a nuclei segmenter and a report laid out like the DAFF-GAN paper's Table I.

Conventions (HoVer-Net's, see ``notes/hovernet-consep.md`` section 6): instance metrics (Dice, AJI, AJI+, DQ, SQ,
PQ; IoU > 0.5) are the mean over tiles; detection/classification F1 (radius 12 px) pool the centroid pairings of
all tiles; the four merged CoNSeP types.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from monai.utils import convert_to_numpy

from monai_dafgan.metrics import COUNT_KEYS, INSTANCE_METRICS, NucleiMetric, nuclei_metrics, typed_metric_names
from monai_dafgan.segmentation.hovernet import predict_tile

__all__ = ["TABLE1_COLUMNS", "evaluate_tiles", "format_table1"]

#: (column header, metric key) of the Table I report: the paper's five columns, then AJI+ and F1_d.
TABLE1_COLUMNS: tuple[tuple[str, str], ...] = (
    ("Dice", "dice"),
    ("AJI", "aji"),
    ("DQ", "dq"),
    ("SQ", "sq"),
    ("PQ", "pq"),
    ("AJI+", "aji_plus"),
    ("F1d", "f1_detection"),
)


def _plane(array) -> np.ndarray:
    value = convert_to_numpy(array)
    return value.reshape(value.shape[-2:])


def evaluate_tiles(
    network: torch.nn.Module | None,
    samples: Iterable[Mapping],
    device: str | torch.device = "cpu",
    num_types: int = 4,
    match_iou: float = 0.5,
    radius: float = 12.0,
    predict_fn: Callable[..., tuple[np.ndarray, np.ndarray]] | None = None,
    **predict_kwargs,
) -> dict:
    """Predict every tile and measure it against its labels.

    Args:
        network: the segmenter, passed to ``predict_fn``.
        samples: data-contract samples (whole tiles of any size): ``image`` (3, H, W) 0..255, ``label_inst``
            (1, H, W) ids, ``label_type`` (1, H, W) 0..num_types; ``name`` is used when present.
        device: passed to ``predict_fn``.
        num_types: number of nucleus types.
        match_iou: PQ matching threshold (strict).
        radius: centroid pairing radius in pixels (inclusive).
        predict_fn: ``predict_fn(network, image, device, **predict_kwargs) -> (inst_map, type_map)`` of (H, W)
            int arrays; defaults to :func:`monai_dafgan.segmentation.predict_tile` (HoVer-Net).
        predict_kwargs: passed to ``predict_fn``.

    Returns:
        ``{"tiles": [per-tile dict], "aggregate": dict, "num_tiles": int}``. A per-tile dict holds ``name`` and every
        key of :func:`monai_dafgan.metrics.nuclei_metrics` for that tile; ``aggregate`` holds the same keys over all
        tiles (instance metrics averaged over tiles, F1 pooled, counts summed), as :class:`NucleiMetric` reduces them.

    Raises:
        ValueError: when ``samples`` is empty or a prediction's shape differs from its tile.
    """
    predict_fn = predict_fn or predict_tile
    names = INSTANCE_METRICS + COUNT_KEYS + typed_metric_names(num_types)
    metric = NucleiMetric(metric_name=names, num_types=num_types, match_iou=match_iou, radius=radius)
    tiles = []
    for index, sample in enumerate(samples):
        true_inst, true_type = _plane(sample["label_inst"]), _plane(sample["label_type"])
        pred_inst, pred_type = predict_fn(network, sample["image"], device, **predict_kwargs)
        pred_inst, pred_type = _plane(pred_inst), _plane(pred_type)
        if pred_inst.shape != true_inst.shape or pred_type.shape != true_type.shape:
            raise ValueError(f"tile {index}: prediction {pred_inst.shape} does not match the tile {true_inst.shape}.")
        scores = nuclei_metrics(
            pred_inst, true_inst, pred_type, true_type, num_types=num_types, match_iou=match_iou, radius=radius
        )
        tiles.append({"name": str(sample.get("name", f"tile_{index}")), **scores})
        pred = torch.as_tensor(np.stack([pred_inst, pred_type]).astype(np.int64))[None]
        true = torch.as_tensor(np.stack([true_inst, true_type]).astype(np.int64))[None]
        metric(y_pred=pred, y=true)
    if not tiles:
        raise ValueError("evaluate_tiles needs at least one sample.")
    aggregate = metric.aggregate()
    metric.reset()
    return {"tiles": tiles, "aggregate": dict(aggregate), "num_tiles": len(tiles)}


def _metrics_of(result: Mapping) -> Mapping:
    return result["aggregate"] if "aggregate" in result else result


def _cell(values: Sequence[float], digits: int) -> str:
    values = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"


def format_table1(
    results: Mapping[str, Mapping | Sequence[Mapping]],
    digits: int = 4,
    columns: Sequence[tuple[str, str]] = TABLE1_COLUMNS,
    row_header: str = "Training data",
) -> str:
    """Markdown table laid out like Table I of the DAFF-GAN paper: one row per training condition.

    Args:
        results: condition name -> an :func:`evaluate_tiles` result, a flat metric dict (``dice``, ``aji``, ...), or
            a sequence of either (one per seed), which is reported as mean ± sample standard deviation.
        digits: decimals (the paper gives 4).
        columns: (header, metric key) pairs; default Dice, AJI, DQ, SQ, PQ, AJI+, F1d.
        row_header: header of the first column.

    Returns:
        the table as a string, rows in the order of ``results``; a metric a condition lacks is shown as ``-``.
    """
    lines = [
        "| " + " | ".join([row_header] + [header for header, _ in columns]) + " |",
        "|" + "|".join(["---"] + ["---:"] * len(columns)) + "|",
    ]
    for condition, result in results.items():
        runs = [result] if isinstance(result, Mapping) else list(result)
        cells = [_cell([_metrics_of(run).get(key) for run in runs], digits) for _, key in columns]
        lines.append("| " + " | ".join([str(condition)] + cells) + " |")
    return "\n".join(lines) + "\n"
