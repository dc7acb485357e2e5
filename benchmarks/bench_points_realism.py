"""Realism of stage-1 point sets on real CoNSeP: generated vs held-out real patches, as KS statistics.

Library: the CoNSeP Train tiles except the held-out validation tiles (train_5, 10, 15, 20, 25). Compared per
256x256 patch: nuclei per patch, the fraction of each type, and per-type nearest-neighbour distances (to the
nearest nucleus of any type in the same patch). Rows: the default composed transform, each operation alone, and
two real-vs-real floors (library patches untouched; held-out vs held-out with another seed), which show how far
apart two samples of real patches already are.

    CONSEP_DIR=/path/to/consep python benchmarks/bench_points_realism.py [--num-patches 1000]

Writes benchmarks/results/points_realism.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree
from scipy.stats import ks_2samp

from monai_dafgan.data import load_consep
from monai_dafgan.data.types import TYPE_NAMES
from monai_dafgan.points import CentroidLibrary, PointSetDataset, RandPointSetAugmentd

HOLDOUT = ("train_5", "train_10", "train_15", "train_20", "train_25")
SIZE = (256, 256)


def patch_statistics(point_sets) -> dict[str, np.ndarray]:
    counts, fractions, nn = [], {t: [] for t in TYPE_NAMES}, {t: [] for t in TYPE_NAMES}
    for p in point_sets:
        counts.append(len(p))
        if not len(p):
            continue
        types = p[:, 2].astype(int)
        for t in TYPE_NAMES:
            fractions[t].append(np.mean(types == t))
        if len(p) > 1:
            d, _ = cKDTree(p[:, :2]).query(p[:, :2], k=2)
            for t in TYPE_NAMES:
                nn[t].extend(d[types == t, 1])
    out = {"count": np.array(counts, float)}
    out.update({f"fraction_{TYPE_NAMES[t]}": np.array(v) for t, v in fractions.items()})
    out.update({f"nn_{TYPE_NAMES[t]}": np.array(v) for t, v in nn.items()})
    return out


def ks_row(reference: dict, other: dict) -> dict[str, float]:
    return {k: float(ks_2samp(reference[k], other[k]).statistic) for k in reference}


CONFIGS_OFF = dict(prob_generate=0, prob_combine=0, prob_cover=0, prob_flip=0, prob_rotate90=0, prob_affine=0)
CONFIGS = {
    "default composed transform": {},
    "generate only": {**CONFIGS_OFF, "prob_generate": 1.0},
    "combine only": {**CONFIGS_OFF, "prob_combine": 1.0},
    "cover only": {**CONFIGS_OFF, "prob_cover": 1.0},
    "affine only": {**CONFIGS_OFF, "prob_affine": 1.0},
    "flip + rotate90 only": {**CONFIGS_OFF, "prob_flip": 0.5, "prob_rotate90": 1.0},
}


def real_patches(library: CentroidLibrary, n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.RandomState(seed)
    return [library.random_patch(rng, SIZE) for _ in range(n)]


def compare(splits: list[tuple[list, list]], n: int) -> tuple[dict, dict]:
    """KS rows for point sets made from each split's library vs its held-out tiles, pooled over the splits."""
    per_split = max(n // len(splits), 1)
    pooled: dict[str, list] = {"real held-out (other seed)": [], "real library patches": [], **{k: [] for k in CONFIGS}}
    reference, rates = [], {k: [] for k in CONFIGS}
    for library_tiles, heldout_tiles in splits:
        library = CentroidLibrary.from_samples(library_tiles)
        heldout = CentroidLibrary.from_samples(heldout_tiles)
        reference += real_patches(heldout, per_split, 0)
        pooled["real held-out (other seed)"] += real_patches(heldout, per_split, 1)
        pooled["real library patches"] += real_patches(library, per_split, 1)
        for name, probs in CONFIGS.items():
            ds = PointSetDataset(library, per_split, SIZE, seed=0, augment=RandPointSetAugmentd(library, **probs), draw_maps=False)
            start = time.perf_counter()
            pooled[name] += [ds[i]["points"] for i in range(per_split)]
            rates[name].append(per_split / (time.perf_counter() - start))
    ref = patch_statistics(reference)
    return {name: ks_row(ref, patch_statistics(sets)) for name, sets in pooled.items()}, {k: float(np.mean(v)) for k, v in rates.items()}


def markdown_table(rows: dict) -> str:
    keys = list(next(iter(rows.values())))
    lines = ["| point sets | " + " | ".join(keys) + " | max |", "|" + "---|" * (len(keys) + 2)]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[k]:.3f}" for k in keys) + f" | {max(row.values()):.3f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-patches", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    root = os.environ.get("CONSEP_DIR")
    if not root:
        print("CONSEP_DIR is not set: this benchmark needs real CoNSeP tiles.", file=sys.stderr)
        return 2
    tiles = load_consep(root, "Train")
    n = args.num_patches
    folds = [tiles[i::5] for i in range(5)]
    cv_splits = [([t for j, f in enumerate(folds) if j != i for t in f], folds[i]) for i in range(5)]
    fixed_split = [([t for t in tiles if t["name"] not in HOLDOUT], [t for t in tiles if t["name"] in HOLDOUT])]
    cv_rows, rates = compare(cv_splits, n)
    fixed_rows, _ = compare(fixed_split, n)

    cv_table, fixed_table = markdown_table(cv_rows), markdown_table(fixed_rows)
    command = f"CONSEP_DIR=... python benchmarks/bench_points_realism.py --num-patches {n}"
    text = (
        f"# Stage-1 point-set realism (KS statistics, 256x256 patches)\n\n`{command}`\n\n"
        f"## 5-fold cross-validation over tiles\n\nFold i holds out every 5th tile starting at i (natural order); "
        f"point sets come from the other 4 folds; {n} patches pooled over the folds.\n\n{cv_table}\n\n"
        f"## Fixed held-out split ({', '.join(HOLDOUT)})\n\nLibrary: the other 22 tiles. The 'real library "
        f"patches' row is the floor: how far untouched real patches of the library already are from these "
        f"5 tiles.\n\n{fixed_table}\n\npoint sets per second (one process, no maps): "
        + ", ".join(f"{k}: {v:.0f}" for k, v in rates.items()) + "\n"
    )
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"command": command, "holdout": HOLDOUT, "patch_size": SIZE, "num_patches": n,
              "ks_cross_validation": cv_rows, "ks_fixed_split": fixed_rows, "sets_per_second": rates}
    (args.out / "points_realism.json").write_text(json.dumps(result, indent=2))
    (args.out / "points_realism.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
