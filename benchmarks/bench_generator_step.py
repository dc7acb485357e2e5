"""One DAFF-GAN training step against the same step of the pix2pixHD baseline, side by side.

A step is the bundles' own: one iteration of ``ConditionalGanTrainer`` (G forward; D step on (condition, real) vs
(condition, fake.detach()), loss 0.5 * (real + fake); G step with D frozen, LSGAN + feature matching, lambda 10).
DAFF-GAN (criss-cross attention R = 2 + long skips) and the baseline (attention and long skip off) are built from
the same preset and seed and stepped alternately, so that machine load hits both alike; after ``--warmup`` warm-up
steps, ``--steps`` steps are timed and the ratio DAFF / pix2pixHD is reported for the median and the minimum wall
time and, on CPU, for the median process CPU time (robust to other processes competing for the cores, exact with
``--threads 1``).

Default cases: the "small" preset at 256x256, batch 1, on CPU; the "paper" preset at 512x512 on CUDA when
available, else at a reduced 128x128 on CPU. ``--case PRESET:SIZE:BATCH:DEVICE`` (repeatable) overrides them.

    python benchmarks/bench_generator_step.py [--steps 9] [--warmup 2] [--threads N] [--case small:256:1:cpu]

Writes benchmarks/results/generator_step.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _common import environment, write_result  # noqa: E402
from monai_dafgan.engines import ConditionalGanTrainer  # noqa: E402
from monai_dafgan.losses import FeatureMatchingLoss, MultiScaleGANLoss  # noqa: E402
from monai_dafgan.networks import DAFFGenerator, MultiScaleDiscriminator  # noqa: E402

IN_CHANNELS, OUT_CHANNELS = 6, 3  # G2-like: one-hot typed mask (5) + instance edges (1) -> RGB
VARIANTS = ("daff", "pix2pixhd")


class GanStep:
    """Networks, optimisers and losses of one variant; ``__call__`` runs one training step."""

    def __init__(self, preset: str, baseline: bool, device: torch.device, amp: bool = False) -> None:
        torch.manual_seed(0)
        self.generator = DAFFGenerator.from_preset(preset, IN_CHANNELS, OUT_CHANNELS, baseline=baseline).to(device)
        torch.manual_seed(1)
        self.discriminator = MultiScaleDiscriminator.from_preset(preset, IN_CHANNELS + OUT_CHANNELS).to(device)
        betas = (0.5, 0.999)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=2e-4, betas=betas)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=2e-4, betas=betas)
        self.trainer = ConditionalGanTrainer(
            device=device, max_epochs=1, train_data_loader=[None], epoch_length=1, g_network=self.generator,
            g_optimizer=self.opt_g, d_network=self.discriminator, d_optimizer=self.opt_d,
            gan_loss=MultiScaleGANLoss("least_squares"), feature_matching_loss=FeatureMatchingLoss(10.0), amp=amp,
        )

    def __call__(self, condition: torch.Tensor, real: torch.Tensor) -> None:
        self.trainer._iteration(self.trainer, {"condition": condition, "target": real})


def run_case(preset: str, size: int, batch: int, device: torch.device, steps: int, warmup: int) -> dict:
    runners = {variant: GanStep(preset, variant == "pix2pixhd", device) for variant in VARIANTS}
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, IN_CHANNELS - 1, (batch, size, size), generator=generator)
    condition = torch.nn.functional.one_hot(labels, IN_CHANNELS).permute(0, 3, 1, 2).float().to(device)
    real = (torch.rand(batch, OUT_CHANNELS, size, size, generator=generator) * 2 - 1).to(device)
    wall: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    cpu: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for index in range(warmup + steps):
        for variant in VARIANTS:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start, start_cpu = time.perf_counter(), time.process_time()
            runners[variant](condition, real)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if index >= warmup:
                wall[variant].append(1000 * (time.perf_counter() - start))
                cpu[variant].append(1000 * (time.process_time() - start_cpu))
    stats = {
        "wall_median": {variant: statistics.median(samples) for variant, samples in wall.items()},
        "wall_min": {variant: min(samples) for variant, samples in wall.items()},
    }
    if device.type == "cpu":
        stats["cpu_time_median"] = {variant: statistics.median(samples) for variant, samples in cpu.items()}
    return dict(
        preset=preset,
        size=size,
        batch=batch,
        device=str(device),
        steps=steps,
        warmup=warmup,
        step_ms=stats,
        ratio_daff_over_pix2pixhd={name: value["daff"] / value["pix2pixhd"] for name, value in stats.items()},
        step_ms_all_wall=wall,
        generator_params={v: sum(p.numel() for p in r.generator.parameters()) for v, r in runners.items()},
        discriminator_params=sum(p.numel() for p in runners["daff"].discriminator.parameters()),
    )


def default_cases() -> list[tuple[str, int, int, str]]:
    cases = [("small", 256, 1, "cpu")]
    cases.append(("paper", 512, 1, "cuda") if torch.cuda.is_available() else ("paper", 128, 1, "cpu"))
    return cases


def parse_case(text: str) -> tuple[str, int, int, str]:
    preset, size, batch, device = text.split(":")
    return preset, int(size), int(batch), device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=9)
    parser.add_argument("--warmup", type=int, default=2)
    # one thread by default: ratios stay reproducible on a shared machine (OpenMP threads that lose their core to
    # another process stall every parallel region)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--case", type=parse_case, action="append", help="PRESET:SIZE:BATCH:DEVICE")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "generator_step.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    started = time.perf_counter()
    rows = [
        run_case(preset, size, batch, torch.device(device), args.steps, args.warmup)
        for preset, size, batch, device in (args.case or default_cases())
    ]
    header = f"{'preset':<7} {'size':>5} {'batch':>5} {'device':<6} {'statistic':<16} "
    print(header + f"{'DAFF ms':>9} {'pix2pixHD ms':>12} {'ratio':>6}")
    for row in rows:
        for name, ms in row["step_ms"].items():
            print(
                f"{row['preset']:<7} {row['size']:>5} {row['batch']:>5} {row['device']:<6} {name:<16} "
                f"{ms['daff']:>9.1f} {ms['pix2pixhd']:>12.1f} {row['ratio_daff_over_pix2pixhd'][name]:>6.3f}"
            )
    result = dict(
        command="python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        description="median time of one pix2pixHD-style GAN training step (G and D updates), DAFF vs baseline",
        target_ratio="<= 1.15",
        rows=rows,
        environment=environment(load_before),
        total_benchmark_s=time.perf_counter() - started,
    )
    write_result(result, args.output)


if __name__ == "__main__":
    main()
