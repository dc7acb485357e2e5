"""bf16 on the CPU against float32, side by side in one run: synthesis (``NucleiSynthesizer(cpu_amp=True)``,
``synthesize --cpu-bf16``), speed and whether the samples stay the same, and a HoVer-Net training step (the HoVer-Net
bundle's ``cpu_amp``: ``monai_dafgan.engines.AutocastInferer``).

The shipped DAFF-GAN synthesizer and centroid library make ``--num-samples`` 256x256 samples (point sets of
``PointSetDataset(shipped library, n, 256, seed=0)``) once in float32 and once under bf16 autocast, the two
alternating over ``--rounds`` rounds (best round kept), at each ``--threads`` count. Then the two sets of samples are
compared: instances per sample, the foreground Dice of the two label maps (pooled over samples), the type agreement
on pixels both call nucleus, and the mean and largest image difference (0..255).

Training step: the CPU recipe's network (HoVer-Net's branches on a ResNet-18 U-Net, 160 -> 128, 5 classes), batch
``--train-batch``, ``HoVerNetLoss(lambda_hv_mse=2)`` and Adam, forward + backward + update on random inputs and
targets (speed does not depend on them), the two precisions alternating over ``--steps`` steps (median kept).

bf16 is fast only where the CPU computes it natively (AVX512-BF16 or AMX, ``cpu_has_native_bf16()``); elsewhere it
is emulated, and the ratio shows by how much it is slower.

    python benchmarks/bench_cpu_bf16.py                          # 2 cores: ~3 min
    python benchmarks/bench_cpu_bf16.py --num-samples 4 --size 64 --rounds 1 --threads 1 --steps 1 --output /tmp/b.json

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
from monai.apps.pathology.losses import HoVerNetLoss
from monai.utils import HoVerNetBranch
from torch.nn.functional import one_hot

from monai_dafgan.engines import AutocastInferer
from monai_dafgan.points import PointSetDataset
from monai_dafgan.segmentation import ResNetHoVerNet
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
        on_both = fa & fb
        overlap, foreground = overlap + 2 * int(on_both.sum()), foreground + int(fa.sum() + fb.sum())
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


def training_step_seconds(batch_size: int, steps: int) -> dict:
    """Median seconds of a HoVer-Net training step in each precision (alternating, after one warm-up step each)."""
    torch.manual_seed(0)
    network = ResNetHoVerNet("resnet18", out_classes=5, output_crop=16)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-4)
    loss_function = HoVerNetLoss(lambda_hv_mse=2.0)
    inputs = torch.rand(batch_size, 3, 160, 160)
    targets = {
        HoVerNetBranch.NP.value: one_hot(torch.randint(0, 2, (batch_size, 128, 128)), 2).permute(0, 3, 1, 2).float(),
        HoVerNetBranch.NC.value: one_hot(torch.randint(0, 5, (batch_size, 128, 128)), 5).permute(0, 3, 1, 2).float(),
        HoVerNetBranch.HV.value: torch.rand(batch_size, 2, 128, 128) * 2 - 1,
    }
    inferers = {precision: AutocastInferer(enabled=precision == "bf16") for precision in PRECISIONS}

    def step(precision: str) -> float:
        start = time.perf_counter()
        outputs = inferers[precision](inputs, network)
        loss = loss_function(outputs, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return time.perf_counter() - start

    seconds = {precision: [] for precision in PRECISIONS}
    for precision in PRECISIONS:
        step(precision)
    for _ in range(steps):
        for precision in PRECISIONS:
            seconds[precision].append(step(precision))
    return {precision: float(np.median(values)) for precision, values in seconds.items()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-samples", type=int, default=32)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--train-batch", type=int, default=8, help="HoVer-Net training batch")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per precision")
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
            step = training_step_seconds(args.train_batch, args.steps)
            rows.append({
                "threads": threads, "samples_per_s": rate, "bf16_over_fp32": rate["bf16"] / rate["fp32"],
                "training_step_s": step, "training_fp32_over_bf16": step["fp32"] / step["bf16"],
            })  # fmt: skip
    finally:
        torch.set_num_threads(threads_before)
    result = {
        "command": "python benchmarks/bench_cpu_bf16.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "settings": {"num_samples": args.num_samples, "size": args.size, "batch_size": args.batch_size,
                     "rounds": args.rounds, "weights": "shipped DAFF-GAN", "train_batch": args.train_batch,
                     "steps": args.steps},  # fmt: skip
        "native_bf16": cpu_has_native_bf16(),
        "rows": rows,
        "agreement": agreement(samples["fp32"], samples["bf16"]),
        "environment": environment(load_before),
    }
    native = "native bf16" if result["native_bf16"] else "no native bf16: emulated"
    print(f"\nSynthesis of {args.size}x{args.size} samples, shipped DAFF-GAN generators, CPU ({native})")
    print(f"{'threads':>8}{'fp32 /s':>10}{'bf16 /s':>10}{'speed-up':>10}   HoVer-Net step (batch {args.train_batch}): "
          "fp32 s, bf16 s, speed-up")
    for row in rows:
        rate, step = row["samples_per_s"], row["training_step_s"]
        print(f"{row['threads']:>8}{rate['fp32']:>10.2f}{rate['bf16']:>10.2f}{row['bf16_over_fp32']:>9.2f}x"
              f"{step['fp32']:>12.3f}{step['bf16']:>9.3f}{row['training_fp32_over_bf16']:>9.2f}x")
    same = result["agreement"]
    print(f"bf16 vs fp32 samples: same instance count in {same['samples_with_the_same_instance_count']:.0%}, "
          f"foreground Dice {same['foreground_dice']:.4f}, type agreement {same['type_agreement_on_common_foreground']:.4f}, "
          f"image difference mean {same['image_mean_abs_difference']:.2f} / max {same['image_max_abs_difference']:.0f} "
          "(0..255)")
    write_result(result, args.output)
    return result


if __name__ == "__main__":
    main()
