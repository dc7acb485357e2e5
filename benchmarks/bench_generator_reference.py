"""The package's ``GlobalGenerator`` against pix2pixHD's global generator, written as NVIDIA lays it out, side by side.

pix2pixHD (``models/networks.py``) builds its global generator as one flat ``nn.Sequential`` (ReflectionPad3 - Conv7
- InstanceNorm - ReLU(inplace), n_downsampling x [Conv3 s2 - norm - ReLU], n_blocks x ResnetBlock, n_downsampling x
[ConvTranspose3 s2 p1 op1 - norm - ReLU], ReflectionPad3 - Conv7 - Tanh); the package nests the same modules in
``stem``/``down``/``blocks``/``up``/``head``. The reference below is that flat layout, re-typed here so the benchmark
needs nothing outside this repository. The package network (no attention, no long skip) gets the reference's weights
copied in order and must give the same output (checked before timing), so both compute exactly the same thing.

Per configuration, the no-grad forward (the synthesis path) and forward + backward are timed over ``--repeats``
interleaved runs (the order alternates) after a warm-up, batch 1: median process CPU time (robust to other processes
competing for the cores, exact with ``--threads 1``) and median wall time, and the ratio package / reference. Each
allocator setting runs in its own process: glibc's defaults, and glibc with ``MALLOC_MMAP_MAX_=0
MALLOC_TRIM_THRESHOLD_=...`` (no mmap per large tensor, so no fresh page faults per layer); the ratio tuned / default
says what the allocator is worth on the same network.

    python benchmarks/bench_generator_reference.py [--repeats 7] [--threads 1] [--config NGF:NDOWN:NBLOCKS:SIZE ...]

Writes benchmarks/results/generator_reference.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._common import GLIBC_TUNED, environment, write_result  # noqa: E402
from monai_dafgan.networks import GlobalGenerator  # noqa: E402

#: (ngf, n_downsampling, n_blocks, size): pix2pixHD's global generator at 256x256, and the shipped "small" widths
DEFAULT_CONFIGS = ("64:4:9:256", "32:3:4:256")
IN_CHANNELS, OUT_CHANNELS = 6, 3  # G2's: one-hot mask (background + 4 types) + instance edges -> RGB


class ReferenceResnetBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), nn.InstanceNorm2d(dim), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), nn.InstanceNorm2d(dim),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


def reference_generator(ngf: int, n_downsampling: int, n_blocks: int) -> nn.Sequential:
    """pix2pixHD's ``GlobalGenerator`` with ``norm_layer=InstanceNorm2d``, ``padding_type='reflect'``."""
    layers: list[nn.Module] = [
        nn.ReflectionPad2d(3), nn.Conv2d(IN_CHANNELS, ngf, 7), nn.InstanceNorm2d(ngf), nn.ReLU(True),
    ]  # fmt: skip
    for i in range(n_downsampling):
        mult = 2**i
        layers += [
            nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1), nn.InstanceNorm2d(ngf * mult * 2),
            nn.ReLU(True),
        ]  # fmt: skip
    layers += [ReferenceResnetBlock(ngf * 2**n_downsampling) for _ in range(n_blocks)]
    for i in range(n_downsampling):
        mult = 2 ** (n_downsampling - i)
        layers += [
            nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1),
            nn.InstanceNorm2d(ngf * mult // 2), nn.ReLU(True),
        ]  # fmt: skip
    layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, OUT_CHANNELS, 7), nn.Tanh()]
    return nn.Sequential(*layers)


def matched_pair(ngf: int, n_downsampling: int, n_blocks: int) -> tuple[nn.Module, nn.Module]:
    """The reference and the package network with the reference's weights; raises if their outputs differ."""
    torch.manual_seed(0)
    reference = reference_generator(ngf, n_downsampling, n_blocks)
    package = GlobalGenerator(IN_CHANNELS, OUT_CHANNELS, ngf=ngf, n_downsampling=n_downsampling, n_blocks=n_blocks)
    source, target = list(reference.parameters()), list(package.parameters())
    if [p.shape for p in source] != [p.shape for p in target]:
        raise RuntimeError("the package network's parameters are not the reference's, in order and shape")
    with torch.no_grad():
        for s, t in zip(source, target):
            t.copy_(s)
        x = torch.randn(1, IN_CHANNELS, 64, 64)
        difference = (package(x) - reference(x)).abs().max().item()
    if difference > 1e-5:
        raise RuntimeError(f"same weights, different outputs (max |difference| {difference:.2e})")
    return package, reference


def timings(networks: dict[str, nn.Module], size: int, repeats: int, backward: bool) -> dict[str, dict[str, float]]:
    x = torch.randn(1, IN_CHANNELS, size, size)

    def once(network: nn.Module) -> tuple[float, float]:
        cpu, wall = time.process_time(), time.perf_counter()
        if backward:
            network(x).mean().backward()
        else:
            with torch.no_grad():
                network(x)
        return time.process_time() - cpu, time.perf_counter() - wall

    for network in networks.values():  # warm-up: allocator, oneDNN primitives
        once(network)
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in networks}
    order = list(networks)
    for repeat in range(repeats):
        for name in order if repeat % 2 == 0 else order[::-1]:
            samples[name].append(once(networks[name]))
        for network in networks.values():
            network.zero_grad(set_to_none=True)
    return {
        name: {"cpu_s": statistics.median(c for c, _ in values), "wall_s": statistics.median(w for _, w in values)}
        for name, values in samples.items()
    }


ALLOCATORS = {"glibc default": {}, "glibc tuned": GLIBC_TUNED}


def worker(args: argparse.Namespace) -> None:
    """One allocator setting (this process's environment): every configuration and mode, as JSON lines."""
    torch.set_num_threads(args.threads)
    for config in args.config:
        ngf, n_downsampling, n_blocks, size = (int(v) for v in config.split(":"))
        package, reference = matched_pair(ngf, n_downsampling, n_blocks)
        for mode, backward in (("no-grad forward", False), ("forward + backward", True)):
            measured = timings({"package": package, "reference": reference}, size, args.repeats, backward)
            print(json.dumps({"config": config, "mode": mode, **measured}), flush=True)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--config", nargs="+", default=list(DEFAULT_CONFIGS), help="NGF:NDOWN:NBLOCKS:SIZE")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "generator_reference.json")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return {}
    load_before = os.getloadavg()
    measured: dict[str, list[dict]] = {}
    for allocator, variables in ALLOCATORS.items():
        command = [sys.executable, __file__, "--worker", "--repeats", str(args.repeats), "--threads", str(args.threads),
                   "--config", *args.config]  # fmt: skip
        lines = subprocess.run(command, env={**os.environ, **variables}, capture_output=True, text=True, check=True)
        measured[allocator] = [json.loads(line) for line in lines.stdout.splitlines()]
    rows = []
    for default, tuned in zip(measured["glibc default"], measured["glibc tuned"]):
        row = {"config": default["config"], "mode": default["mode"]}
        for allocator, m in (("glibc default", default), ("glibc tuned", tuned)):
            row[allocator] = {**{k: m[k] for k in ("package", "reference")},
                              "package_over_reference": m["package"]["cpu_s"] / m["reference"]["cpu_s"]}  # fmt: skip
        row["package_tuned_over_default"] = tuned["package"]["cpu_s"] / default["package"]["cpu_s"]
        rows.append(row)
        print(f"{row['config']:>12} {row['mode']:>18}: package/reference "
              f"{row['glibc default']['package_over_reference']:.3f} (glibc default, package "
              f"{default['package']['cpu_s']:.3f} s CPU), {row['glibc tuned']['package_over_reference']:.3f} (tuned, "
              f"{tuned['package']['cpu_s']:.3f} s); tuned/default {row['package_tuned_over_default']:.3f}")  # fmt: skip
    command = "python benchmarks/bench_generator_reference.py " + " ".join(sys.argv[1:] if argv is None else argv)
    result = {"command": command.strip(), "environment": environment(load_before), "rows": rows}
    write_result(result, args.output)
    return result


if __name__ == "__main__":
    main()
