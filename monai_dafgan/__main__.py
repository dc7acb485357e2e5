"""Command line: ``python -m monai_dafgan <command> ...`` (also installed as ``monai-dafgan``).

Commands:
    demo            the whole workflow on the built-in toy dataset: summary, both generators trained briefly,
                    synthetic samples and a preview grid (point map | mask | image)
    summarize       summarise any dataset in CoNSeP layout (counts, types, an overview picture)
    preview-points  a PNG grid of random point sets (stage 1) next to real ones
    plot-losses     a PNG of the loss curves of a training run (its TensorBoard folder)
    synthesize      write synthetic paired samples (CoNSeP layout) with a synthesis bundle (default: the shipped,
                    CoNSeP-trained one), plus a preview grid
    assemble        a synthesis bundle from two trained generator bundles and the centroid library of their tiles
    table1          the paper's Table I study from a protocol (configs/table1/*.yaml): trains what is missing,
                    evaluates every run on whole tiles, writes the table and paired comparisons
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
from pathlib import Path

import numpy as np


def _summarize(data_dir: Path, split: str, out: Path, max_tiles: int) -> dict:
    from monai_dafgan.data import consep_file_list, load_consep
    from monai_dafgan.data.summary import dataset_summary, format_summary
    from monai_dafgan.visualize import dataset_overview, save_png

    print(f"reading {len(consep_file_list(data_dir, split))} tiles from {data_dir / split} ...", flush=True)
    samples = load_consep(data_dir, split)
    summary = dataset_summary(samples)
    summary["data_dir"], summary["split"] = str(data_dir), split
    print(format_summary(summary))

    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    save_png(dataset_overview(samples, max_tiles), out / "overview.png")
    print(f"wrote {out / 'summary.json'} and {out / 'overview.png'}")
    return summary


def _bundle_copy(name: str, out: Path) -> Path:
    from monai_dafgan.study import copy_bundle

    return copy_bundle(name, out / "bundles" / name)


def _cmd_demo(args: argparse.Namespace) -> None:
    from monai.bundle import run as run_bundle

    from monai_dafgan.data.toy import make_toy_consep
    from monai_dafgan.synthesis import NucleiSynthesizer, write_synthetic_dataset

    root = args.out / "toy_consep"
    make_toy_consep(root, num_tiles=args.num_tiles, size=args.size, seed=args.seed, overwrite=True)
    print(f"1/4 wrote a toy dataset of {args.num_tiles} tiles of {args.size}x{args.size} to {root}")
    _summarize(root, "Train", args.out, max_tiles=4)
    if args.epochs == 0:
        return

    for step, name in enumerate(("dafgan_points2mask", "dafgan_mask2image"), 2):
        bundle = _bundle_copy(name, args.out)
        print(f"{step}/4 training {name} (small preset, {args.epochs} epochs of {args.patch_size}x{args.patch_size} patches) in {bundle}", flush=True)
        run_bundle(
            "training", config_file=str(bundle / "configs" / "train.yaml"), logging_file=str(bundle / "configs" / "logging.conf"),
            bundle_root=str(bundle), dataset_dir=str(root), preset="small", epochs=args.epochs,
            decay_epochs=args.epochs // 2, window=2 * args.patch_size, patch_size=args.patch_size, num_workers=0,
        )

    from monai_dafgan.synthesis import assemble_synthesis_bundle, bundles_root, library_from_folder, point_map_settings

    synthesis = args.out / "bundles" / "dafgan_nuclei_synthesis"
    points_to_mask = args.out / "bundles" / "dafgan_points2mask"
    library = library_from_folder(root, "Train")
    assemble_synthesis_bundle(
        synthesis, points_to_mask, args.out / "bundles" / "dafgan_mask2image", library,
        **point_map_settings(points_to_mask), template=bundles_root() / "dafgan_nuclei_synthesis",
    )  # fmt: skip
    synthesizer = NucleiSynthesizer.from_bundle(synthesis, device="cpu")
    print(f"4/4 synthesising {args.num_samples} samples with {synthesis}", flush=True)
    size = min(256, args.size)  # point sets are windows of the library's tiles
    out = write_synthetic_dataset(  # the demo retrains its generators, so earlier samples are stale
        synthesizer, library, args.num_samples, args.out / "synthetic", size, seed=args.seed, overwrite=True
    )
    print(f"done: synthetic samples in {out}, preview in {args.out / 'synthetic' / 'preview.png'}; "
          f"generator runs (TensorBoard, grids) in {args.out / 'bundles'}")


def _cmd_summarize(args: argparse.Namespace) -> None:
    _summarize(args.data_dir, args.split, args.out, max_tiles=args.max_tiles)


def _cmd_preview_points(args: argparse.Namespace) -> None:
    from monai_dafgan.data import load_consep
    from monai_dafgan.points import CentroidLibrary, PointSetDataset, points_to_maps
    from monai_dafgan.visualize import image_grid, legend_strip, save_png, type_map_to_rgb

    library = CentroidLibrary.from_samples(load_consep(args.data_dir, args.split))
    size = (args.size, args.size)
    rng = np.random.RandomState(args.seed)
    real = [library.random_patch(rng, size) for _ in range(args.num)]
    generated = PointSetDataset(library, args.num, size, seed=args.seed, draw_maps=False)

    def draw(points):
        return type_map_to_rgb(points_to_maps(points, size, radius=args.radius)[0].argmax(0))

    rows = [[draw(p) for p in real], [draw(generated[i]["points"]) for i in range(args.num)]]
    grid = image_grid(rows, row_labels=["real", "generated"])
    save_png(np.concatenate([grid, legend_strip(grid.shape[1])], axis=0), args.out)
    print(f"wrote {args.out}: {args.num} real and {args.num} generated {args.size}x{args.size} point sets "
          f"from a library of {library.num_points} nuclei in {len(library)} tiles")


def _cmd_plot_losses(args: argparse.Namespace) -> None:
    from monai_dafgan.visualize import line_plot, read_tensorboard_scalars, save_png

    scalars = read_tensorboard_scalars(args.log_dir)
    if not scalars:
        raise FileNotFoundError(f"no TensorBoard scalars in {args.log_dir}")
    generator = {k.split("/")[-1]: v for k, v in scalars.items() if k.split("/")[-1].startswith("g_")}
    discriminator = {k.split("/")[-1]: v for k, v in scalars.items() if k.split("/")[-1].startswith("d_")}
    panels = [line_plot(generator, title="generator losses", smooth=args.smooth),
              line_plot(discriminator, title="discriminator losses", smooth=args.smooth)]
    save_png(np.concatenate(panels, axis=0), args.out)
    print(f"wrote {args.out} ({', '.join(sorted(generator) + sorted(discriminator))}; {len(next(iter(scalars.values()))[0])} points)")


def _cmd_synthesize(args: argparse.Namespace) -> None:
    from monai_dafgan.data import read_manifest, shard_indices
    from monai_dafgan.synthesis import (
        NucleiSynthesizer,
        WeightMismatchError,
        bundle_library,
        cpu_has_native_bf16,
        shipped_synthesis_bundle,
        write_synthetic_dataset,
    )

    bundle = args.bundle or shipped_synthesis_bundle()
    overrides = {"baseline": bool(args.baseline), **({"preset": args.preset} if args.preset else {})}
    library = bundle_library(bundle, args.data_dir, args.split, args.holdout)
    shapes = library.nucleus_shapes if library.shapes is not None else None
    try:
        synthesizer = NucleiSynthesizer.from_bundle(
            bundle, device=args.device, overrides=overrides, batch_size=args.batch_size, nucleus_shapes=shapes,
            **({"cpu_amp": True} if args.cpu_bf16 else {}),
        )
    except WeightMismatchError as err:
        def flags(found) -> str:
            baseline = " --baseline" if found["baseline"] else ""
            return f"Run with --preset {found['preset']}{baseline}, or leave --preset out."

        raise ValueError(err.describe(flags)) from None
    which = "pix2pixHD baseline" if args.baseline else "DAFF-GAN"
    if synthesizer.cpu_amp and synthesizer.device.type == "cpu" and not cpu_has_native_bf16():
        print("note: this CPU has no native bf16 (AVX512-BF16/AMX): --cpu-bf16 is emulated here and slower than "
              "float32", flush=True)
    print(f"{which} generators of {bundle}; centroid library: {library}", flush=True)
    root = write_synthetic_dataset(
        synthesizer, library, args.num_samples, args.out, args.size, seed=args.seed, min_nuclei=args.min_nuclei,
        overwrite=args.overwrite, shard=args.shard,
    )  # fmt: skip
    manifest = read_manifest(args.out)
    if args.shard is not None and not (manifest and manifest.get("complete")):
        k, n = args.shard
        print(f"shard {k} of {n} done: {len(shard_indices(k, n, args.num_samples))} samples in {root}; the folder is "
              "complete when the other shards are (the last to finish merges the manifests)")
        return
    print(f"{root} holds {args.num_samples} samples of {args.size}x{args.size}; manifest and preview: "
          f"{args.out / 'manifest.json'}, {args.out / 'preview.png'}")


def _shard(text: str) -> tuple[int, int]:
    """``k/n`` (shard k of n, k from 0) for ``--shard``."""
    from monai_dafgan.data import shard_indices

    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if match is None:
        raise argparse.ArgumentTypeError(f"give k/n (shard k of n, k = 0 .. n-1), e.g. 0/4; got {text!r}")
    shard = int(match[1]), int(match[2])
    try:
        shard_indices(*shard, 0)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return shard


def _cmd_assemble(args: argparse.Namespace) -> None:
    from monai_dafgan.synthesis import assemble_synthesis_bundle, library_from_folder

    library = library_from_folder(args.data_dir, args.split, args.holdout)
    settings = assemble_synthesis_bundle(
        args.out, args.points_to_mask, args.mask_to_image, library, point_encoding=args.point_encoding,
        point_radius=args.point_radius, fp16=not args.fp32,
    )  # fmt: skip
    pair = "pix2pixHD baseline (--baseline)" if settings["baseline"] else "DAFF-GAN"
    print(f"wrote the {pair} pair ({', '.join(settings['weights'])}, preset {settings['preset']}, point encoding "
          f"{settings['point_encoding']}) and {settings['library']} ({library}) to {args.out}")


def _cmd_table1(args: argparse.Namespace) -> None:
    from monai_dafgan.study import load_protocol, run_study

    protocol = load_protocol(
        args.protocol, dataset_dir=args.dataset_dir, seeds=args.seeds, device=args.device,
        results_dir=args.results_dir, keep_weights=args.keep_weights, reuse_other_code=args.reuse_other_code or None,
    )  # fmt: skip
    run_study(protocol, args.out)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default (unless its help already says it, or there is none) and keeps the line breaks of
    descriptions and examples."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is None or action.default is False or action.default == [] or "default" in text:
            return text
        return super()._get_help_string(action)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        lines = []
        for line in text.splitlines():
            hanging = " " * (len(line) - len(line.lstrip()) + 4) if line.startswith(" ") else ""  # example lines
            lines.append(textwrap.fill(line, width, initial_indent=indent, subsequent_indent=indent + hanging,
                                       break_on_hyphens=False))
        return "\n".join(lines)


def _add_command(commands, name: str, summary: str, description: str, *examples: str) -> argparse.ArgumentParser:
    lines = "\n".join(f"  python -m monai_dafgan {example}" for example in examples)
    epilog = f"example{'s' if len(examples) > 1 else ''}:\n{lines}"
    return commands.add_parser(
        name, help=summary, description=description, epilog=epilog, formatter_class=_HelpFormatter
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m monai_dafgan", formatter_class=_HelpFormatter,
        description="Synthetic paired training data (H&E image + typed nuclei labels) for nuclei segmentation with "
        "DAFF-GAN, and the tools around it.",
        epilog="python -m monai_dafgan <command> --help describes each command, its defaults and an example.",
    )  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True, metavar="<command>")

    demo = _add_command(
        commands, "demo", "toy data -> train both generators briefly -> synthesize, with pictures",
        "The whole training workflow on the built-in toy dataset, in a few minutes on a CPU: writes the toy data and "
        "its summary, trains G1 (dafgan_points2mask) and G2 (dafgan_mask2image) with the small preset, assembles a "
        "synthesis bundle from them and writes synthetic samples with a preview grid. Everything lands in --out.",
        "demo --out demo_output", "demo --out quick --epochs 0   # toy data and its summary only",
    )  # fmt: skip
    demo.add_argument("--out", type=Path, default=Path("demo_output"), help="output folder")
    demo.add_argument("--num-tiles", type=int, default=8, help="toy tiles to write")
    demo.add_argument("--size", type=int, default=512, help="tile side in pixels")
    demo.add_argument("--epochs", type=int, default=20, help="training epochs per generator (0: data and summary only)")
    demo.add_argument("--patch-size", type=int, default=128, help="training patch side in pixels")
    demo.add_argument("--num-samples", type=int, default=16, help="synthetic samples to write")
    demo.add_argument("--seed", type=int, default=0, help="seed of the toy data and the synthetic point sets")
    demo.set_defaults(func=_cmd_demo)

    summarize = _add_command(
        commands, "summarize", "summarise a dataset in CoNSeP layout",
        "Count the nuclei of a CoNSeP-layout split per tile and per type (with their areas), and draw the first "
        "tiles with their nuclei outlined in type colours: writes <out>/summary.json and <out>/overview.png.",
        "summarize --data-dir /data/CoNSeP --split Test --out consep_test_summary",
    )  # fmt: skip
    summarize.add_argument("--data-dir", type=Path, required=True, help="folder holding <split>/Images and <split>/Labels")
    summarize.add_argument("--split", default="Train", help="split folder under --data-dir")
    summarize.add_argument("--out", type=Path, default=Path("summary_output"), help="output folder")
    summarize.add_argument("--max-tiles", type=int, default=4, help="tiles shown in overview.png")
    summarize.set_defaults(func=_cmd_summarize)

    preview = _add_command(
        commands, "preview-points", "PNG grid of generated point sets next to real ones",
        "Stage 1 at a glance: random windows of the real centroid library (top row) next to point sets made by the "
        "default random transforms (bottom row), one disk per nucleus in its type colour (red other, yellow "
        "inflammatory, green epithelial, blue spindle).",
        "preview-points --data-dir /data/CoNSeP --out points_preview.png --num 8",
    )  # fmt: skip
    preview.add_argument("--data-dir", type=Path, required=True, help="folder holding <split>/Images and <split>/Labels")
    preview.add_argument("--split", default="Train", help="split folder under --data-dir")
    preview.add_argument("--out", type=Path, default=Path("points_preview.png"), help="PNG to write")
    preview.add_argument("--num", type=int, default=6, help="point sets per row")
    preview.add_argument("--size", type=int, default=256, help="patch side in pixels")
    preview.add_argument("--radius", type=float, default=3.0, help="disk radius in the picture")
    preview.add_argument("--seed", type=int, default=0, help="seed of the windows and point sets")
    preview.set_defaults(func=_cmd_preview_points)

    plot = _add_command(
        commands, "plot-losses", "PNG of the loss curves of a training run",
        "Plot the generator (g_*) and discriminator (d_*) losses a generator bundle's training logged to "
        "TensorBoard, smoothed, one panel each.",
        "plot-losses --log-dir bundles/dafgan_mask2image/runs --out losses.png",
    )  # fmt: skip
    plot.add_argument("--log-dir", type=Path, required=True, help="TensorBoard folder of the run (a bundle's runs/)")
    plot.add_argument("--out", type=Path, default=Path("losses.png"), help="PNG to write")
    plot.add_argument("--smooth", type=int, default=10, help="moving-average window in iterations")
    plot.set_defaults(func=_cmd_plot_losses)

    synth = _add_command(
        commands, "synthesize", "write synthetic paired samples with a synthesis bundle (default: the shipped one)",
        "Write synthetic paired samples (CoNSeP layout: <out>/Train/Images/*.png, <out>/Train/Labels/*.mat) and "
        "<out>/preview.png. With no --bundle, the shipped DAFF-GAN generators trained on CoNSeP are used (no data "
        "needed); --baseline uses the bundle's pix2pixHD pair trained with the same budget. <out>/manifest.json "
        "records the settings and the samples done: the same command again resumes an interrupted run (samples "
        "already written are kept); other settings into the same --out are refused unless --overwrite. --shard k/n "
        "writes only shard k of n (k = 0 .. n-1), so n processes or machines fill one folder; the last to finish "
        "merges their manifests.",
        "synthesize --num-samples 659 --out synthetic",
        "synthesize --baseline --num-samples 659 --out synthetic_pix2pixhd",
        "synthesize --bundle my_synthesis --data-dir /data/CoNSeP --out synthetic",
    )  # fmt: skip
    synth.add_argument("--bundle", type=Path, default=None, help="a dafgan_nuclei_synthesis bundle with weights "
                       "(default: the shipped bundles/dafgan_nuclei_synthesis)")
    synth.add_argument("--baseline", action="store_true", help="use the bundle's pix2pixHD baseline generators")
    synth.add_argument("--num-samples", type=int, default=659, help="samples to write")
    synth.add_argument("--out", type=Path, required=True, help="output folder (CoNSeP layout under <out>/Train)")
    synth.add_argument("--data-dir", type=Path, default=None, help="CoNSeP-layout folder to build the centroid library "
                       "from (the bundle's saved library is reused only when it is of the same tiles); saved as the "
                       "bundle's models/centroid_library.npz when the bundle has none (default: that file)")
    synth.add_argument("--split", default="Train", help="split of --data-dir")
    synth.add_argument("--holdout", nargs="*", default=[], help="tile names left out of the centroid library")
    synth.add_argument("--size", type=int, default=256, help="sample side in pixels")
    synth.add_argument("--seed", type=int, default=0, help="sample i's point set is a pure function of (seed, i)")
    synth.add_argument("--min-nuclei", type=int, default=0, help="fewest nuclei requested per sample: point sets "
                       "with fewer are drawn again (0 keeps empty and one-nucleus samples, as real windows have them)")
    synth.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    synth.add_argument("--preset", default=None, help="preset the generators were trained with (default: the bundle's)")
    synth.add_argument("--batch-size", type=int, default=8, help="samples per generator pass")
    synth.add_argument("--cpu-bf16", action="store_true", help="run the generators in bf16 on the CPU too: faster on "
                       "CPUs with AVX512-BF16/AMX (slower elsewhere); the same nuclei, images ~1 grey level apart on average")
    synth.add_argument("--overwrite", action="store_true", help="remove the samples of an earlier run in --out first "
                       "(by default a rerun with the same settings resumes it, and other settings are refused)")
    synth.add_argument("--shard", type=_shard, default=None, metavar="K/N", help="write only shard K of N (K = 0 .. "
                       "N-1: a contiguous block of samples) beside the other shards' processes; separate machines: "
                       "copy the folders into one and rerun any shard's command there to merge (default: all)")
    synth.set_defaults(func=_cmd_synthesize)

    assemble = _add_command(
        commands, "assemble", "a synthesis bundle from two trained generator bundles",
        "Put a trained G1 (dafgan_points2mask) and G2 (dafgan_mask2image) into a synthesis bundle, with the "
        "centroid library of the tiles they were trained on (saved as <out>/models/centroid_library.npz). A "
        "DAFF-GAN pair and a pix2pixHD pair (trained with --baseline true) can share one bundle; synthesize "
        "--baseline picks the latter.",
        "assemble --points-to-mask runs/g1 --mask-to-image runs/g2 --data-dir /data/CoNSeP "
        "--holdout train_5 train_10 --point-encoding ellipse --out my_synthesis",
    )  # fmt: skip
    assemble.add_argument("--points-to-mask", type=Path, required=True, help="trained dafgan_points2mask bundle (or its model.pt)")
    assemble.add_argument("--mask-to-image", type=Path, required=True, help="trained dafgan_mask2image bundle (or its model.pt)")
    assemble.add_argument("--data-dir", type=Path, required=True, help="the CoNSeP-layout folder the generators were trained on")
    assemble.add_argument("--split", default="Train", help="split of --data-dir")
    assemble.add_argument("--holdout", nargs="*", default=[], help="tile names the generators did not see")
    assemble.add_argument("--point-encoding", choices=("disk", "ellipse"), required=True,
                          help="G1's --point_encoding in training")
    assemble.add_argument("--point-radius", type=float, default=2, help="G1's --point_radius in training")
    assemble.add_argument("--fp32", action="store_true", help="keep float32 weights (default: float16, half the size)")
    assemble.add_argument("--out", type=Path, required=True, help="synthesis bundle folder (created or added to)")
    assemble.set_defaults(func=_cmd_assemble)

    table1 = _add_command(
        commands, "table1", "run (or complete) the Table I study of a protocol file",
        "The paper's Table I study as a protocol says: trains what is missing (generators, synthesis bundles, "
        "HoVer-Net for each condition and seed), evaluates every run on whole tiles and writes <out>/table1.md and "
        "table1.json with paired comparisons to the real-only runs. Finished pieces are reused.",
        "table1 --protocol configs/table1/cpu.yaml --dataset-dir /data/CoNSeP --out study",
    )  # fmt: skip
    table1.add_argument("--protocol", type=Path, required=True, help="e.g. configs/table1/reduced.yaml")
    table1.add_argument("--out", type=Path, required=True, help="study folder; pieces already there are reused")
    table1.add_argument("--dataset-dir", default=None, help="CoNSeP-layout folder (default: the protocol's)")
    table1.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds (default: the protocol's)")
    table1.add_argument("--device", default=None, help="cpu or cuda (default: the protocol's, else the bundles')")
    table1.add_argument(
        "--results-dir", default=None,
        help="folder of the per-run records (metrics keyed by the whole run configuration) that any later study, on "
        "any machine, reuses (default: the protocol's results_dir, else <out>/records)",
    )  # fmt: skip
    table1.add_argument(
        "--reuse-other-code", action="store_true",
        help="reuse records made with other code (changed modules or configs that shape a run) instead of running "
        "them anew; the report lists them",
    )  # fmt: skip
    table1.add_argument(
        "--keep-weights", default=None, metavar="DIR",
        help="keep each run's trained weights as DIR/<run key>.pt, so new evaluation sets score them without retraining",
    )  # fmt: skip
    table1.set_defaults(func=_cmd_table1)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from monai_dafgan.data import NucleiDataError
    from monai_dafgan.study import StudyStepError

    try:
        args.func(args)
    except (NucleiDataError, FileExistsError, FileNotFoundError, ValueError, StudyStepError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
