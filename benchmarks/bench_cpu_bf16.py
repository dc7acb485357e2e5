"""bf16 synthesis on the CPU (``NucleiSynthesizer(cpu_amp=True)``, ``synthesize --cpu-bf16``) against float32, side
by side in one run: speed, and whether the samples stay the same.

The shipped DAFF-GAN synthesizer and centroid library make ``--num-samples`` 256x256 samples (point sets of
``PointSetDataset(shipped library, n, 256, seed=0)``) once in float32 and once under bf16 autocast, the two
alternating over ``--rounds`` rounds (best round kept), at each ``--threads`` count. Then the two sets of samples are
compared: instances per sample, the foreground Dice of the two label maps (pooled over samples), the type agreement
on pixels both call nucleus, and the mean and largest image difference (0..255).

bf16 is fast only where the CPU computes it natively (AVX512-BF16 or AMX, ``cpu_has_native_bf16()``); elsewhere it
is emulated, and the ratio shows by how much it is slower.

    python benchmarks/bench_cpu_bf16.py                          # 2 cores: ~3 min
    python benchmarks/bench_cpu_bf16.py --num-samples 4 --size 64 --rounds 1 --threads 1 --output /tmp/b.json

Prints samples per second with the ratio and the agreement, and writes benchmarks/results/cpu_bf16_synthesis.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from monai_dafgan.points import PointSetDataset
from monai_dafgan.synthesis import NucleiSynthesizer, cpu_has_native_bf16, shipped_library

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, environment, write_result  # noqa: E402

PRECISIONS = ("fp32", "bf16")


def agreement(reference: list[dict], other: list[dict]) -> dict:
    """How far ``other``'s samples are from ``reference``'s (same point sets)."""
    same_count = overlap = foreground = type_same = both = 0
    image_mean, image_max = [], 0.0
    for a, b in zip(reference, other):
        inst_a, inst_b = np.asarray(a["label_inst"][0]), np.asarray(b["label_inst"][0])
        same_count += int(inst_a.max() == inst_b.max())
        fa, fb = inst_a > 0, inst_b > 0
        overlap, foreground = overlap + 2 * int((fa & fb).sum()), foreground + int(fa.sum() + fb.sum())
        on_both = fa & fb
        type_same += int((np.asarray(a["label_type"][0])[on_both] == np.asarray(b["label_type"][0])[on_both]).sum())
        both += int(on_both.sum())
        difference = np.abs(np.asarray(a["image"], np.float64) - np.asarray(b["image"], np.float64))
        image_mean.append(float(difference.mean()))
        image_max = max(image_max, float(difference.max()))
    return {
        "samples_with_the_same_instance_count": same_count / len(reference),
        "foreground_dice": overlap / foreground if foreground else 1.0,
        "type_agreement_on_common_foreground": type_same / both if both else 1.0,
        "image_mean_abs_difference": float(np.mean(image_mean)),
        "image_max_abs_difference": image_max,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-samples", type=int, default=32)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "cpu_bf16_synthesis.json")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()

    library = shipped_library()
    points = PointSetDataset(library, args.num_samples, args.size, seed=0, draw_maps=False)
    point_sets = [points[i]["points"] for i in range(args.num_samples)]
    synthesizers = {
        precision: NucleiSynthesizer.pretrained(device="cpu", batch_size=args.batch_size, cpu_amp=precision == "bf16")
        for precision in PRECISIONS
    }
    size = (args.size, args.size)
    rows, samples = [], {}
    threads_before = torch.get_num_threads()
    try:
        for threads in args.threads:
            torch.set_num_threads(threads)
            for synthesizer in synthesizers.values():
                synthesizer.synthesize(point_sets[:1], size)  # warm-up (allocator, oneDNN kernels)
            best = dict.fromkeys(PRECISIONS, np.inf)
            for _ in range(args.rounds):
                for precision, synthesizer in synthesizers.items():
                    start = time.perf_counter()
                    samples[precision] = synthesizer.synthesize(point_sets, size)
                    best[precision] = min(best[precision], time.perf_counter() - start)
            rate = {precision: args.num_samples / best[precision] for precision in PRECISIONS}
            rows.append({"threads": threads, "samples_per_s": rate, "bf16_over_fp32": rate["bf16"] / rate["fp32"]})
    finally:
        torch.set_num_threads(threads_before)
    result = {
        "command": "python benchmarks/bench_cpu_bf16.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "settings": {"num_samples": args.num_samples, "size": args.size, "batch_size": args.batch_size,
                     "rounds": args.rounds, "weights": "shipped DAFF-GAN"},  # fmt: skip
        "native_bf16": cpu_has_native_bf16(),
        "rows": rows,
        "agreement": agreement(samples["fp32"], samples["bf16"]),
        "environment": environment(load_before),
    }
    native = "native bf16" if result["native_bf16"] else "no native bf16: emulated"
    print(f"\nSynthesis of {args.size}x{args.size} samples, shipped DAFF-GAN generators, CPU ({native})")
    print(f"{'threads':>8}{'fp32 /s':>10}{'bf16 /s':>10}{'bf16/fp32':>11}")
    for row in rows:
        rate = row["samples_per_s"]
        print(f"{row['threads']:>8}{rate['fp32']:>10.2f}{rate['bf16']:>10.2f}{row['bf16_over_fp32']:>10.2f}x")
    same = result["agreement"]
    print(f"bf16 vs fp32 samples: same instance count in {same['samples_with_the_same_instance_count']:.0%}, "
          f"foreground Dice {same['foreground_dice']:.4f}, type agreement {same['type_agreement_on_common_foreground']:.4f}, "
          f"image difference mean {same['image_mean_abs_difference']:.2f} / max {same['image_max_abs_difference']:.0f} "
          "(0..255)")
    write_result(result, args.output)
    return result


if __name__ == "__main__":
    main()
