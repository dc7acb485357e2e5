"""Speed of the H&E stain jitter in the HoVer-Net training chain, side by side in one run: ours (one float64
matrix product each way in torch) vs the obvious implementation with skimage's ``rgb2hed`` / ``hed2rgb``, and the
whole augmentation chain per 540x540 patch for scale.

    python benchmarks/bench_stain_jitter.py [--threads 1]

Writes benchmarks/results/stain_jitter.json.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from skimage.color import hed2rgb, rgb2hed

from _common import REPO, environment, write_result
from monai_dafgan.data import RandHEDJitter, make_toy_sample
from monai_dafgan.segmentation import hovernet_train_transforms


def skimage_jitter(image: np.ndarray, scale: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """The obvious implementation: skimage's stain separation and combination (HWC, 0..1)."""
    hed = rgb2hed(image.transpose(1, 2, 0) / 255.0) * scale + shift
    return np.clip(hed2rgb(hed), 0, 1).transpose(2, 0, 1) * 255.0


def seconds_per_call(fn, repeat: int) -> float:
    fn()
    best = np.inf
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()
    rows = {}
    for size in (256, 540):
        sample = make_toy_sample(size, seed=0, index=1)
        image = np.clip(sample["image"], 1, 255).astype(np.float32)
        jitter = RandHEDJitter(1.0).set_random_state(0)
        jitter.randomize()
        tensor = torch.as_tensor(image)
        rows[f"{size}: RandHEDJitter (ours)"] = seconds_per_call(lambda: jitter(tensor, randomize=False), args.repeat)
        rows[f"{size}: skimage rgb2hed / hed2rgb"] = seconds_per_call(
            lambda: skimage_jitter(image, jitter.scale, jitter.shift), args.repeat
        )
        if size == 540:
            chain = hovernet_train_transforms(256, 164, augment=True)
            chain.set_random_state(0)
            rows[f"{size}: whole HoVer-Net training chain"] = seconds_per_call(lambda: chain(dict(sample)), args.repeat)
    print(f"{'workload':<44}{'ms':>10}{'ratio to ours':>15}")
    for name, seconds in rows.items():
        ours = rows[name.split(":")[0] + ": RandHEDJitter (ours)"]
        print(f"{name:<44}{1000 * seconds:>10.2f}{seconds / ours:>15.2f}")
    write_result(
        {
            "command": f"python benchmarks/bench_stain_jitter.py --threads {args.threads} --repeat {args.repeat}",
            "seconds_per_call": rows,
            "environment": environment(load),
        },
        REPO / "benchmarks" / "results" / "stain_jitter.json",
    )


if __name__ == "__main__":
    main()
