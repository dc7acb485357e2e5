"""The DAFF-GAN paper's Table I study as a runnable protocol: HoVer-Net trained on real data, on real + pix2pixHD
samples and on real + DAFF-GAN samples, over several seeds, evaluated on whole tiles and compared pairwise.

A protocol is a YAML file (``configs/table1/*.yaml``; keys documented in :func:`load_protocol`). :func:`run_study`
runs every piece through the MONAI bundle command line, each in its own process with its log in
``<out>/logs/<step>.log``, and skips any piece whose result already exists, so an interrupted or extended study
(more seeds, another condition, another evaluation set) only does what is missing:

1. per synthetic condition, both generators (``dafgan_points2mask``, ``dafgan_mask2image``; ``baseline: true`` is
   pix2pixHD), trained once on the training tiles (holdout left out) and shared by all seeds, unless the condition
   names a ready synthesis bundle (``synthesis_bundle``; ``shipped``: the weights shipped with this package);
2. per synthetic condition, a synthesis bundle (``dafgan_nuclei_synthesis`` with those weights);
3. per condition and seed, HoVer-Net (``hovernet_consep_synthetic`` train config) with that condition's synthetic
   ratio (0 for real only; a condition's own ``synthetic_ratio``, else the protocol's) and the seed;
4. per run and evaluation set, the whole-tile evaluation (``evaluate.yaml``);
5. ``<out>/table1.md`` and ``<out>/table1.json``: per evaluation set, mean ± SD over seeds per condition and paired
   differences to the baseline condition (:func:`monai_dafgan.segmentation.paired_comparison`), with a picture of
   the per-tile PQ, AJI and Dice of every condition (``<out>/table1_<set>.png``, :func:`tile_plot`).

Every finished run leaves a record in the protocol's ``results_dir`` (:class:`monai_dafgan.records.RunRecords`):
its whole configuration (protocol entries, seed, a fingerprint of the training data's content) hashed to a key, the
fingerprints of the code and configs that shape it, its training minutes and its metrics per evaluation set. A run
whose record exists with every evaluation set is not run again, on any machine with that record; a changed
configuration has another key and is run anew; a record made with other code is run anew too, unless
``reuse_other_code`` (``--reuse-other-code``) says the change does not matter, and then the report lists it; a new
evaluation set is scored from the run's weights (``<out>`` or ``keep_weights``) without retraining.
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

from monai_dafgan.data.datasets import consep_file_list, nuclei_file_list
from monai_dafgan.records import RunRecords, code_fingerprint, config_key, files_fingerprint
from monai_dafgan.segmentation.evaluation import TABLE1_COLUMNS, format_table1, paired_comparison
from monai_dafgan.synthesis.bundle import (
    assemble_synthesis_bundle,
    bundles_root,
    library_from_folder,
    point_map_settings,
    shipped_synthesis_bundle,
    synthesis_fingerprint,
)
from monai_dafgan.utils import atomic_write, set_config_values
from monai_dafgan.visualize import MAX_DOT_PLOT_SERIES, paired_dot_plot, save_png

__all__ = [
    "GENERATOR_BUNDLES",
    "StudyStepError",
    "copy_bundle",
    "evaluation_sets",
    "format_study",
    "load_protocol",
    "run_study",
    "set_config_values",
    "summarize_study",
    "tile_plot",
]

#: the two generator bundles a synthetic condition trains
GENERATOR_BUNDLES = ("dafgan_points2mask", "dafgan_mask2image")
_PROTOCOL_KEYS = {
    "dataset_dir", "split", "holdout", "train_tiles", "evaluation", "seeds", "device", "environment",
    "baseline_condition", "conditions", "generators", "synthesis", "hovernet", "postprocess", "checkpoint",
    "results_dir", "keep_weights", "reuse_other_code",
}
_EVALUATION_KEYS = {"name", "dataset_dir", "split", "tiles", "center_crop", "image_dir", "label_dir"}
_CONDITION_KEYS = {"baseline", "synthesis_bundle", "synthetic_ratio"}
_PAIRED_METRICS = ("dice", "aji", "dq", "sq", "pq", "aji_plus")
#: what shapes a HoVer-Net run and its evaluation (relative to the package; the bundle is added by the study)
_SEGMENTATION_CODE = ("segmentation", "data", "metrics", "engines", "utils.py")
#: what shapes the synthetic data of a condition whose generators the study trains
_SYNTHESIS_CODE = ("networks", "losses", "points", "synthesis")


class StudyStepError(RuntimeError):
    """A bundle run of the study failed; the message holds the end of its log."""


def copy_bundle(name: str, target: Path) -> Path:
    """A copy of a source bundle's files (configs, docs text, licence) at ``target``: no weights, run outputs or
    pictures (the docs' loss curves and sample grids show the shipped runs on real data, not the copy's)."""
    shutil.copytree(
        bundles_root() / name, target, dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("runs", "eval", "*.pt", "*.ts", "*.npz", "*.png", "*.jpg"),
    )
    return target


def evaluation_sets(protocol: Mapping) -> list[dict]:
    """The protocol's evaluation sets, each a dict with every key filled in: ``name``, ``dataset_dir``, ``split``,
    ``tiles`` (names, or None for all; ``holdout`` resolved), ``center_crop``, ``image_dir``/``label_dir`` (the
    generic reader's folders, None for CoNSeP layout)."""
    entries = protocol["evaluation"]
    entries = [entries] if isinstance(entries, Mapping) else list(entries)
    sets = []
    for index, entry in enumerate(entries):
        tiles = entry.get("tiles")
        generic = entry.get("image_dir") is not None
        sets.append({
            "name": str(entry.get("name") or ("holdout" if tiles == "holdout" else f"set{index}")),
            "dataset_dir": None if generic else str(entry.get("dataset_dir", protocol["dataset_dir"])),
            "split": None if generic else entry.get("split", protocol["split"]),
            "tiles": list(protocol["holdout"]) if tiles == "holdout" else (list(tiles) if tiles else None),
            "center_crop": entry.get("center_crop"),
            "image_dir": entry.get("image_dir"),
            "label_dir": entry.get("label_dir"),
        })  # fmt: skip
    return sets


def load_protocol(path: str | os.PathLike, **overrides: Any) -> dict:
    """Read a protocol file and apply ``overrides`` (top-level keys; ``None`` values are ignored).

    Keys: ``dataset_dir`` (CoNSeP-layout root), ``split`` (training split), ``holdout`` (tiles never trained on),
    ``train_tiles`` (optional: train on these tiles of the split only, e.g. a low-label arm; default all but the
    holdout), ``evaluation`` (one set or a list of sets, each with ``name``, ``dataset_dir`` (default the
    protocol's) and ``split``, or ``image_dir`` and ``label_dir`` for the generic reader; ``tiles``: a list of names,
    ``holdout`` or null for all; ``center_crop``), ``seeds``, ``device`` (``cpu``/``cuda``; null: the bundles'
    default), ``environment`` (variables for every process), ``baseline_condition``, ``conditions`` (name -> null
    for real only, or ``{baseline: bool}`` for synthetic data from pix2pixHD (true) or DAFF-GAN (false) generators,
    plus optional ``synthesis_bundle``: a ready synthesis bundle folder or ``shipped`` instead of training
    generators, and ``synthetic_ratio``: this condition's synthetic samples per real one, e.g. for a mixing-ratio
    sweep, instead of the ``hovernet`` one), ``generators`` (overrides of both generator bundles' train config, plus
    optional ``points2mask``/``mask2image`` mappings for one of them), ``synthesis`` (overrides of the synthesis
    bundle config), ``hovernet`` (overrides of the HoVer-Net train config; its ``synthetic_ratio`` applies to the
    synthetic conditions), ``postprocess`` (overrides of the evaluate config's post-processing, e.g.
    ``keep_unmarked``; part of each evaluation set's key), ``checkpoint`` (``model.pt``: final weights, or
    ``best_model.pt``: best on the validation tiles, which must then not be the evaluated tiles), ``results_dir``
    (run records; default ``<out>/records``), ``keep_weights`` (a folder where each run's weights are kept as
    ``<identity>.pt``; default none), ``reuse_other_code`` (default false: a record made with other code, by the
    fingerprints of the modules and configs that shape a run, is run anew; true reuses it and the report lists it).

    Raises:
        ValueError: unknown keys, a missing baseline condition, no seeds, best-checkpoint selection on the
            evaluated tiles, training tiles that are evaluated or held out, or shipped generators for training
            tiles other than theirs.
    """
    protocol = yaml.safe_load(Path(path).read_text()) or {}
    protocol.update({k: v for k, v in overrides.items() if v is not None})
    unknown = set(protocol) - _PROTOCOL_KEYS
    if unknown:
        raise ValueError(f"{path}: unknown protocol keys {sorted(unknown)} (known: {sorted(_PROTOCOL_KEYS)}).")
    protocol.setdefault("split", "Train")
    protocol.setdefault("holdout", [])
    protocol.setdefault("train_tiles", None)
    protocol.setdefault("evaluation", {"split": protocol["split"], "tiles": "holdout"})
    protocol.setdefault("baseline_condition", "real")
    protocol.setdefault("checkpoint", "model.pt")
    for key in ("generators", "synthesis", "hovernet", "postprocess", "environment"):
        protocol[key] = dict(protocol.get(key) or {})
    conditions = protocol.get("conditions") or {}
    if protocol["baseline_condition"] not in conditions:
        raise ValueError(f"{path}: the baseline condition {protocol['baseline_condition']!r} is not in conditions.")
    for name, spec in conditions.items():
        extra = set(spec or {}) - _CONDITION_KEYS
        if extra:
            raise ValueError(
                f"{path}: condition {name!r} has unknown keys {sorted(extra)} (known: {sorted(_CONDITION_KEYS)})."
            )
        ratio = (spec or {}).get("synthetic_ratio")
        if ratio is not None and (isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or ratio < 0):
            raise ValueError(f"{path}: condition {name!r} has synthetic_ratio {ratio!r}; give a number >= 0.")
        if protocol["train_tiles"] and (spec or {}).get("synthesis_bundle") == "shipped":
            raise ValueError(
                f"{path}: condition {name!r} uses the shipped generators, which were trained on all non-holdout tiles, "
                "not on train_tiles alone; train its generators in the study (drop synthesis_bundle)."
            )
    if not protocol.get("seeds"):
        raise ValueError(f"{path}: no seeds.")
    if "dataset_dir" not in protocol:
        raise ValueError(f"{path}: no dataset_dir (set it in the file or pass --dataset-dir).")
    entries = protocol["evaluation"]
    for entry in [entries] if isinstance(entries, Mapping) else entries:
        extra = set(entry) - _EVALUATION_KEYS
        if extra:
            raise ValueError(
                f"{path}: evaluation set has unknown keys {sorted(extra)} (known: {sorted(_EVALUATION_KEYS)})."
            )
        if protocol["checkpoint"] == "best_model.pt" and entry.get("tiles") == "holdout":
            raise ValueError(
                f"{path}: best_model.pt is chosen on the holdout tiles, which are also the evaluated tiles here; use "
                f"model.pt (final weights) or evaluate on another split."
            )
    sets = evaluation_sets(protocol)
    names = [s["name"] for s in sets]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: evaluation sets need distinct names, got {names}.")
    train_tiles = protocol["train_tiles"]
    if train_tiles:
        for s in sets:
            same_split = s["image_dir"] is None and s["split"] == protocol["split"]
            leaked = sorted(set(train_tiles) & set(s["tiles"] or [])) if same_split else []
            if leaked or set(train_tiles) & set(protocol["holdout"]):
                raise ValueError(
                    f"{path}: train_tiles {sorted(set(train_tiles) & (set(leaked) | set(protocol['holdout'])))} are "
                    "held out or evaluated."
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
        self.told_where_logs_are = False

    def bundle(self, step: str, bundle: Path, run_id: str, config: str, overrides: Mapping[str, Any]) -> float:
        """Run one bundle config in its own process; returns its wall-clock minutes."""
        command = [
            sys.executable, "-m", "monai.bundle", "run", run_id,
            "--config_file", str(bundle / "configs" / config),
            "--logging_file", str(bundle / "configs" / "logging.conf"),
            "--meta_file", str(bundle / "configs" / "metadata.json"),
        ]
        for key, value in {**overrides, **self.device_override}.items():
            command += [f"--{key}", _cli_value(value)]
        log = self.logs / f"{step}.log"
        if not self.told_where_logs_are:
            # a step trains for up to hours in a child process: its progress bar is in its log, not here
            print(f"  (each step's progress: {self.logs}/<step>.log)", flush=True)
            self.told_where_logs_are = True
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
        return elapsed / 60


def _generators(protocol: Mapping, bundle: str) -> dict:
    shared = {k: v for k, v in protocol["generators"].items() if k not in ("points2mask", "mask2image")}
    own = protocol["generators"].get(bundle.removeprefix("dafgan_"), {}) or {}
    return {**shared, **own}


def _training_holdout(protocol: Mapping, split_files: Sequence[Mapping]) -> list[str]:
    """What the bundles are told to leave out: the holdout, or everything but ``train_tiles`` when they are set."""
    if not protocol["train_tiles"]:
        return list(protocol["holdout"])
    names = [item["name"] for item in split_files]
    missing = sorted(set(protocol["train_tiles"]) - set(names))
    if missing:
        raise ValueError(f"train_tiles {missing} are not in the {protocol['split']} split.")
    return [name for name in names if name not in set(protocol["train_tiles"])]


def _set_files(evaluation: Mapping) -> list[dict]:
    if evaluation["image_dir"] is not None:
        files = nuclei_file_list(evaluation["image_dir"], evaluation["label_dir"])
    else:
        files = consep_file_list(evaluation["dataset_dir"], evaluation["split"])
    if evaluation["tiles"] is not None:
        by_name = {item["name"]: item for item in files}
        unknown = [name for name in evaluation["tiles"] if name not in by_name]
        if unknown:
            raise ValueError(f"evaluation set {evaluation['name']!r}: tiles {unknown} are not in it.")
        files = [by_name[name] for name in evaluation["tiles"]]
    return files


def run_study(protocol: Mapping, out: str | os.PathLike) -> dict:
    """Run (or complete) a Table I study; see the module docstring. Returns the content of ``table1.json``."""
    out = Path(out)
    bundles = bundles_root()
    runner = _Runner(out, protocol.get("device"), protocol["environment"])
    records = RunRecords(protocol.get("results_dir") or out / "records")
    keep_weights = Path(protocol["keep_weights"]) if protocol.get("keep_weights") else None
    data = {"dataset_dir": str(Path(protocol["dataset_dir"]).resolve()), "split": protocol["split"]}
    split_files = consep_file_list(data["dataset_dir"], data["split"])
    holdout = _training_holdout(protocol, split_files)
    training_data = files_fingerprint([item for item in split_files if item["name"] not in set(holdout)])
    sets = evaluation_sets(protocol)
    set_keys = {
        s["name"]: config_key({
            "data": files_fingerprint(_set_files(s)), "center_crop": s["center_crop"],
            "postprocess": protocol["postprocess"],
        }) for s in sets  # fmt: skip
    }
    conditions = {name: dict(spec) if spec else None for name, spec in protocol["conditions"].items()}
    segmentation_code = code_fingerprint([*_SEGMENTATION_CODE, bundles / "hovernet_consep_synthetic" / "configs"])
    started = time.perf_counter()

    # synthetic data: what a condition's samples come from, and its part of the run configuration. Ready bundles
    # are copied now (their weights are part of the key); generators are trained only when a run needs them, so a
    # study whose records are complete trains nothing
    synthesis_bundles: dict[str, Path] = {}
    synthesis_configs: dict[str, dict] = {}
    synthesis_code = code_fingerprint([
        *_SYNTHESIS_CODE, *(bundles / b / "configs" for b in GENERATOR_BUNDLES),
        bundles / "dafgan_nuclei_synthesis" / "configs",
    ])  # fmt: skip
    for name, spec in conditions.items():
        if spec is None:
            continue
        baseline = bool(spec.get("baseline", False))
        ready = spec.get("synthesis_bundle")
        if ready is not None:
            source = shipped_synthesis_bundle() if ready == "shipped" else Path(ready).resolve()
            synthesis = _ready_synthesis(source, out / "synthesis" / _slug(name), baseline, protocol["synthesis"])
            synthesis_configs[name] = {
                "baseline": baseline, "synthesis": protocol["synthesis"],
                "weights": synthesis_fingerprint(synthesis),
            }  # fmt: skip
            synthesis_bundles[name] = synthesis
        else:
            synthesis_configs[name] = {
                "baseline": baseline, "generators": protocol["generators"], "synthesis": protocol["synthesis"],
            }  # fmt: skip

    def synthesis_bundle(name: str) -> Path:
        """The condition's synthesis bundle, its generators trained and assembled on first use; conditions whose
        synthetic data is configured alike (e.g. a mixing-ratio sweep) share the first one's."""
        if name in synthesis_bundles:
            return synthesis_bundles[name]
        owner = next(other for other in conditions if synthesis_configs.get(other) == synthesis_configs[name])
        if owner in synthesis_bundles:
            synthesis_bundles[name] = synthesis_bundles[owner]
            return synthesis_bundles[name]
        baseline = synthesis_configs[name]["baseline"]
        synthesis, roots = out / "synthesis" / _slug(owner), {}
        for generator in GENERATOR_BUNDLES:
            root = roots[generator] = out / "generators" / _slug(owner) / generator
            if not (root / "models" / "model.pt").is_file():
                overrides = {"bundle_root": str(root), **data, "holdout": holdout, "baseline": baseline,
                             **_generators(protocol, generator)}  # fmt: skip
                runner.bundle(f"{_slug(owner)}_{generator}", bundles / generator, "training", "train.yaml", overrides)
        library = library_from_folder(data["dataset_dir"], data["split"], holdout)
        g1 = point_map_settings(bundles / "dafgan_points2mask", _generators(protocol, "dafgan_points2mask"))
        assemble_synthesis_bundle(
            synthesis, roots["dafgan_points2mask"], roots["dafgan_mask2image"], library, **g1, fp16=False,
            template=bundles / "dafgan_nuclei_synthesis",
        )  # fmt: skip
        set_config_values(synthesis / "configs" / "inference.yaml", {"baseline": baseline, **protocol["synthesis"]})
        synthesis_bundles[name] = synthesis_bundles[owner] = synthesis
        return synthesis

    print("HoVer-Net runs")
    results: dict[str, dict[str, list[dict]]] = {s["name"]: {} for s in sets}
    reused_other_code: list[str] = []
    for name, spec in conditions.items():
        for s in sets:
            results[s["name"]][name] = []
        for seed in protocol["seeds"]:
            root = out / "hovernet" / _slug(name) / f"seed{seed}"
            step = f"{_slug(name)}_seed{seed}"
            own_ratio = (spec or {}).get("synthetic_ratio")
            # a condition's own ratio joins its key; without one the key is as it always was (records stay valid)
            keyed = dict(protocol["hovernet"])
            if own_ratio is not None:
                keyed["synthetic_ratio"] = float(own_ratio)
            hovernet = {**keyed, "synthetic_ratio": 0.0} if spec is None else keyed
            config = {
                "condition": name, "seed": seed, "split": protocol["split"], "holdout": holdout,
                "training_data": training_data, "hovernet": keyed, "checkpoint": protocol["checkpoint"],
                "synthetic": synthesis_configs.get(name),
            }  # fmt: skip
            code = {"segmentation": segmentation_code}
            if spec is not None and spec.get("synthesis_bundle") is None:
                code["synthesis"] = synthesis_code
            key = config_key(config)
            record = records.load(step, key)
            if record is not None and record.get("code") != code:
                if protocol.get("reuse_other_code"):
                    reused_other_code.append(step)
                else:
                    print(f"  {step}: its record was made with other code (fingerprints differ); running it anew "
                          "(--reuse-other-code reuses it)")  # fmt: skip
                    record = None
            # the identity of the trained weights: the configuration and the code that trained them
            identity = config_key({"key": key, "code": code})
            record = record or {"key": key, "identity": identity, "config": config, "code": code, "evaluations": {}}
            missing = [s for s in sets if set_keys[s["name"]] not in record["evaluations"]]
            if missing:
                weights = _trained_weights(root, record["identity"], protocol["checkpoint"], keep_weights)
                if weights is None:
                    if root.exists():
                        shutil.rmtree(root)  # another configuration's run
                    overrides = {"bundle_root": str(root), **data, "holdout": holdout, "seed": seed, **hovernet}
                    if spec is not None:
                        overrides["synthesis_bundle"] = str(synthesis_bundle(name))
                    record["train_minutes"] = round(runner.bundle(
                        f"{step}_train", bundles / "hovernet_consep_synthetic", "training", "train.yaml", overrides), 2)
                    atomic_write(root / "run_key.txt", lambda f: f.write(identity.encode()))
                    weights = root / "models" / protocol["checkpoint"]
                    if keep_weights is not None:
                        keep_weights.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(weights, keep_weights / f"{identity}.pt")
                for s in missing:
                    eval_dir = root / "eval" / _slug(s["name"])
                    overrides = {
                        "bundle_root": str(root), "output_dir": str(eval_dir), "condition": name,
                        "ckpt_path": str(weights), "tiles": s["tiles"], "center_crop": s["center_crop"],
                        **protocol["postprocess"],
                        **({"image_dir": s["image_dir"], "label_dir": s["label_dir"]} if s["image_dir"] is not None
                           else {"dataset_dir": str(Path(s["dataset_dir"]).resolve()), "split": s["split"]}),
                        # the evaluated network must be built as it was trained
                        **{k: v for k, v in protocol["hovernet"].items() if k in ("encoder", "patch_size", "out_size")},
                    }
                    runner.bundle(f"{step}_evaluate_{_slug(s['name'])}", bundles / "hovernet_consep_synthetic",
                                  "evaluating", "evaluate.yaml", overrides)  # fmt: skip
                    metrics = json.loads((eval_dir / "metrics.json").read_text())
                    record["evaluations"][set_keys[s["name"]]] = {"set": s, "result": metrics}
                    records.save(step, record)
            for s in sets:
                results[s["name"]][name].append(record["evaluations"][set_keys[s["name"]]]["result"])

    report = {
        "protocol": {k: v for k, v in protocol.items() if k != "environment"},
        "minutes": round((time.perf_counter() - started) / 60, 1),
        "reused_with_other_code": reused_other_code,
        "evaluation_sets": {s["name"]: {**summarize_study(results[s["name"]], protocol), "set": s} for s in sets},
    }
    for s in sets:
        picture = f"table1_{_slug(s['name'])}.png"
        plot = tile_plot(results[s["name"]])
        if plot is None:
            print(f"{picture} not drawn: {len(conditions)} conditions, the picture tells {MAX_DOT_PLOT_SERIES} apart")
            continue
        save_png(plot, out / picture)
        report["evaluation_sets"][s["name"]]["tile_plot"] = picture
    atomic_write(out / "table1.json", lambda f: f.write(json.dumps(report, indent=2).encode()))
    markdown = format_study(report)
    atomic_write(out / "table1.md", lambda f: f.write(markdown.encode()))
    print(f"\n{markdown}\nwrote {out / 'table1.md'} and {out / 'table1.json'}")
    return report


def _ready_synthesis(source: Path, target: Path, baseline: bool, overrides: Mapping) -> Path:
    """A copy of a ready synthesis bundle (weights included) with the condition's settings, for one condition."""
    if not (source / "configs" / "inference.yaml").is_file():
        raise FileNotFoundError(f"{source} is not a synthesis bundle (no configs/inference.yaml).")
    shutil.copytree(source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("runs", "eval", "__pycache__"))
    set_config_values(target / "configs" / "inference.yaml", {"baseline": baseline, **overrides})
    return target


def _trained_weights(root: Path, identity: str, checkpoint: str, keep_weights: Path | None) -> Path | None:
    """The weights a run of this identity (configuration and code) trained, when they exist: in the study folder or
    kept (``keep_weights``)."""
    weights = root / "models" / checkpoint
    key_file = root / "run_key.txt"
    if weights.is_file() and key_file.is_file() and key_file.read_text().strip() == identity:
        return weights
    kept = keep_weights / f"{identity}.pt" if keep_weights is not None else None
    return kept if kept is not None and kept.is_file() else None


def summarize_study(results: Mapping[str, Sequence[Mapping]], protocol: Mapping) -> dict:
    """One evaluation set's summary: per-condition per-seed aggregates, mean and SD, and the paired comparison
    against the baseline condition. ``results``: condition -> one evaluation result per seed."""
    import numpy as np

    keys = [key for _, key in TABLE1_COLUMNS]
    conditions = {}
    for name, runs in results.items():
        per_seed = [{key: run["aggregate"].get(key) for key in keys} for run in runs]
        conditions[name] = {
            "seeds": list(protocol["seeds"]),
            "per_seed": per_seed,
            "mean": {key: float(np.mean([s[key] for s in per_seed])) for key in keys},
            "sd": {
                key: float(np.std([s[key] for s in per_seed], ddof=1)) if len(per_seed) > 1 else None for key in keys
            },
        }
    paired = paired_comparison(results, protocol["baseline_condition"], _PAIRED_METRICS)
    return {
        "evaluated_tiles": [tile["name"] for tile in next(iter(results.values()))[0]["tiles"]],
        "conditions": conditions,
        "table": {name: [run["aggregate"] for run in runs] for name, runs in results.items()},
        "paired_vs_baseline": paired,
    }


_TILE_PLOT_METRICS = ("pq", "aji", "dice")


def tile_plot(results: Mapping[str, Sequence[Mapping]]):
    """One evaluation set's per-tile picture: for PQ, AJI and Dice, each condition's seed-averaged value on every
    evaluated tile, a tile's conditions joined by a line (the paired comparison, seen), as (H, W, 3) uint8; None
    when there are more conditions than the picture tells apart (:data:`MAX_DOT_PLOT_SERIES`).
    ``results``: condition -> one evaluation result (with ``tiles``) per seed."""
    import numpy as np

    if len(results) > MAX_DOT_PLOT_SERIES:
        return None
    seeds = len(next(iter(results.values())))
    panels = []
    for key in _TILE_PLOT_METRICS:
        per_condition = {}
        for name, runs in results.items():
            tiles = [tile["name"] for tile in runs[0]["tiles"]]
            per_condition[name] = {
                tile: float(np.mean([next(t[key] for t in run["tiles"] if t["name"] == tile) for run in runs]))
                for tile in tiles
            }
        panels.append(paired_dot_plot(per_condition, title=f"{key} per tile (mean of {seeds} seed(s))"))
    return np.concatenate(panels, axis=0)


def format_study(report: Mapping) -> str:
    """Markdown, per evaluation set: the Table I layout (mean ± SD over seeds), then the paired differences to the
    baseline."""
    protocol = report["protocol"]
    lines = []
    if report.get("reused_with_other_code"):
        lines += [f"Runs reused from records made with other code (--reuse-other-code): "
                  f"{', '.join(report['reused_with_other_code'])}", ""]  # fmt: skip
    for name, summary in report["evaluation_sets"].items():
        crop = summary["set"].get("center_crop")
        lines += [
            f"### Evaluation set `{name}`",
            "",
            f"Seeds {protocol['seeds']}; evaluated tiles: {', '.join(summary['evaluated_tiles'])}"
            + (f" (centre {crop} px)" if crop else ""),
            "",
            format_table1(summary["table"]),
            *([f"![per-tile PQ, AJI and Dice of each condition]({summary['tile_plot']})", ""]
              if summary.get("tile_plot") else []),  # fmt: skip
            f"Paired differences to `{protocol['baseline_condition']}` (mean over tiles of the seed-averaged per-tile "
            f"difference; 95 % bootstrap interval over tiles; seeds whose tile mean improved):",
            "",
            "| condition | " + " | ".join(_PAIRED_METRICS) + " |",
            "|---|" + "---:|" * len(_PAIRED_METRICS),
        ]
        for condition, metrics in summary["paired_vs_baseline"].items():
            cells = []
            for key in _PAIRED_METRICS:
                m = metrics[key]
                cells.append(
                    f"{m['mean_difference']:+.4f} [{m['ci95'][0]:+.4f}, {m['ci95'][1]:+.4f}] "
                    f"{m['seeds_improved']}/{m['num_seeds']}"
                )
            lines.append(f"| {condition} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)
