"""The DAFF-GAN paper's Table I study as a runnable protocol: HoVer-Net trained on real data, on real + pix2pixHD
samples and on real + DAFF-GAN samples, over several seeds, evaluated on whole tiles and compared pairwise.

A protocol is a YAML file (``configs/table1/*.yaml``; keys documented in :func:`load_protocol`). :func:`run_study`
runs every piece through the MONAI bundle command line, each in its own process with its log in
``<out>/logs/<step>.log``, and skips any piece whose result already exists, so an interrupted or extended study
(more seeds, another condition) only trains what is missing:

1. per synthetic condition, both generators (``dafgan_points2mask``, ``dafgan_mask2image``; ``baseline: true`` is
   pix2pixHD), trained once on the training tiles (holdout left out) and shared by all seeds;
2. per synthetic condition, a synthesis bundle (``dafgan_nuclei_synthesis`` with those weights);
3. per condition and seed, HoVer-Net (``hovernet_consep_synthetic`` train config) with that condition's synthetic
   ratio (0 for real only) and the seed;
4. per run, the whole-tile evaluation (``evaluate.yaml``);
5. ``<out>/table1.md`` and ``<out>/table1.json``: mean ± SD over seeds per condition, and paired differences to the
   baseline condition (:func:`monai_dafgan.segmentation.paired_comparison`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from monai_dafgan.data.io import atomic_write
from monai_dafgan.synthesis.bundle import assemble_synthesis_bundle, library_from_folder, point_map_settings
from monai_dafgan.utils import set_config_values
from monai_dafgan.segmentation.evaluation import TABLE1_COLUMNS, format_table1, paired_comparison

__all__ = [
    "GENERATOR_BUNDLES",
    "StudyStepError",
    "copy_bundle",
    "format_study",
    "load_protocol",
    "run_study",
    "set_config_values",
    "source_bundles",
    "summarize_study",
]

#: the two generator bundles a synthetic condition trains
GENERATOR_BUNDLES = ("dafgan_points2mask", "dafgan_mask2image")
_PROTOCOL_KEYS = {
    "dataset_dir", "split", "holdout", "evaluation", "seeds", "device", "environment", "baseline_condition",
    "conditions", "generators", "synthesis", "hovernet", "checkpoint",
}
_PAIRED_METRICS = ("dice", "aji", "dq", "sq", "pq", "aji_plus")


class StudyStepError(RuntimeError):
    """A bundle run of the study failed; the message holds the end of its log."""


def source_bundles() -> Path:
    """The ``bundles/`` folder of the source checkout this package runs from."""
    bundles = Path(__file__).resolve().parents[1] / "bundles"
    if not (bundles / "dafgan_points2mask" / "configs" / "train.yaml").is_file():
        raise FileNotFoundError(f"{bundles} not found: bundles run from a source checkout (pip install -e .).")
    return bundles


def copy_bundle(name: str, target: Path) -> Path:
    """A copy of a source bundle's files (configs, docs, licence; no weights or run outputs) at ``target``."""
    shutil.copytree(
        source_bundles() / name, target, dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("runs", "eval", "*.pt", "*.ts", "*.npz"),
    )
    return target


def load_protocol(path: str | os.PathLike, **overrides: Any) -> dict:
    """Read a protocol file and apply ``overrides`` (top-level keys; ``None`` values are ignored).

    Keys: ``dataset_dir`` (CoNSeP-layout root), ``split`` (training split), ``holdout`` (tiles never trained on),
    ``evaluation`` (``split``; ``tiles``: a list of names or ``holdout``; ``center_crop``), ``seeds``,
    ``device`` (``cpu``/``cuda``; null: the bundles' default), ``environment`` (variables for every process),
    ``baseline_condition``, ``conditions`` (name -> null for real only, or ``{baseline: bool}`` for synthetic data
    from pix2pixHD (true) or DAFF-GAN (false) generators), ``generators`` (overrides of both generator bundles'
    train config, plus optional ``points2mask``/``mask2image`` mappings for one of them), ``synthesis``
    (overrides of the synthesis bundle config), ``hovernet`` (overrides of the HoVer-Net train config; its
    ``synthetic_ratio`` applies to the synthetic conditions), ``checkpoint`` (``model.pt``: final weights, or
    ``best_model.pt``: best on the validation tiles, which must then not be the evaluated tiles).

    Raises:
        ValueError: unknown keys, a missing baseline condition, no seeds, or best-checkpoint selection on the
            evaluated tiles.
    """
    protocol = yaml.safe_load(Path(path).read_text()) or {}
    protocol.update({k: v for k, v in overrides.items() if v is not None})
    unknown = set(protocol) - _PROTOCOL_KEYS
    if unknown:
        raise ValueError(f"{path}: unknown protocol keys {sorted(unknown)} (known: {sorted(_PROTOCOL_KEYS)}).")
    protocol.setdefault("split", "Train")
    protocol.setdefault("holdout", [])
    protocol.setdefault("evaluation", {"split": protocol["split"], "tiles": "holdout"})
    protocol.setdefault("baseline_condition", "real")
    protocol.setdefault("checkpoint", "model.pt")
    for key in ("generators", "synthesis", "hovernet", "environment"):
        protocol[key] = dict(protocol.get(key) or {})
    conditions = protocol.get("conditions") or {}
    if protocol["baseline_condition"] not in conditions:
        raise ValueError(f"{path}: the baseline condition {protocol['baseline_condition']!r} is not in conditions.")
    if not protocol.get("seeds"):
        raise ValueError(f"{path}: no seeds.")
    if "dataset_dir" not in protocol:
        raise ValueError(f"{path}: no dataset_dir (set it in the file or pass --dataset-dir).")
    evaluation = protocol["evaluation"]
    if protocol["checkpoint"] == "best_model.pt" and evaluation.get("tiles") == "holdout":
        raise ValueError(
            f"{path}: best_model.pt is chosen on the holdout tiles, which are also the evaluated tiles here; use "
            f"model.pt (final weights) or evaluate on another split."
        )
    return protocol


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").lower()


def _cli_value(value: Any) -> str:
    """A value as the MONAI bundle command line (python-fire) reads it back."""
    if isinstance(value, str):
        return value
    return repr(value)


class _Runner:
    def __init__(self, out: Path, device: str | None, environment: Mapping[str, str]):
        self.out, self.logs = out, out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.device_override = {} if device is None else {"device": f"$torch.device('{device}')"}
        self.environment = {**os.environ, **{k: str(v) for k, v in environment.items()}}

    def bundle(self, step: str, bundle: Path, run_id: str, config: str, overrides: Mapping[str, Any]) -> None:
        command = [
            sys.executable, "-m", "monai.bundle", "run", run_id,
            "--config_file", str(bundle / "configs" / config),
            "--logging_file", str(bundle / "configs" / "logging.conf"),
            "--meta_file", str(bundle / "configs" / "metadata.json"),
        ]
        for key, value in {**overrides, **self.device_override}.items():
            command += [f"--{key}", _cli_value(value)]
        log = self.logs / f"{step}.log"
        print(f"  {step} ... ", end="", flush=True)
        start = time.perf_counter()
        with open(log, "w") as stream:
            stream.write(" ".join(command) + "\n\n")
            stream.flush()
            result = subprocess.run(command, stdout=stream, stderr=subprocess.STDOUT, env=self.environment)
        elapsed = time.perf_counter() - start
        if result.returncode:
            tail = "".join(log.read_text().splitlines(keepends=True)[-25:])
            raise StudyStepError(f"{step} failed (exit {result.returncode}, log {log}):\n{tail}")
        print(f"{elapsed:.0f} s", flush=True)


def _generators(protocol: Mapping, bundle: str) -> dict:
    shared = {k: v for k, v in protocol["generators"].items() if k not in ("points2mask", "mask2image")}
    own = protocol["generators"].get(bundle.removeprefix("dafgan_"), {}) or {}
    return {**shared, **own}


def _evaluated_tiles(protocol: Mapping) -> list[str] | None:
    tiles = protocol["evaluation"].get("tiles")
    return list(protocol["holdout"]) if tiles == "holdout" else tiles


def run_study(protocol: Mapping, out: str | os.PathLike) -> dict:
    """Run (or complete) a Table I study; see the module docstring. Returns the content of ``table1.json``."""
    out = Path(out)
    bundles = source_bundles()
    runner = _Runner(out, protocol.get("device"), protocol["environment"])
    data = {"dataset_dir": str(Path(protocol["dataset_dir"]).resolve()), "split": protocol["split"]}
    holdout = list(protocol["holdout"])
    conditions = {name: dict(spec) if spec else None for name, spec in protocol["conditions"].items()}
    started = time.perf_counter()

    synthesis_bundles: dict[str, Path] = {}
    library = None
    synthetic = {name: spec for name, spec in conditions.items() if spec is not None}
    if synthetic:
        print("generators and synthesis bundles")
    for name, spec in synthetic.items():
        baseline = bool(spec.get("baseline", False))
        synthesis = out / "synthesis" / _slug(name)
        roots = {}
        for generator in GENERATOR_BUNDLES:
            root = roots[generator] = out / "generators" / _slug(name) / generator
            if not (root / "models" / "model.pt").is_file():
                overrides = {"bundle_root": str(root), **data, "holdout": holdout, "baseline": baseline,
                             **_generators(protocol, generator)}
                runner.bundle(f"{_slug(name)}_{generator}", bundles / generator, "training", "train.yaml", overrides)
        if library is None:
            library = library_from_folder(data["dataset_dir"], data["split"], holdout)
        g1 = point_map_settings(bundles / "dafgan_points2mask", _generators(protocol, "dafgan_points2mask"))
        assemble_synthesis_bundle(
            synthesis, roots["dafgan_points2mask"], roots["dafgan_mask2image"], library, **g1, fp16=False,
            template=bundles / "dafgan_nuclei_synthesis",
        )  # fmt: skip
        set_config_values(synthesis / "configs" / "inference.yaml", {"baseline": baseline, **protocol["synthesis"]})
        synthesis_bundles[name] = synthesis

    print("HoVer-Net runs")
    results: dict[str, list[dict]] = {}
    tiles = _evaluated_tiles(protocol)
    evaluation = protocol["evaluation"]
    for name, spec in conditions.items():
        results[name] = []
        for seed in protocol["seeds"]:
            root = out / "hovernet" / _slug(name) / f"seed{seed}"
            step = f"{_slug(name)}_seed{seed}"
            if not (root / "models" / "model.pt").is_file():
                overrides = {"bundle_root": str(root), **data, "holdout": holdout, "seed": seed, **protocol["hovernet"]}
                if spec is None:
                    overrides["synthetic_ratio"] = 0.0
                else:
                    overrides["synthesis_bundle"] = str(synthesis_bundles[name])
                runner.bundle(f"{step}_train", bundles / "hovernet_consep_synthetic", "training", "train.yaml", overrides)
            metrics = root / "eval" / "metrics.json"
            if not metrics.is_file():
                overrides = {
                    "bundle_root": str(root), "dataset_dir": data["dataset_dir"],
                    "split": evaluation.get("split", protocol["split"]), "tiles": tiles,
                    "center_crop": evaluation.get("center_crop"), "condition": name,
                    "ckpt_path": str(root / "models" / protocol["checkpoint"]),
                    # the evaluated network must be built as it was trained
                    **{k: v for k, v in protocol["hovernet"].items() if k in ("encoder", "patch_size", "out_size")},
                }
                runner.bundle(f"{step}_evaluate", bundles / "hovernet_consep_synthetic", "evaluating", "evaluate.yaml", overrides)
            results[name].append(json.loads(metrics.read_text()))

    report = summarize_study(results, protocol)
    report["minutes"] = round((time.perf_counter() - started) / 60, 1)
    atomic_write(out / "table1.json", lambda f: f.write(json.dumps(report, indent=2).encode()))
    markdown = format_study(report)
    atomic_write(out / "table1.md", lambda f: f.write(markdown.encode()))
    print(f"\n{markdown}\nwrote {out / 'table1.md'} and {out / 'table1.json'}")
    return report


def summarize_study(results: Mapping[str, Sequence[Mapping]], protocol: Mapping) -> dict:
    """Per-condition per-seed aggregates, mean and SD, and the paired comparison against the baseline condition."""
    import numpy as np

    keys = [key for _, key in TABLE1_COLUMNS]
    conditions = {}
    for name, runs in results.items():
        per_seed = [{key: run["aggregate"].get(key) for key in keys} for run in runs]
        conditions[name] = {
            "seeds": list(protocol["seeds"]),
            "per_seed": per_seed,
            "mean": {key: float(np.mean([s[key] for s in per_seed])) for key in keys},
            "sd": {key: float(np.std([s[key] for s in per_seed], ddof=1)) if len(per_seed) > 1 else None for key in keys},
        }
    paired = paired_comparison(results, protocol["baseline_condition"], _PAIRED_METRICS)
    return {
        "protocol": {k: v for k, v in protocol.items() if k != "environment"},
        "evaluated_tiles": [tile["name"] for tile in next(iter(results.values()))[0]["tiles"]],
        "conditions": conditions,
        "table": {name: [run["aggregate"] for run in runs] for name, runs in results.items()},
        "paired_vs_baseline": paired,
    }


def format_study(report: Mapping) -> str:
    """Markdown: the Table I layout (mean ± SD over seeds), then the paired differences to the baseline."""
    protocol = report["protocol"]
    lines = [
        f"Seeds {protocol['seeds']}; evaluated tiles: {', '.join(report['evaluated_tiles'])}"
        + (f" (centre {protocol['evaluation']['center_crop']} px)" if protocol["evaluation"].get("center_crop") else ""),
        "",
        format_table1(report["table"]),
        f"Paired differences to `{protocol['baseline_condition']}` (mean over tiles of the seed-averaged per-tile "
        f"difference; 95 % bootstrap interval over tiles; seeds whose tile mean improved):",
        "",
        "| condition | " + " | ".join(_PAIRED_METRICS) + " |",
        "|---|" + "---:|" * len(_PAIRED_METRICS),
    ]
    for name, metrics in report["paired_vs_baseline"].items():
        cells = []
        for key in _PAIRED_METRICS:
            m = metrics[key]
            cells.append(
                f"{m['mean_difference']:+.4f} [{m['ci95'][0]:+.4f}, {m['ci95'][1]:+.4f}] "
                f"{m['seeds_improved']}/{m['num_seeds']}"
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
