"""Whole-tile evaluation of a nuclei segmenter and a report laid out like the DAFF-GAN paper's Table I.

Conventions (HoVer-Net's, Graham et al. 2019 and their ``compute_stats.py``): instance metrics (Dice, AJI, AJI+, DQ, SQ,
PQ; IoU > 0.5) are the mean over tiles; detection/classification F1 (radius 12 px) pool the centroid pairings of
all tiles; the four merged CoNSeP types.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from monai_dafgan.data.instances import as_plane
from monai_dafgan.metrics import COUNT_KEYS, INSTANCE_METRICS, NucleiMetric, typed_metric_names
from monai_dafgan.segmentation.inference import predict_tile
from monai_dafgan.utils import atomic_write
from monai_dafgan.visualize import image_grid, overlay_nuclei, save_png

__all__ = [
    "TABLE1_COLUMNS",
    "evaluate_tiles",
    "format_table1",
    "paired_comparison",
    "write_evaluation",
]

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


def evaluate_tiles(
    network: torch.nn.Module | None,
    samples: Iterable[Mapping],
    device: str | torch.device = "cpu",
    num_types: int = 4,
    match_iou: float = 0.5,
    radius: float = 12.0,
    predict_fn: Callable[..., tuple[np.ndarray, np.ndarray]] | None = None,
    overlay_dir: str | os.PathLike | None = None,
    progress: bool = True,
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
        overlay_dir: when given, ``<overlay_dir>/<name>.png`` shows each tile with its true and its predicted nuclei
            (outlines in the CoNSeP type colours).
        progress: show a progress bar over tiles.
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
    samples = list(samples)
    for index, sample in enumerate(tqdm(samples, desc="evaluating", unit="tile", disable=not progress)):
        true_inst, true_type = as_plane(sample["label_inst"]), as_plane(sample["label_type"])
        pred_inst, pred_type = predict_fn(network, sample["image"], device, **predict_kwargs)
        pred_inst, pred_type = as_plane(pred_inst), as_plane(pred_type)
        if pred_inst.shape != true_inst.shape or pred_type.shape != true_type.shape:
            raise ValueError(f"tile {index}: prediction {pred_inst.shape} does not match the tile {true_inst.shape}.")
        pred = torch.as_tensor(np.stack([pred_inst, pred_type]).astype(np.int64))[None]
        true = torch.as_tensor(np.stack([true_inst, true_type]).astype(np.int64))[None]
        metric(y_pred=pred, y=true)
        scores = metric.last_scores[0]  # computed once, for the aggregate and this tile's row
        name = str(sample.get("name", f"tile_{index}"))
        tiles.append({"name": name, **scores})
        if overlay_dir is not None:
            panels = [overlay_nuclei(sample["image"], true_inst, true_type), overlay_nuclei(sample["image"], pred_inst, pred_type)]
            save_png(image_grid([panels], titles=["truth", f"prediction (PQ {scores['pq']:.3f})"]), Path(overlay_dir) / f"{name}.png")
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


def write_evaluation(result: Mapping, output_dir: str | os.PathLike, condition: str = "model", **details) -> dict:
    """Write an :func:`evaluate_tiles` result as ``metrics.json`` and ``table1.md`` in ``output_dir``.

    Args:
        result: the evaluation result.
        output_dir: created when missing; files are written atomically.
        condition: the row name of the table (e.g. ``real+DAFF-GAN``).
        details: recorded in the JSON next to the result (checkpoint, dataset folder, split, ...).

    Returns:
        the JSON content: ``{"condition", **details, "tiles", "aggregate", "num_tiles"}``.
    """
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    content = {"condition": condition, **{k: str(v) if isinstance(v, os.PathLike) else v for k, v in details.items()}}
    content.update(result)
    atomic_write(output / "metrics.json", lambda f: f.write(json.dumps(content, indent=2).encode()))
    atomic_write(output / "table1.md", lambda f: f.write(format_table1({condition: result}).encode()))
    return content


def _tile_scores(runs: Sequence[Mapping], key: str) -> dict[str, list[float]]:
    """tile name -> the metric of that tile in each run (runs in seed order)."""
    scores: dict[str, list[float]] = {}
    for run in runs:
        for tile in run["tiles"]:
            scores.setdefault(tile["name"], []).append(float(tile[key]))
    return scores


def paired_comparison(
    results: Mapping[str, Sequence[Mapping]],
    baseline: str,
    metrics: Sequence[str] = ("dice", "aji", "dq", "sq", "pq"),
    num_bootstrap: int = 10000,
    seed: int = 0,
) -> dict[str, dict[str, dict]]:
    """Paired differences of every condition against ``baseline``, per tile and seed.

    Runs pair by position (seed ``i`` of a condition with seed ``i`` of the baseline: same initialisation and order
    of real data), tiles by name. For each metric the difference of each (seed, tile) is averaged over seeds per
    tile; the report gives the mean over tiles (what the table's difference of means is), a 95 % bootstrap interval
    that resamples tiles (the unit the test data are made of), the share of bootstrap means above 0, and how many
    seeds improved the tile-mean.

    Args:
        results: condition -> per-seed :func:`evaluate_tiles` results (with ``tiles``).
        baseline: the condition compared against (e.g. ``real``).
        metrics: per-tile metric keys.
        num_bootstrap: bootstrap resamples.
        seed: bootstrap seed.

    Returns:
        ``{condition: {metric: {"mean_difference", "ci95": [low, high], "p_improved", "seeds_improved",
        "num_seeds", "num_tiles"}}}`` for every condition but the baseline.

    Raises:
        ValueError: unknown baseline, different numbers of seeds, or tiles that are not the same.
    """
    if baseline not in results:
        raise ValueError(f"baseline {baseline!r} is not among the conditions {list(results)}.")
    rng = np.random.default_rng(seed)
    base_runs = list(results[baseline])
    report: dict[str, dict[str, dict]] = {}
    for condition, runs in results.items():
        runs = list(runs)
        if condition == baseline:
            continue
        if len(runs) != len(base_runs):
            raise ValueError(f"{condition!r} has {len(runs)} runs, {baseline!r} {len(base_runs)}: pairs need both.")
        report[condition] = {}
        for key in metrics:
            ours, theirs = _tile_scores(runs, key), _tile_scores(base_runs, key)
            if set(ours) != set(theirs):
                raise ValueError(f"{condition!r} and {baseline!r} were evaluated on different tiles.")
            names = sorted(ours)
            diffs = np.array([np.subtract(ours[n], theirs[n]) for n in names])  # (tiles, seeds)
            per_tile = diffs.mean(axis=1)
            boot = per_tile[rng.integers(0, len(names), size=(num_bootstrap, len(names)))].mean(axis=1)
            report[condition][key] = {
                "mean_difference": float(per_tile.mean()),
                "ci95": [float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))],
                "p_improved": float((boot > 0).mean()),
                "seeds_improved": int((diffs.mean(axis=0) > 0).sum()),
                "num_seeds": int(diffs.shape[1]),
                "num_tiles": len(names),
            }
    return report
