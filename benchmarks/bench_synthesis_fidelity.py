"""Fidelity of three-stage synthetic samples against real CoNSeP 256x256 patches (KS statistics and medians).

Library: the CoNSeP Train tiles except the held-out tiles (train_5, 10, 15, 20, 25). Synthetic samples: point sets
of ``PointSetDataset(library, n, 256, seed=0)`` (default stage-1 transform) through ``NucleiSynthesizer`` with the
given trained G1/G2 weights. Two real references, each ``--num-real`` random 256x256 windows (fixed seed):

- **held-out**: windows of the 5 held-out tiles (never seen by the generators). They are few and unrepresentative
  (train_5 has 20 nuclei), so a second reference is reported;
- **library**: windows of the 22 library tiles (the generators' own training tiles: a reference for "does it look
  like the data it was trained on", not for generalisation).

A third KS column, held-out vs library, is the real-vs-real floor: the gap two real references already have.

Metrics (KS statistic of ``scipy.stats.ks_2samp`` and medians):

1. per-type nucleus morphology (``skimage.measure.regionprops`` on ``label_inst``; type of each instance from
   ``label_type``): area, eccentricity, solidity. Instances touching the patch border are left out on both sides
   (their shape is the crop's, not the nucleus');
2. instance recovery (synthetic only): instances per requested point (the mean of ``kept``) and the fraction of
   requested points whose recovered instance's centroid lies within 3 px of the requested centroid, per type;
3. nuclei per patch: synthetic after recovery (and requested, before G1) vs real nuclei whose annotated centroid lies
   in the window (the same rule the point sets are cropped with);
4. colour/stain, per patch: RGB mean and std inside nuclei and in the background, and the hematoxylin optical
   density (``skimage.color.rgb2hed``) inside vs outside nuclei;
5. segmentation consistency (with ``--segmenter``, a HoVer-Net trained on real data only, e.g. the
   ``hovernet_consep_synthetic`` bundle's ``models/model.pt`` with ``synthetic_ratio 0``): the segmenter predicts
   the centre of ``--num-segmented`` patches of each source it outputs (e.g. 164x164 for HoVerNet fast mode; one
   window, no stitching; the architecture is read off the checkpoint, any ``--encoder`` of the bundle) and is
   scored against their labels (Dice, AJI, PQ, detection and type F1 pooled over the patches, as
   :class:`monai_dafgan.metrics.NucleiMetric` aggregates). Synthetic images that look like real ones should be
   segmented about as well as real held-out and library patches; without ``--segmenter`` the row is "pending".

    CONSEP_DIR=/path/to/consep python benchmarks/bench_synthesis_fidelity.py \\
        --points-to-mask G1.pt --mask-to-image G2.pt --preset small --point-encoding ellipse --num-samples 200 \\
        --tag daff

Prints a Markdown table and writes benchmarks/results/synthesis_fidelity[_TAG].json and .md, and a preview grid
benchmarks/results/synthesis_preview[_TAG].png (point map | G1 mask | recovered instances | synthetic image).
Weights may be float16 (as shipped): they are loaded into float32 networks.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy.stats import ks_2samp
from skimage.color import rgb2hed
from skimage.measure import regionprops

from monai_dafgan.data import crop_sample, load_consep
from monai_dafgan.metrics import NucleiMetric
from monai_dafgan.data.types import NUM_TYPES, TYPE_NAMES
from monai_dafgan.networks import DAFFGenerator
from monai_dafgan.points import CentroidLibrary, PointSetDataset
from monai_dafgan.points.encoding import DEFAULT_RADIUS
from monai_dafgan.segmentation import hovernet_from_checkpoint, hovernet_postprocess
from monai_dafgan.synthesis import DEFAULT_MIN_AREA, NucleiSynthesizer
from monai_dafgan.visualize import image_grid, overlay_nuclei, render_tensor, save_png

HOLDOUT = ("train_5", "train_10", "train_15", "train_20", "train_25")
SIZE = (256, 256)
RECOVERY_RADIUS = 3.0
MAX_PREVIEW_BYTES = 1_000_000
PREVIEW_ROWS, PREVIEW_MIN_POINTS = 4, 10
SOURCES = ("synthetic", "heldout", "library", "library_resampled")
MORPHOLOGY = ("area", "eccentricity", "solidity")
SEGMENTATION_METRICS = ("dice", "aji", "pq", "f1_detection", "accuracy_type")
_AGGREGATION = {"dice": "mean over patches", "aji": "mean over patches", "pq": "mean over patches",
                "f1_detection": "pooled", "accuracy_type": "pooled"}


# ---------------------------------------------------------------------------------------------- samples
def real_patches(tiles: list[dict], n: int, seed: int) -> list[dict]:
    """``n`` uniformly random 256x256 windows of ``tiles`` (data-contract samples), plus ``centred_count``: the
    annotated nuclei whose centroid lies in the window (how point sets are cropped from the library)."""
    library = CentroidLibrary.from_samples(tiles)
    rng = np.random.RandomState(seed)
    patches = []
    for _ in range(n):
        tile, top, left = library.random_window(rng, SIZE)
        patch = crop_sample(tiles[tile], top, left, *SIZE)
        patch["centred_count"] = len(library.crop(tile, top, left, SIZE))
        patches.append(patch)
    return patches


def load_generators(args) -> tuple[DAFFGenerator, DAFFGenerator]:
    g1 = DAFFGenerator.from_preset(
        args.preset, NUM_TYPES + 1, NUM_TYPES + 1, baseline=args.baseline, output_activation=None
    )
    g2 = DAFFGenerator.from_preset(args.preset, NUM_TYPES + 2, 3, baseline=args.baseline)
    for network, path in ((g1, args.points_to_mask), (g2, args.mask_to_image)):
        network.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return g1, g2


# ---------------------------------------------------------------------------------------------- measurements
def morphology(samples: list[dict]) -> dict[str, np.ndarray]:
    """Pooled per-instance ``{metric}_{type}`` and ``{metric}_all`` values; border-touching instances left out."""
    values: dict[str, list] = {f"{m}_{t}": [] for m in MORPHOLOGY for t in [*TYPE_NAMES.values(), "all"]}
    for sample in samples:
        inst, types = np.asarray(sample["label_inst"])[0], np.asarray(sample["label_type"])[0]
        height, width = inst.shape
        for region in regionprops(inst):
            r0, c0, r1, c1 = region.bbox
            if r0 == 0 or c0 == 0 or r1 == height or c1 == width:
                continue
            t = int(np.bincount(types[region.coords[:, 0], region.coords[:, 1]]).argmax())
            if t not in TYPE_NAMES:
                continue
            for name in MORPHOLOGY:
                values[f"{name}_{TYPE_NAMES[t]}"].append(float(getattr(region, name)))
                values[f"{name}_all"].append(float(getattr(region, name)))
    return {k: np.array(v) for k, v in values.items()}


def colour_statistics(samples: list[dict]) -> dict[str, np.ndarray]:
    """Per-patch colour values; a patch without nuclei (or without background) gives no value for that region."""
    values: dict[str, list] = {}
    for sample in samples:
        image = np.clip(np.moveaxis(np.asarray(sample["image"], np.float32), 0, -1), 0, 255)
        nuclei = np.asarray(sample["label_inst"])[0] > 0
        hematoxylin = rgb2hed(image / 255.0)[..., 0]
        for region, mask in (("nuclei", nuclei), ("background", ~nuclei)):
            if mask.sum() < 10:
                continue
            pixels = image[mask]
            for c, channel in enumerate("RGB"):
                values.setdefault(f"{channel} mean {region}", []).append(float(pixels[:, c].mean()))
                values.setdefault(f"{channel} std {region}", []).append(float(pixels[:, c].std()))
            values.setdefault(f"H OD {region}", []).append(float(hematoxylin[mask].mean()))
        if nuclei.sum() >= 10 and (~nuclei).sum() >= 10:
            contrast = hematoxylin[nuclei].mean() - hematoxylin[~nuclei].mean()
            values.setdefault("H OD nuclei - background", []).append(float(contrast))
    return {k: np.array(v) for k, v in values.items()}


def recovery(samples: list[dict]) -> dict[str, dict[str, float]]:
    """Instance recovery per type and overall: kept fraction, fraction within ``RECOVERY_RADIUS`` px (missing
    instances count as misses), median centroid offset of the kept ones, and the number of requested points."""
    requested, kept, offsets = [], [], []
    for sample in samples:
        points, keep = np.asarray(sample["requested_points"]).reshape(-1, 3), np.asarray(sample["kept"], bool)
        offset = np.full(len(points), np.inf)
        offset[keep] = np.linalg.norm(np.asarray(sample["points"])[:, :2] - points[keep, :2], axis=1)
        requested.append(points[:, 2].astype(int))
        kept.append(keep)
        offsets.append(offset)
    types, keep, offset = np.concatenate(requested), np.concatenate(kept), np.concatenate(offsets)
    out = {}
    for name, select in [*((TYPE_NAMES[t], types == t) for t in TYPE_NAMES), ("all", np.ones_like(keep))]:
        n = int(select.sum())
        kept_offsets = offset[select & keep]
        out[name] = {
            "requested": n,
            "instances_per_point": float(keep[select].mean()) if n else float("nan"),
            "within_3px": float((offset[select] <= RECOVERY_RADIUS).mean()) if n else float("nan"),
            "median_offset_px": float(np.median(kept_offsets)) if len(kept_offsets) else float("nan"),
        }
    return out


# ---------------------------------------------------------------------------------------------- rows
def segmentation_consistency(
    network: torch.nn.Module, samples: list[dict], device: str, keep_unmarked: bool = False
) -> dict[str, float]:
    """Scores of a HoVer-Net on the centre of 256x256 patches it predicts (one window each; see module docstring)."""
    network.eval()
    with torch.no_grad():
        out = network(torch.zeros(1, 3, *SIZE, device=device))["nucleus_prediction"].shape[-1]
    margin = (SIZE[0] - out) // 2
    centre = slice(margin, margin + out)
    metric = NucleiMetric(metric_name=SEGMENTATION_METRICS, num_types=NUM_TYPES)
    network.eval()
    for sample in samples:
        image = torch.as_tensor(np.asarray(sample["image"], np.float32) / 255.0)[None].to(device)
        with torch.no_grad():
            outputs = {k: v[0].float().cpu() for k, v in network(image).items()}
        inst, types = hovernet_postprocess(outputs, keep_unmarked=keep_unmarked)
        true_inst = np.asarray(sample["label_inst"])[0, centre, centre]
        true_type = np.asarray(sample["label_type"])[0, centre, centre]
        pred = torch.as_tensor(np.stack([inst, types]).astype(np.int64))[None]
        true = torch.as_tensor(np.stack([true_inst, true_type]).astype(np.int64))[None]
        metric(y_pred=pred, y=true)
    return {k: float(v) for k, v in metric.aggregate().items()}


def _median(x: np.ndarray) -> float:
    return float(np.median(x)) if len(x) else float("nan")


def _ks(a: np.ndarray, b: np.ndarray) -> float:
    return float(ks_2samp(a, b).statistic) if len(a) and len(b) else float("nan")


def ks_rows(section: str, values: dict[str, dict[str, np.ndarray]]) -> list[dict]:
    """One row per metric: medians of the synthetic and real sets, KS of synthetic vs each real reference, and two
    real-vs-real KS: held-out vs library (how different the references are) and library vs an independent draw of
    library windows (the sampling-noise floor at this n)."""
    rows = []
    for key in set().union(*(values[source].keys() for source in SOURCES)):
        s, h, l, l2 = (values[source].get(key, np.zeros(0)) for source in SOURCES)
        rows.append(
            {
                "section": section,
                "metric": key,
                "n": {"synthetic": len(s), "heldout": len(h), "library": len(l)},
                "median": {"synthetic": _median(s), "heldout": _median(h), "library": _median(l)},
                "ks": {
                    "synthetic_vs_heldout": _ks(s, h),
                    "synthetic_vs_library": _ks(s, l),
                    "heldout_vs_library": _ks(h, l),
                    "library_vs_library_resampled": _ks(l, l2),
                },
            }
        )
    return rows


def _sort_key(metric: str, order: list[str]) -> tuple:
    return next((i for i, prefix in enumerate(order) if metric.startswith(prefix)), len(order)), metric


def _fmt(x: float, digits: int = 3) -> str:
    if x is None or not np.isfinite(x):
        return "n/a"
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.{digits}g}" if abs(x) >= 1 else f"{x:.{digits}f}"


def markdown_table(rows: list[dict], recovery_rows: dict, segmentation: dict | None = None) -> str:
    """Sections in order 1..5; ``rows`` are the KS rows of sections 1, 3 and 4."""
    lines = [
        "| section | metric | median synthetic | median real held-out | median real library | KS synth vs held-out "
        "| KS synth vs library | KS held-out vs library | KS library vs library (noise floor) "
        "| n synth / held-out / library |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def ks_lines(section_prefix: str) -> None:
        for row in rows:
            if not row["section"].startswith(section_prefix):
                continue
            m, k, n = row["median"], row["ks"], row["n"]
            lines.append(
                f"| {row['section']} | {row['metric']} | {_fmt(m['synthetic'])} | {_fmt(m['heldout'])} "
                f"| {_fmt(m['library'])} | {_fmt(k['synthetic_vs_heldout'])} | {_fmt(k['synthetic_vs_library'])} "
                f"| {_fmt(k['heldout_vs_library'])} | {_fmt(k['library_vs_library_resampled'])} "
                f"| {n['synthetic']} / {n['heldout']} / {n['library']} |"
            )

    ks_lines("1 ")
    for name, r in recovery_rows.items():
        lines.append(
            f"| 2 recovery | {name}: instances per point / within {RECOVERY_RADIUS:.0f} px / median offset (px) "
            f"| {_fmt(r['instances_per_point'])} / {_fmt(r['within_3px'])} / {_fmt(r['median_offset_px'])} "
            f"| - | - | - | - | - | - | {r['requested']} requested points |"
        )
    ks_lines("3 ")
    ks_lines("4 ")
    if segmentation is None:
        lines.append(
            "| 5 segmentation consistency | Dice/AJI/PQ/F1 of a real-only segmenter on synthetic vs real | pending "
            "| pending | pending | - | - | - | - | run with --segmenter |"
        )
        return "\n".join(lines)
    scores, n = segmentation["scores"], segmentation["num_patches"]
    for key in SEGMENTATION_METRICS:
        lines.append(
            f"| 5 segmentation consistency | {key} of a real-only HoVer-Net ({_AGGREGATION[key]}, not a median) "
            f"| {_fmt(scores['synthetic'][key])} | {_fmt(scores['heldout'][key])} | {_fmt(scores['library'][key])} "
            f"| - | - | - | - | {n} / {n} / {n} |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- preview
def preview(chosen: list[dict], path: Path) -> tuple[Path, int]:
    """One row per sample (the first ``PREVIEW_ROWS`` with at least ``PREVIEW_MIN_POINTS`` requested points): point
    map | G1 mask | recovered instances over the synthetic image | synthetic image; downscaled until the PNG is
    under 1 MB."""
    rows = [
        [
            render_tensor(s["point_map"], kind="types"),
            render_tensor(s["probabilities"], kind="types"),
            overlay_nuclei(s["image"], s["label_inst"], s["label_type"]),
            render_tensor(s["image"], kind="image", value_range=(0.0, 255.0)),
        ]
        for s in chosen
    ]
    labels = [f"{s['name']}: {int(np.sum(s['kept']))}/{len(s['kept'])}" for s in chosen]
    grid = image_grid(rows, ["point map", "G1 mask (argmax)", "recovered instances", "synthetic image"], labels)
    scale = 1.0
    while True:
        picture = grid if scale == 1.0 else np.asarray(
            Image.fromarray(grid).resize((int(grid.shape[1] * scale), int(grid.shape[0] * scale)), Image.LANCZOS)
        )
        save_png(picture, path)
        if path.stat().st_size <= MAX_PREVIEW_BYTES or scale < 0.3:
            return path, path.stat().st_size
        scale *= 0.8


# ---------------------------------------------------------------------------------------------- main
def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points-to-mask", type=Path, required=True, help="G1 weights (plain state dict)")
    parser.add_argument("--mask-to-image", type=Path, required=True, help="G2 weights (plain state dict)")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--baseline", action="store_true", help="the generators are pix2pixHD (no attention/skip)")
    parser.add_argument("--num-samples", type=int, default=200, help="synthetic samples")
    parser.add_argument("--num-real", type=int, default=None, help="real windows per reference (default num-samples)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic point sets")
    parser.add_argument("--real-seed", type=int, default=1, help="seed of the real windows")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--radius", type=float, default=DEFAULT_RADIUS, help="point radius G1 was trained with")
    parser.add_argument("--point-encoding", choices=("disk", "ellipse"), default="disk", help="G1's point encoding")
    parser.add_argument("--tag", default="", help="suffix of the output files (several generator sets side by side)")
    parser.add_argument("--min-area", type=int, default=DEFAULT_MIN_AREA)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--weights-note", default="", help="how the weights were trained, for the report")
    parser.add_argument("--segmenter", type=Path, default=None, help="HoVer-Net weights trained on real data only")
    parser.add_argument("--segmenter-note", default="", help="how the segmenter was trained, for the report")
    parser.add_argument("--num-segmented", type=int, default=50, help="patches per source the segmenter predicts")
    parser.add_argument(
        "--keep-unmarked", action="store_true",
        help="post-processing keeps foreground components without a marker (as the segmenter was evaluated)",
    )  # fmt: skip
    args = parser.parse_args()
    root = os.environ.get("CONSEP_DIR")
    if not root:
        print("CONSEP_DIR is not set: this benchmark needs real CoNSeP tiles.", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    n_real = args.num_real or args.num_samples
    timing: dict[str, float] = {}
    start_all = time.perf_counter()

    start = time.perf_counter()
    tiles = load_consep(root, "Train")
    library_tiles = [t for t in tiles if t["name"] not in HOLDOUT]
    heldout_tiles = [t for t in tiles if t["name"] in HOLDOUT]
    if len(heldout_tiles) != len(HOLDOUT):
        print(f"expected the held-out tiles {HOLDOUT} in {root}/Train.", file=sys.stderr)
        return 2
    library = CentroidLibrary.from_samples(library_tiles)
    real = {
        "heldout": real_patches(heldout_tiles, n_real, args.real_seed),
        "library": real_patches(library_tiles, n_real, args.real_seed),
        "library_resampled": real_patches(library_tiles, n_real, args.real_seed + 1000),
    }
    timing["load_and_real_patches"] = time.perf_counter() - start

    start = time.perf_counter()
    dataset = PointSetDataset(library, args.num_samples, SIZE, seed=args.seed, radius=args.radius, draw_maps=False)
    point_sets = [dataset[i]["points"] for i in range(args.num_samples)]
    timing["point_sets"] = time.perf_counter() - start

    start = time.perf_counter()
    synthesizer = NucleiSynthesizer(
        *load_generators(args),
        radius=args.radius,
        point_encoding=args.point_encoding,
        nucleus_shapes=library.nucleus_shapes if args.point_encoding == "ellipse" else None,
        min_area=args.min_area,
        device=args.device,
        batch_size=args.batch_size,
    )
    synthetic, shown = [], []
    for first in range(0, len(point_sets), args.batch_size):
        batch = point_sets[first : first + args.batch_size]
        names = [f"synthetic_{first + i}" for i in range(len(batch))]
        for sample in synthesizer.synthesize(batch, SIZE, names=names, return_intermediates=True):
            if len(shown) < PREVIEW_ROWS and len(sample["requested_points"]) >= PREVIEW_MIN_POINTS:
                shown.append(dict(sample))
            for key in ("point_map", "point_markers", "probabilities"):  # only the preview needs the maps
                sample.pop(key)
            synthetic.append(sample)
    timing["synthesis"] = time.perf_counter() - start

    start = time.perf_counter()
    samples = {"synthetic": synthetic, **real}
    # real patches have no request: both synthetic rows are compared with the same real counts
    counts = {
        source: dict.fromkeys(
            ("nuclei per patch (after recovery)", "nuclei per patch (requested)"),
            np.array([p["centred_count"] for p in patches], float),
        )
        for source, patches in real.items()
    }
    counts["synthetic"] = {
        "nuclei per patch (after recovery)": np.array([int(np.sum(s["kept"])) for s in synthetic], float),
        "nuclei per patch (requested)": np.array([len(s["requested_points"]) for s in synthetic], float),
    }
    morph_order = [f"{m}_{t}" for m in MORPHOLOGY for t in [*TYPE_NAMES.values(), "all"]]
    colour_order = [f"{c} {s} {r}" for r in ("nuclei", "background") for s in ("mean", "std") for c in "RGB"]
    colour_order += ["H OD nuclei - background", "H OD nuclei", "H OD background"]
    rows = sorted(
        ks_rows("1 morphology", {s: morphology(samples[s]) for s in SOURCES}),
        key=lambda r: _sort_key(r["metric"], morph_order),
    )
    rows += sorted(ks_rows("3 nuclei per patch", counts), key=lambda r: r["metric"], reverse=True)
    rows += sorted(
        ks_rows("4 colour / stain (per patch)", {s: colour_statistics(samples[s]) for s in SOURCES}),
        key=lambda r: _sort_key(r["metric"], colour_order),
    )
    recovery_rows = recovery(synthetic)
    timing["metrics"] = time.perf_counter() - start

    segmentation = None
    if args.segmenter is not None:
        start = time.perf_counter()
        network = hovernet_from_checkpoint(args.segmenter).to(args.device)
        segmentation = {
            "weights": {"path": str(args.segmenter), "sha256": _sha256(args.segmenter), "note": args.segmenter_note},
            "num_patches": args.num_segmented,
            "keep_unmarked": args.keep_unmarked,
            "scores": {
                source: segmentation_consistency(
                    network, samples[source][: args.num_segmented], args.device, args.keep_unmarked
                )
                for source in ("synthetic", "heldout", "library")
            },
        }
        timing["segmentation"] = time.perf_counter() - start

    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = f"_{args.tag}" if args.tag else ""
    preview_path, preview_bytes = preview(shown, args.out / f"synthesis_preview{suffix}.png")
    timing["preview"] = time.perf_counter() - start
    timing["total"] = time.perf_counter() - start_all

    table = markdown_table(rows, recovery_rows, segmentation)
    script = "python benchmarks/bench_synthesis_fidelity.py"
    command = f"CONSEP_DIR={shlex.quote(root)} {script} {shlex.join(sys.argv[1:])}"
    weights = {
        "points_to_mask": {"path": str(args.points_to_mask), "sha256": _sha256(args.points_to_mask)},
        "mask_to_image": {"path": str(args.mask_to_image), "sha256": _sha256(args.mask_to_image)},
        "preset": args.preset,
        "baseline": args.baseline,
        "point_encoding": args.point_encoding,
        "note": args.weights_note,
    }
    result = {
        "command": command,
        "weights": weights,
        "holdout_tiles": list(HOLDOUT),
        "library_tiles": [t["name"] for t in library_tiles],
        "num_synthetic": args.num_samples,
        "num_real_per_reference": n_real,
        "seed": args.seed,
        "real_seed": args.real_seed,
        "patch_size": list(SIZE),
        "radius": args.radius,
        "min_area": args.min_area,
        "device": str(synthesizer.device),
        "threads": args.threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "timing_s": {k: round(v, 2) for k, v in timing.items()},
        "synthetic_per_s": args.num_samples / timing["synthesis"],
        "rows": rows,
        "recovery": recovery_rows,
        "segmentation_consistency": segmentation,
        "preview": {"path": str(preview_path), "bytes": preview_bytes},
    }
    (args.out / f"synthesis_fidelity{suffix}.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / f"synthesis_fidelity{suffix}.md").write_text(markdown_report(result, table))
    print(table)
    print(f"\nsynthesis: {args.num_samples} samples in {timing['synthesis']:.0f} s; total {timing['total']:.0f} s")
    written = [args.out / f"synthesis_fidelity{suffix}.json", args.out / f"synthesis_fidelity{suffix}.md", preview_path]
    print(f"wrote {', '.join(map(str, written))} (preview {preview_bytes} B)")
    return 0


def _significant(row: dict) -> float:
    """The KS vs library above which a row counts as off: twice its noise floor, and at least 0.1."""
    return 2 * max(row["ks"]["library_vs_library_resampled"], 0.05)


def reading(result: dict) -> str:
    """Plain-language summary of the numbers of this run, generated so that it stays true when the run changes."""
    rows = {r["metric"]: r for r in result["rows"]}

    def compare(metric: str, digits: int = 3) -> str:
        r = rows[metric]
        m, k = r["median"], r["ks"]
        return (
            f"median {_fmt(m['synthetic'], digits)} synthetic vs {_fmt(m['library'], digits)} library / "
            f"{_fmt(m['heldout'], digits)} held-out (KS vs library {k['synthetic_vs_library']:.2f}, noise floor "
            f"{k['library_vs_library_resampled']:.2f})"
        )

    synth_rows = [r for r in result["rows"] if np.isfinite(r["ks"]["synthetic_vs_library"])]
    beyond = [r for r in synth_rows if r["ks"]["synthetic_vs_library"] > _significant(r)]
    worst = sorted(synth_rows, key=lambda r: -r["ks"]["synthetic_vs_library"])[:5]
    rec = result["recovery"]
    worst_type = min((t for t in TYPE_NAMES.values() if rec[t]["requested"]), key=lambda t: rec[t]["within_3px"])
    eccentricity = [rows[f"eccentricity_{t}"]["median"] for t in [*TYPE_NAMES.values(), "all"]]
    rounder = [m["synthetic"] < m["library"] - 0.1 for m in eccentricity]
    blob_per_marker = rec["all"]["instances_per_point"] >= 0.95
    count_ks = rows["nuclei per patch (requested)"]["ks"]
    references_differ = count_ks["heldout_vs_library"] > 2 * max(count_ks["library_vs_library_resampled"], 0.05)
    bg_std = rows["G std background"]["median"]
    smoother = bg_std["synthetic"] < 0.75 * bg_std["library"]
    held_count = rows["nuclei per patch (requested)"]["median"]["heldout"]
    lib_count = rows["nuclei per patch (requested)"]["median"]["library"]
    lines = [
        f"- **Overall**: {len(beyond)} of {len(synth_rows)} KS rows exceed twice the library-vs-library noise floor "
        f"(and 0.1). Largest KS vs the library reference: "
        + ", ".join(f"{r['metric']} {r['ks']['synthetic_vs_library']:.2f}" for r in worst)
        + ".",
        f"- **Morphology**: area {compare('area_all', 3)}; eccentricity {compare('eccentricity_all')}; solidity "
        f"{compare('solidity_all')}."
        + (
            " G1 draws nuclei markedly rounder than real ones (median eccentricity at least 0.1 lower) for "
            + ("every type, spindle-shaped included" if all(rounder) else "all types pooled")
            + ": see the preview, its blobs are near-disks whose size depends on the type."
            if rounder[-1]
            else ""
        ),
        f"- **Recovery**: {rec['all']['instances_per_point']:.3f} instances per requested point, "
        f"{rec['all']['within_3px']:.3f} within {RECOVERY_RADIUS:.0f} px of the request (lowest for {worst_type}: "
        f"{rec[worst_type]['within_3px']:.3f}; median offset of recovered centroids "
        f"{rec['all']['median_offset_px']:.2f} px)."
        + (
            " G1 draws a blob at (nearly) every marker, so the layout of stage 1 survives into the labels."
            if blob_per_marker
            else ""
        ),
        f"- **Nuclei per patch**: requested {compare('nuclei per patch (requested)', 3)}; after recovery "
        f"{compare('nuclei per patch (after recovery)', 3)}. The held-out windows have a median of {_fmt(held_count)} "
        f"nuclei against {_fmt(lib_count)} in library windows (KS held-out vs library "
        f"{count_ks['heldout_vs_library']:.2f}, noise floor {count_ks['library_vs_library_resampled']:.2f})"
        + (
            ": the synthetic-vs-held-out column largely measures how unlike the library these 5 tiles are, which is "
            "why the library column is reported."
            if references_differ
            else "."
        ),
        f"- **Colour / stain**: inside nuclei, G {compare('G mean nuclei', 3)}; background texture, G std "
        f"{compare('G std background', 3)}"
        + (" (the synthetic background is much smoother than the real one)" if smoother else "")
        + f"; hematoxylin contrast nuclei - background {compare('H OD nuclei - background')}.",
        f"- **Caveats**: generators trained as follows: {result['weights']['note'] or 'not stated'}. KS "
        "statistics on pooled instances (morphology) treat instances of one patch as independent, and per-patch "
        "colour values are few (n patches); compare each KS with the noise-floor column of the same row, not with "
        "a fixed threshold."
        + ("" if result.get("segmentation_consistency") else " Segmentation consistency (--segmenter) was not run."),
    ]
    segmentation = result.get("segmentation_consistency")
    if segmentation:
        scores = segmentation["scores"]
        lines.insert(-1, (
            f"- **Segmentation consistency**: a HoVer-Net trained on real data only "
            f"({segmentation['weights']['note'] or 'training not stated'}) scores PQ "
            f"{scores['synthetic']['pq']:.3f} / Dice {scores['synthetic']['dice']:.3f} on synthetic patches against "
            f"PQ {scores['library']['pq']:.3f} / Dice {scores['library']['dice']:.3f} on library and PQ "
            f"{scores['heldout']['pq']:.3f} / Dice {scores['heldout']['dice']:.3f} on held-out patches "
            f"({segmentation['num_patches']} each; a patch without nuclei that gets no prediction scores 1, which "
            f"lifts the sparse held-out windows). "
            + ("Synthetic nuclei are found at least as well as real ones"
               if scores["synthetic"]["pq"] >= 0.9 * scores["library"]["pq"]
               else "Synthetic nuclei are found less well than real ones")
            + "; their types are recognised "
            + ("about as well" if scores["synthetic"]["accuracy_type"] >= 0.9 * scores["library"]["accuracy_type"]
               else "much less well")
            + f" (type accuracy of matched nuclei {scores['synthetic']['accuracy_type']:.3f} vs "
            f"{scores['library']['accuracy_type']:.3f} on library patches). Round, isolated blobs are easy to find "
            "for any segmenter, so detection agreement says less about realism than type agreement does."
        ))
    return "\n".join(lines)


def markdown_report(result: dict, table: str) -> str:
    t = result["timing_s"]
    w = result["weights"]
    return f"""# Fidelity of synthetic samples vs real CoNSeP patches (256x256)

`{result['command']}`

- Generators: preset `{w['preset']}`{' (pix2pixHD baseline)' if w['baseline'] else ''}, point encoding
  `{w.get('point_encoding', 'disk')}`;
  G1 `{w['points_to_mask']['path']}` (sha256 {w['points_to_mask']['sha256'][:12]}),
  G2 `{w['mask_to_image']['path']}` (sha256 {w['mask_to_image']['sha256'][:12]}).
  Training: {w['note'] or 'not stated (pass --weights-note)'}.
- Held-out tiles (never seen by the generators): {', '.join(result['holdout_tiles'])}. Library: the other
  {len(result['library_tiles'])} Train tiles (the point sets come from it, and the generators were trained on it).
- {result['num_synthetic']} synthetic samples (`PointSetDataset(library, n, 256, seed={result['seed']})`,
  default stage-1 transform, then `NucleiSynthesizer.synthesize`); {result['num_real_per_reference']} real random
  windows per reference (seed {result['real_seed']}; the noise-floor draw uses seed {result['real_seed'] + 1000}).
- Two real references: **held-out** windows, and **library** windows, because the 5 held-out tiles are few and
  unrepresentative (train_5 has 20 nuclei; many held-out windows are near-empty). *KS held-out vs library* shows how
  far apart the two references are; *KS library vs library* is the sampling-noise floor: KS between two
  independent draws of real library windows at this n.
- Morphology pools instances over patches and leaves out instances touching the patch border (on both sides);
  colour rows are per-patch values (a patch with under 10 px of nuclei or of background gives none for that
  region). Real nuclei per patch = annotated nuclei whose centroid lies in the window (the rule point sets are
  cropped with); real patches have no request, so both synthetic count rows are compared with the same real counts.
- Recovery (synthetic only): instances per requested point (mean of `kept`, at most 1 by construction), fraction
  of requested points whose instance centroid is within {RECOVERY_RADIUS:.0f} px of the request (a missing instance
  counts as a miss), median offset of the recovered ones.
- Device {result['device']}, {result['threads']} thread(s), torch {result['torch']}.
  Timing (s): load + real windows {t['load_and_real_patches']}, point sets {t['point_sets']},
  synthesis {t['synthesis']} ({result['synthetic_per_s']:.2f} samples/s), metrics {t['metrics']},
  preview {t['preview']}, segmentation {t.get('segmentation', '-')}, total {t['total']}.

{table}

Preview: `{result['preview']['path']}` (point map | G1 mask (argmax) | recovered instances over the synthetic image |
synthetic image; row labels: kept / requested points).

## Reading

{reading(result)}
"""


if __name__ == "__main__":
    sys.exit(main())
