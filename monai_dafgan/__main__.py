"""Command line: ``python -m monai_dafgan <command> ...`` (also installed as ``monai-dafgan``).

Commands:
    demo            build the built-in toy dataset, then summarise it (counts, types, an overview picture)
    summarize       summarise any dataset in CoNSeP layout (counts, types, an overview picture)
    preview-points  a PNG grid of random point sets (stage 1) next to real ones
    plot-losses     a PNG of the loss curves of a training run (its TensorBoard folder)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def _summarize(data_dir: Path, split: str, out: Path, max_tiles: int) -> dict:
    from monai_dafgan.data import consep_file_list, crop_sample, load_consep
    from monai_dafgan.data.summary import dataset_summary, format_summary
    from monai_dafgan.visualize import image_grid, legend_strip, overlay_nuclei, save_png

    print(f"reading {len(consep_file_list(data_dir, split))} tiles from {data_dir / split} ...", flush=True)
    samples = load_consep(data_dir, split)
    summary = dataset_summary(samples)
    summary["data_dir"], summary["split"] = str(data_dir), split
    print(format_summary(summary))

    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    rows = []
    for sample in samples[:max_tiles]:
        size = min(512, *sample["image"].shape[1:])  # a readable crop of large tiles
        crop = crop_sample(sample, 0, 0, size, size)
        image = np.clip(crop["image"], 0, 255).astype(np.uint8).transpose(1, 2, 0)
        rows.append([image, overlay_nuclei(crop["image"], crop["label_inst"], crop["label_type"])])
    grid = image_grid(rows, titles=["image", "nuclei by type"], row_labels=[s["name"] for s in samples[:max_tiles]])
    save_png(np.concatenate([grid, legend_strip(grid.shape[1])], axis=0), out / "overview.png")
    print(f"wrote {out / 'summary.json'} and {out / 'overview.png'}")
    return summary


def _cmd_demo(args: argparse.Namespace) -> None:
    from monai_dafgan.data.toy import make_toy_consep

    root = args.out / "toy_consep"
    make_toy_consep(root, num_tiles=args.num_tiles, size=args.size, seed=args.seed, overwrite=True)
    print(f"wrote a toy dataset of {args.num_tiles} tiles of {args.size}x{args.size} to {root}")
    _summarize(root, "Train", args.out, max_tiles=4)


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m monai_dafgan", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="build the toy dataset and summarise it")
    demo.add_argument("--out", type=Path, default=Path("demo_output"), help="output folder (default: demo_output)")
    demo.add_argument("--num-tiles", type=int, default=8)
    demo.add_argument("--size", type=int, default=512, help="tile side in pixels")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_cmd_demo)

    summarize = commands.add_parser("summarize", help="summarise a dataset in CoNSeP layout")
    summarize.add_argument("--data-dir", type=Path, required=True, help="folder holding <split>/Images and <split>/Labels")
    summarize.add_argument("--split", default="Train")
    summarize.add_argument("--out", type=Path, default=Path("summary_output"))
    summarize.add_argument("--max-tiles", type=int, default=4, help="tiles shown in overview.png")
    summarize.set_defaults(func=_cmd_summarize)

    preview = commands.add_parser("preview-points", help="PNG grid of generated point sets next to real ones")
    preview.add_argument("--data-dir", type=Path, required=True, help="folder holding <split>/Images and <split>/Labels")
    preview.add_argument("--split", default="Train")
    preview.add_argument("--out", type=Path, default=Path("points_preview.png"))
    preview.add_argument("--num", type=int, default=6, help="point sets per row")
    preview.add_argument("--size", type=int, default=256, help="patch side in pixels")
    preview.add_argument("--radius", type=float, default=3.0, help="disk radius in the picture")
    preview.add_argument("--seed", type=int, default=0)
    preview.set_defaults(func=_cmd_preview_points)

    plot = commands.add_parser("plot-losses", help="PNG of the loss curves of a training run")
    plot.add_argument("--log-dir", type=Path, required=True, help="TensorBoard folder of the run (a bundle's runs/)")
    plot.add_argument("--out", type=Path, default=Path("losses.png"))
    plot.add_argument("--smooth", type=int, default=10, help="moving-average window in iterations")
    plot.set_defaults(func=_cmd_plot_losses)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from monai_dafgan.data import NucleiDataError

    try:
        args.func(args)
    except (NucleiDataError, FileExistsError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
