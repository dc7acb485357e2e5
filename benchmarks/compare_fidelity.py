"""Side-by-side fidelity of several generator sets against the targets of the realistic-generators issue.

Reads result files of ``bench_synthesis_fidelity.py`` (one per generator set, e.g. DAFF-GAN and the pix2pixHD
baseline trained with the same budget) and prints one table: KS statistic against the library reference for the
target rows, the library-vs-library noise floor, and whether each set meets the target (morphology KS <= 0.15 per
type for area and eccentricity; nucleus R/G/B means and background R/G/B std KS <= 0.2; with a segmenter, PQ on
synthetic >= 0.9x PQ on library patches and type accuracy >= 0.8x).

    python benchmarks/compare_fidelity.py daff=benchmarks/results/synthesis_fidelity_daff.json \\
        pix2pixhd=benchmarks/results/synthesis_fidelity_pix2pixhd.json --out benchmarks/results/fidelity_comparison.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

MORPHOLOGY_TARGET, COLOUR_TARGET = 0.15, 0.2
TYPES = ("other", "inflammatory", "epithelial", "spindle")
TARGET_ROWS = (
    [(f"{m}_{t}", MORPHOLOGY_TARGET) for m in ("area", "eccentricity") for t in TYPES]
    + [(f"{c} mean nuclei", COLOUR_TARGET) for c in "RGB"]
    + [(f"{c} std background", COLOUR_TARGET) for c in "RGB"]
)
EXTRA_ROWS = ("area_all", "eccentricity_all", "solidity_all", "nuclei per patch (after recovery)", "G std nuclei", "H OD nuclei - background")


def comparison(results: dict[str, dict]) -> str:
    names = list(results)
    by_metric = {name: {row["metric"]: row for row in r["rows"]} for name, r in results.items()}
    header = ["metric", "target"] + [f"{n}: KS vs library (median)" for n in names] + ["real: median library", "noise floor KS"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    met = {n: 0 for n in names}

    def line(metric: str, target: float | None) -> None:
        cells = [metric, f"<= {target}" if target is not None else "-"]
        reference = None
        for n in names:
            row = by_metric[n].get(metric)
            if row is None:
                cells.append("-")
                continue
            reference = row
            ks = row["ks"]["synthetic_vs_library"]
            ok = target is not None and ks <= target
            met[n] += ok
            mark = " ✓" if ok else (" ✗" if target is not None else "")
            cells.append(f"{ks:.3f}{mark} ({row['median']['synthetic']:.3g})")
        if reference is None:
            return
        cells += [f"{reference['median']['library']:.3g}", f"{reference['ks']['library_vs_library_resampled']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")

    for metric, target in TARGET_ROWS:
        line(metric, target)
    for metric in EXTRA_ROWS:
        line(metric, None)
    seg_lines = []
    for n in names:
        seg = results[n].get("segmentation_consistency")
        if not seg:
            seg_lines.append(f"- {n}: segmentation consistency not measured (no --segmenter).")
            continue
        s, lib = seg["scores"]["synthetic"], seg["scores"]["library"]
        pq, acc = s["pq"] / max(lib["pq"], 1e-9), s["accuracy_type"] / max(lib["accuracy_type"], 1e-9)
        seg_lines.append(
            f"- {n}: PQ synthetic {s['pq']:.3f} vs library {lib['pq']:.3f} ({pq:.2f}x, target >= 0.9x "
            f"{'✓' if pq >= 0.9 else '✗'}); type accuracy {s['accuracy_type']:.3f} vs {lib['accuracy_type']:.3f} "
            f"({acc:.2f}x, target >= 0.8x {'✓' if acc >= 0.8 else '✗'}); segmenter: {seg['weights'].get('note', '')}"
        )
    summary = [f"- {n}: {met[n]} of {len(TARGET_ROWS)} KS targets met." for n in names]
    return "\n".join(lines) + "\n\n" + "\n".join(summary + seg_lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", help="NAME=path/to/synthesis_fidelity_*.json")
    parser.add_argument("--out", type=Path, default=None, help="write the table to this Markdown file too")
    args = parser.parse_args()
    results = {}
    for item in args.results:
        name, _, path = item.partition("=")
        results[name] = json.loads(Path(path).read_text())
    table = comparison(results)
    print(table)
    if args.out:
        args.out.write_text(table)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
