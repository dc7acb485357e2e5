"""Criss-cross attention (R = 2) against full non-local attention on the same feature maps, side by side.

Both use the same query/key/value 1x1 convolutions (copied weights) and the same residual ``gamma * out + x``;
non-local attention takes one softmax over all H*W positions (one pass), criss-cross attention over the H + W - 1
positions of each pixel's row and column, applied twice with shared weights (CCNet's RCCA). A third row runs the
criss-cross module through its plain-autograd formulation (what TorchScript executes) to show what the eager
autograd function saves. Per configuration, forward + backward (batch 1) is timed over ``--repeats`` interleaved runs
after a warm-up: median wall time and, on CPU, median process CPU time (robust to other processes competing for the
cores, exact with ``--threads 1``).

Memory:
- CUDA: peak allocated memory during forward + backward (``torch.cuda.max_memory_allocated``) minus what was
  allocated before (measured).
- CPU: (a) analytic size of one attention map, float32, ``H*W*(H*W)`` (non-local) vs ``H*W*(H+W)`` (criss-cross,
  per pass; the eager function recomputes it in cache-sized chunks and stores none of it for backward), and (b)
  the measured peak RSS growth of one forward + backward in a fresh subprocess (``VmHWM`` after, reset by
  /proc/self/clear_refs, minus ``VmRSS`` before; includes allocator effects).

    python benchmarks/bench_attention.py [--repeats 7] [--threads N] [--device cpu|cuda] [--config C:H:W ...]

Writes benchmarks/results/attention.json.
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

from _common import environment, write_result  # noqa: E402
from monai_dafgan.networks import CrissCrossAttention  # noqa: E402
from monai_dafgan.networks.attention import criss_cross_softmax  # noqa: E402

CONFIGS = [(64, 32, 32), (64, 64, 64), (64, 96, 96), (512, 16, 16)]  # (C, H, W)
METHODS = ("criss_cross", "criss_cross_plain", "non_local")


class NonLocalAttention(nn.Module):
    """Full softmax over all H*W positions with a criss-cross module's query/key/value convs and gamma."""

    def __init__(self, cca: CrissCrossAttention) -> None:
        super().__init__()
        self.query, self.key, self.value, self.gamma = cca.query, cca.key, cca.value, cca.gamma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.query(x).flatten(2).float(), self.key(x).flatten(2).float(), self.value(x).flatten(2)
        attention = torch.softmax(torch.bmm(q.transpose(1, 2), k), dim=-1)  # (B, N, N)
        out = torch.bmm(v.float(), attention.transpose(1, 2)).view(b, c, h, w)
        return self.gamma * out.to(v.dtype) + x


class PlainCrissCross(nn.Module):
    """The criss-cross module through plain autograd ops (the TorchScript path), R passes."""

    def __init__(self, cca: CrissCrossAttention) -> None:
        super().__init__()
        self.cca = cca

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cca, height = self.cca, x.shape[2]
        for _ in range(cca.recurrence):
            value = cca.value(x).float()
            attention = criss_cross_softmax(cca.query(x), cca.key(x))
            out = torch.einsum("bciw,bhwi->bchw", value, attention[..., :height]) + torch.einsum(
                "bchj,bhwj->bchw", value, attention[..., height:]
            )
            x = cca.gamma * out + x
        return x


def build(method: str, channels: int, device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    cca = CrissCrossAttention(channels, recurrence=2)
    with torch.no_grad():
        cca.gamma.fill_(0.5)  # non-zero so that gradients reach query, key and value
    module = {"criss_cross": lambda: cca, "criss_cross_plain": lambda: PlainCrissCross(cca)}.get(
        method, lambda: NonLocalAttention(cca)
    )()
    return module.to(device)


def step(module: nn.Module, x: torch.Tensor) -> None:
    module.zero_grad(set_to_none=True)
    x.grad = None
    module(x).square().mean().backward()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rss_bytes(field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process, from /proc/self/status."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_probe(method: str, channels: int, height: int, width: int) -> None:
    """Subprocess entry: peak RSS growth of one forward + backward (CPU)."""
    module = build(method, channels, torch.device("cpu"))
    x = torch.randn(1, channels, height, width, requires_grad=True)
    step(module, torch.randn(1, channels, 4, 4, requires_grad=True))  # library initialisation is not counted
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # resets VmHWM (ru_maxrss would carry the parent's peak over fork + exec)
    before = rss_bytes("VmRSS")
    step(module, x)
    print(json.dumps({"rss_growth_bytes": max(0, rss_bytes("VmHWM") - before)}))


def measured_memory(method: str, channels: int, height: int, width: int, device: torch.device) -> int:
    if device.type == "cuda":
        module = build(method, channels, device)
        x = torch.randn(1, channels, height, width, device=device, requires_grad=True)
        step(module, x)  # warm-up, so that cuBLAS workspaces are not counted
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step(module, x)
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    command = [sys.executable, __file__, "--_probe", method, str(channels), str(height), str(width)]
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    result = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return json.loads(result.stdout.strip().splitlines()[-1])["rss_growth_bytes"]


def analytic_bytes(method: str, height: int, width: int) -> int:
    n = height * width
    return 4 * n * (n if method == "non_local" else height + width)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    # one thread by default: ratios stay reproducible on a shared machine (OpenMP threads that lose their core to
    # another process stall every parallel region)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "attention.json")
    parser.add_argument("--config", action="append", help="C:H:W feature map (repeatable; default: the table above)")
    parser.add_argument("--_probe", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args._probe:
        method, *sizes = args._probe
        memory_probe(method, *map(int, sizes))
        return
    device = torch.device(args.device)
    load_before = os.getloadavg()
    started = time.perf_counter()
    rows = []
    configs = [tuple(map(int, text.split(":"))) for text in args.config] if args.config else CONFIGS
    for channels, height, width in configs:
        modules = {method: build(method, channels, device) for method in METHODS}
        x = torch.randn(1, channels, height, width, device=device, requires_grad=True)
        wall: dict[str, list[float]] = {method: [] for method in METHODS}
        cpu: dict[str, list[float]] = {method: [] for method in METHODS}
        for method in METHODS:
            step(modules[method], x)  # warm-up
        for _ in range(args.repeats):
            for method in METHODS:  # interleaved, so that load changes hit all methods alike
                synchronize(device)
                start, start_cpu = time.perf_counter(), time.process_time()
                step(modules[method], x)
                synchronize(device)
                wall[method].append(1000 * (time.perf_counter() - start))
                cpu[method].append(1000 * (time.process_time() - start_cpu))
        for method in METHODS:
            rows.append(
                dict(
                    channels=channels,
                    height=height,
                    width=width,
                    method=method,
                    forward_backward_ms=statistics.median(wall[method]),
                    forward_backward_cpu_ms=statistics.median(cpu[method]) if device.type == "cpu" else None,
                    attention_map_bytes_analytic=analytic_bytes(method, height, width),
                    peak_memory_bytes_measured=measured_memory(method, channels, height, width, device),
                )
            )
    by_key = {(r["channels"], r["height"], r["method"]): r for r in rows}
    for row in rows:
        non_local = by_key[(row["channels"], row["height"], "non_local")]
        row["time_ratio_vs_non_local"] = row["forward_backward_ms"] / non_local["forward_backward_ms"]
        if device.type == "cpu":
            row["cpu_time_ratio_vs_non_local"] = row["forward_backward_cpu_ms"] / non_local["forward_backward_cpu_ms"]
        row["measured_memory_ratio_vs_non_local"] = row["peak_memory_bytes_measured"] / max(
            1, non_local["peak_memory_bytes_measured"]
        )
    memory_kind = "CUDA peak allocated" if device.type == "cuda" else "peak RSS growth (subprocess)"
    ratio = "x non-local"
    header = f"{'C':>4} {'HxW':>7} {'method':<18} {'wall ms':>9} {ratio:>11} {'CPU ms':>9} {ratio:>11} "
    print(header + f"{'attn map MB':>11} {memory_kind + ' MB':>34} {ratio:>11}")
    for row in rows:
        cpu_ms = row["forward_backward_cpu_ms"] or float("nan")
        cpu_ratio = row.get("cpu_time_ratio_vs_non_local", float("nan"))
        print(
            f"{row['channels']:>4} {row['height']:>3}x{row['width']:<3} {row['method']:<18} "
            f"{row['forward_backward_ms']:>9.2f} {row['time_ratio_vs_non_local']:>11.3f} {cpu_ms:>9.2f} "
            f"{cpu_ratio:>11.3f} "
            f"{row['attention_map_bytes_analytic'] / 2**20:>11.2f} {row['peak_memory_bytes_measured'] / 2**20:>34.1f} "
            f"{row['measured_memory_ratio_vs_non_local']:>11.3f}"
        )
    result = dict(
        command="python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        description="forward+backward of criss-cross attention (R=2) vs non-local attention, batch 1, float32",
        memory_measurement=memory_kind,
        attention_map_bytes_analytic="float32 entries of one attention map: N*N (non-local) vs N*(H+W) per pass",
        repeats=args.repeats,
        rows=rows,
        environment=environment(load_before, device),
        total_benchmark_s=time.perf_counter() - started,
    )
    write_result(result, args.output)


if __name__ == "__main__":
    main()
