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

from monai.data import DataLoader, Dataset
from monai.engines import SupervisedEvaluator
from monai.inferers import SimpleInferer
from monai.transforms import Compose, ConcatItemsd, EnsureTyped, Lambda
from monai.utils import convert_to_numpy

from monai_dafgan.data.instances import as_plane
from monai_dafgan.engines.handlers import LossProgressBar
from monai_dafgan.metrics import NucleiMetricHandler
from monai_dafgan.segmentation.inference import HoVerNetNucleid, hovernet_inferer
from monai_dafgan.segmentation.transforms import ScaleImaged
from monai_dafgan.utils import atomic_write
from monai_dafgan.visualize import image_grid, overlay_nuclei, save_png

__all__ = [
    "TABLE1_COLUMNS",
    "NucleiOverlays",
    "evaluate_tiles",
    "evaluation_result",
    "format_table1",
    "nuclei_evaluator",
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


class NucleiOverlays:
    """Evaluator handler: ``<output_dir>/<name>.png`` per image, the image with its true nuclei beside it with the
    predicted ones (outlines in the CoNSeP type colours), titled with the image's PQ.

    Reads each decollated output's ``nuclei`` and ``label`` ((2, H, W) instance ids and types) and the batch's
    ``image`` (values 0..``image_max``) and ``name``; the PQ comes from ``scores`` (a :class:`NucleiMetricHandler`
    attached before this handler).
    """

    def __init__(self, output_dir: str | os.PathLike, scores: NucleiMetricHandler, image_max: float = 1.0):
        self.output_dir, self.scores, self.image_max = Path(output_dir), scores, float(image_max)

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine) -> None:
        rows = self.scores.images[len(self.scores.images) - len(engine.state.output) :]
        for item, output, row in zip(engine.state.batch, engine.state.output, rows):
            image = convert_to_numpy(item["image"]).astype(np.float32) * (255.0 / self.image_max)
            truth, prediction = convert_to_numpy(output["label"]), convert_to_numpy(output["nuclei"])
            panels = [overlay_nuclei(image, truth[0], truth[1]), overlay_nuclei(image, prediction[0], prediction[1])]
            titles = ["truth", f"prediction (PQ {row['pq']:.3f})"]
            save_png(image_grid([panels], titles=titles), self.output_dir / f"{row['name']}.png")


class _TileFunction(torch.nn.Module):
    """A per-tile ``predict_fn`` as an evaluator's network: (B, 3, H, W) images 0..255 -> their instance and type
    maps (B, 1, H, W)."""

    def __init__(self, predict_fn: Callable, network, device, kwargs: Mapping):
        super().__init__()
        self.predict_fn, self.target, self.device, self.kwargs = predict_fn, network, device, dict(kwargs)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        maps = [self.predict_fn(self.target, convert_to_numpy(image), self.device, **self.kwargs) for image in images]
        return {key: torch.stack([torch.as_tensor(as_plane(m[index]).astype(np.int64))[None] for m in maps])
                for index, key in enumerate(("inst_map", "type_map"))}  # fmt: skip


def _predicted_maps(data: Mapping) -> dict:
    return {**data, "inst_map": data["pred"]["inst_map"], "type_map": data["pred"]["type_map"]}


def nuclei_evaluator(
    network: torch.nn.Module | None,
    samples: Sequence[Mapping],
    device: str | torch.device = "cpu",
    num_types: int = 4,
    match_iou: float = 0.5,
    radius: float = 12.0,
    roi_size: int = 256,
    out_size: int = 164,
    sw_batch_size: int = 4,
    overlap: float | None = None,
    predict_fn: Callable[..., tuple[np.ndarray, np.ndarray]] | None = None,
    overlay_dir: str | os.PathLike | None = None,
    progress: bool = True,
    amp: bool = True,
    **postprocess_kwargs,
) -> SupervisedEvaluator:
    """A MONAI ``SupervisedEvaluator`` that segments whole labelled tiles and measures them: the HoVer-Net
    whole-tile path of the bundle's inference config (:class:`~monai_dafgan.segmentation.ScaleImaged`,
    :func:`~monai_dafgan.segmentation.hovernet_inferer`, :class:`~monai_dafgan.segmentation.HoVerNetNucleid`), then
    :class:`~monai_dafgan.metrics.NucleiMetricHandler` (each tile's metrics computed once).

    After ``run()``, ``engine.state.metrics`` holds every metric over all tiles (key metric ``pq``) and
    ``engine.nuclei_scores.images`` one row per tile; :func:`evaluation_result` gathers both.

    Args:
        network: the segmenter (any :func:`~monai_dafgan.segmentation.build_hovernet` encoder or a MONAI
            ``HoVerNet``); passed to ``predict_fn`` when that is given.
        samples: data-contract samples (whole tiles of any size, one per iteration): ``image`` (3, H, W) 0..255,
            ``label_inst`` and ``label_type`` (1, H, W); ``name`` is used when present.
        device: where the network runs.
        num_types, match_iou, radius: of :class:`~monai_dafgan.metrics.NucleiMetric`.
        roi_size, out_size, sw_batch_size, overlap: see :func:`~monai_dafgan.segmentation.hovernet_inferer`.
        predict_fn: instead of HoVer-Net, ``predict_fn(network, image, device, **postprocess_kwargs) ->
            (inst_map, type_map)`` of (H, W) int arrays from a (3, H, W) image 0..255, e.g. another segmenter.
        overlay_dir: when given, ``<overlay_dir>/<name>.png`` shows each tile with its true and predicted nuclei.
        progress: show a progress bar over tiles.
        amp: mixed precision on CUDA (ignored on other devices), as in training.
        postprocess_kwargs: passed to :func:`~monai_dafgan.segmentation.hovernet_postprocess` (or ``predict_fn``).
    """
    device = torch.device(device)
    label = [ConcatItemsd(keys=("label_inst", "label_type"), name="label", dim=0)]
    nuclei = [
        ConcatItemsd(keys=("inst_map", "type_map"), name="nuclei", dim=0),
        EnsureTyped(keys=("nuclei", "label"), dtype=torch.int64, track_meta=False),
    ]
    if predict_fn is None:
        preprocessing = [ScaleImaged(keys="image")]
        inferer = hovernet_inferer(roi_size, out_size, sw_batch_size, overlap)
        postprocessing = [HoVerNetNucleid(keys="pred", **postprocess_kwargs)]
        image_max = 1.0
    else:
        preprocessing, inferer, image_max = [], SimpleInferer(), 255.0
        network = _TileFunction(predict_fn, network, device, postprocess_kwargs)
        postprocessing = [Lambda(_predicted_maps)]
    keys = ("image", "label_inst", "label_type")
    dataset = Dataset(list(samples), transform=Compose([*preprocessing, EnsureTyped(keys=keys, track_meta=False)]))
    scores = NucleiMetricHandler(num_types=num_types, match_iou=match_iou, radius=radius)
    handlers: list = [] if overlay_dir is None else [NucleiOverlays(overlay_dir, scores, image_max=image_max)]
    if progress:
        handlers.append(LossProgressBar(keys=()))
    evaluator = SupervisedEvaluator(
        device=device,
        val_data_loader=DataLoader(dataset, batch_size=1, shuffle=False, num_workers=0),  # tiles differ in size
        network=network,
        inferer=inferer,
        postprocessing=Compose([*postprocessing, *label, *nuclei]),
        key_val_metric={"pq": scores},
        val_handlers=handlers,
        amp=amp and device.type == "cuda",
    )
    evaluator.nuclei_scores = scores
    return evaluator


def evaluation_result(evaluator: SupervisedEvaluator) -> dict:
    """What a run of :func:`nuclei_evaluator` measured: ``{"tiles": [per-tile dict], "aggregate": dict,
    "num_tiles": int}`` (see :func:`evaluate_tiles`)."""
    scores = evaluator.nuclei_scores
    aggregate = {name: evaluator.state.metrics[name] for name in scores.metric_fn.metric_name}
    return {"tiles": list(scores.images), "aggregate": aggregate, "num_tiles": len(scores.images)}


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
    """Predict every tile and measure it against its labels: a run of :func:`nuclei_evaluator`.

    Args:
        network: the segmenter.
        samples: data-contract samples (whole tiles of any size): ``image`` (3, H, W) 0..255, ``label_inst``
            (1, H, W) ids, ``label_type`` (1, H, W) 0..num_types; ``name`` is used when present.
        device: where the network runs.
        num_types: number of nucleus types.
        match_iou: PQ matching threshold (strict).
        radius: centroid pairing radius in pixels (inclusive).
        predict_fn: ``predict_fn(network, image, device, **predict_kwargs) -> (inst_map, type_map)`` of (H, W)
            int arrays; default HoVer-Net's whole-tile path (:func:`monai_dafgan.segmentation.predict_tile`).
        overlay_dir: when given, ``<overlay_dir>/<name>.png`` shows each tile with its true and its predicted nuclei
            (outlines in the CoNSeP type colours).
        progress: show a progress bar over tiles.
        predict_kwargs: the inferer's ``roi_size``, ``out_size``, ``sw_batch_size``, ``overlap`` and
            post-processing settings (e.g. ``keep_unmarked``), or ``predict_fn``'s arguments.

    Returns:
        ``{"tiles": [per-tile dict], "aggregate": dict, "num_tiles": int}``. A per-tile dict holds ``name`` and every
        key of :func:`monai_dafgan.metrics.nuclei_metrics` for that tile; ``aggregate`` holds the same keys over all
        tiles (instance metrics averaged over tiles, F1 pooled, counts summed), as
        :class:`~monai_dafgan.metrics.NucleiMetric` reduces them.

    Raises:
        ValueError: when ``samples`` is empty or a prediction's shape differs from its tile.
    """
    samples = list(samples)
    if not samples:
        raise ValueError("evaluate_tiles needs at least one sample.")
    inferer_keys = ("roi_size", "out_size", "sw_batch_size", "overlap")
    inferer = {k: predict_kwargs.pop(k) for k in inferer_keys if k in predict_kwargs and predict_fn is None}
    evaluator = nuclei_evaluator(network, samples, device, num_types, match_iou, radius, predict_fn=predict_fn,
                                 overlay_dir=overlay_dir, progress=progress, **inferer, **predict_kwargs)  # fmt: skip
    evaluator.run()
    return evaluation_result(evaluator)


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
