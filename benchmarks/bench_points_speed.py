"""Speed of stage 1, side by side in one run: point-map encoding vs a per-nucleus drawing loop, point-set
randomisation, and (when the networks are importable) one points-to-mask generator forward pass for scale.

    python benchmarks/bench_points_speed.py          # toy library; CONSEP_DIR set -> real CoNSeP library

Writes benchmarks/results/points_speed.json.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from skimage.draw import disk

from monai_dafgan.data import load_consep, make_toy_sample
from monai_dafgan.points import CentroidLibrary, PointSetDataset, points_to_maps

SIZE = (256, 256)


def naive_points_to_maps(points, size, radius=2, num_types=4):
    """The obvious implementation: one skimage disk per nucleus, later nuclei overwrite earlier ones."""
    markers = np.zeros(size, np.int32)
    for k, (r, c, _) in enumerate(points):
        rr, cc = disk((round(r), round(c)), radius + 0.5, shape=size)
        markers[rr, cc] = k + 1
    types = np.concatenate([[0], points[:, 2].astype(int)])[markers]
    return np.eye(num_types + 1, dtype=np.float32)[types].transpose(2, 0, 1), markers[None]


def per_second(fn, items, repeat=3) -> float:
    best = np.inf
    for _ in range(repeat):
        start = time.perf_counter()
        for item in items:
            fn(item)
        best = min(best, time.perf_counter() - start)
    return len(items) / best


def main() -> None:
    torch.set_num_threads(max(os.cpu_count() or 1, 1))
    root = os.environ.get("CONSEP_DIR")
    samples = load_consep(root) if root else [make_toy_sample(512, seed=0, index=i) for i in range(1, 5)]
    library = CentroidLibrary.from_samples(samples)
    rng = np.random.RandomState(0)
    sets = [library.random_patch(rng, SIZE) for _ in range(200)]
    rows = {
        "points_to_maps (ours)": per_second(lambda p: points_to_maps(p, SIZE), sets),
        "per-nucleus skimage disks": per_second(lambda p: naive_points_to_maps(p, SIZE), sets),
    }
    ds = PointSetDataset(library, 200, SIZE, seed=0)
    library.statistics(SIZE)  # computed once per size; not part of the per-item cost
    rows["PointSetDataset item (randomise + maps)"] = per_second(lambda i: ds[i], range(200), repeat=1)
    try:
        from monai_dafgan.networks import DAFFGenerator

        for preset in ("small", "paper"):
            g = DAFFGenerator.from_preset(preset, 5, 5).eval()
            x = torch.from_numpy(points_to_maps(sets[0], SIZE)[0])[None]
            with torch.inference_mode():
                g(x)
                rows[f"G1 forward, {preset} preset (CPU, batch 1)"] = per_second(lambda _: g(x), range(3 if preset == "small" else 1), repeat=2)
    except ImportError as err:
        print(f"(generator not importable, forward pass skipped: {err})")
    base = rows["points_to_maps (ours)"]
    print(f"256x256 point sets, {'real CoNSeP' if root else 'toy'} library of {library.num_points} nuclei\n")
    print(f"{'workload':<48}{'per second':>12}{'ours / this':>13}")
    for name, rate in rows.items():
        print(f"{name:<48}{rate:>12.1f}{base / rate:>13.1f}")
    out = Path("benchmarks/results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "points_speed.json").write_text(json.dumps({
        "command": ("CONSEP_DIR=... " if root else "") + "python benchmarks/bench_points_speed.py",
        "per_second": rows, "library": "consep" if root else "toy", "threads": torch.get_num_threads(),
    }, indent=2))


if __name__ == "__main__":
    main()
