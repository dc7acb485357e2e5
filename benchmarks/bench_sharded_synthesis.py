"""Synthesis on every CPU core: one process with all threads against N shard processes of one thread each, side by
side in one run, writing the same samples with the shipped synthesis bundle through the package's command line
(``python -m monai_dafgan synthesize [--shard k/N]``), the way a user fills a folder.

Each configuration writes ``--num-samples`` 256x256 samples into a fresh folder; its wall time runs from the first
process's start to the last one's end (model loading and library reading included, as a user waits for them). The
configurations run round-robin (``--rounds``), the best round of each is kept, and the sharded folders are checked
to hold the files of the single process at one thread (what sharding promises: same device, threads, batch size).

    python benchmarks/bench_sharded_synthesis.py                       # 2 cores: ~3 min
    python benchmarks/bench_sharded_synthesis.py --num-samples 16 --rounds 1 --output /tmp/s.json

Prints samples per second and the ratio to one process, and writes benchmarks/results/sharded_synthesis.json.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, environment, write_result  # noqa: E402


def run_configuration(processes: int, threads: int, num_samples: int, out: Path, batch_size: int) -> float:
    """Seconds to write ``num_samples`` samples into ``out`` with ``processes`` shard processes of ``threads``
    torch threads each (1 process: no shard)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    base = [sys.executable, "-m", "monai_dafgan", "synthesize", "--num-samples", str(num_samples), "--out", str(out),
            "--device", "cpu", "--batch-size", str(batch_size)]  # fmt: skip
    commands = [base] if processes == 1 else [base + ["--shard", f"{k}/{processes}"] for k in range(processes)]
    start = time.perf_counter()
    running = [subprocess.Popen(c, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for c in commands]
    for process in running:
        _, error = process.communicate()
        if process.returncode:
            raise RuntimeError(f"synthesize failed (exit {process.returncode}):\n{error.decode()[-2000:]}")
    return time.perf_counter() - start


def same_images(a: Path, b: Path) -> bool:
    """The same PNG files (samples and preview), byte for byte."""
    files = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    return files == sorted(p.relative_to(b) for p in b.rglob("*.png")) and all(
        (a / f).read_bytes() == (b / f).read_bytes() for f in files
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-samples", type=int, default=64, help="samples per configuration")
    parser.add_argument("--cores", type=int, default=os.cpu_count(), help="cores to fill (default: all)")
    parser.add_argument("--rounds", type=int, default=2, help="round-robin rounds (the best of each is kept)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "sharded_synthesis.json")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    cores = max(1, args.cores)
    # (processes, threads each): the one-thread process is the reference the shards must reproduce file by file
    configurations = {"1 process x 1 thread": (1, 1), f"1 process x {cores} threads": (1, cores)}
    if cores > 1:
        configurations[f"{cores} shards x 1 thread"] = (cores, 1)
    seconds: dict[str, list[float]] = {name: [] for name in configurations}
    with tempfile.TemporaryDirectory() as scratch:
        folders = {}
        for round_ in range(args.rounds):
            for name, (processes, threads) in configurations.items():
                folders[name] = Path(scratch) / f"{round_}_{processes}x{threads}"
                seconds[name].append(run_configuration(processes, threads, args.num_samples, folders[name],
                                                       args.batch_size))  # fmt: skip
                print(f"  round {round_ + 1}: {name}: {seconds[name][-1]:.1f} s", flush=True)
        reference = folders["1 process x 1 thread"]
        identical = {name: same_images(reference, folder) for name, folder in folders.items() if "shards" in name}
    best = {name: min(values) for name, values in seconds.items()}
    baseline = best[f"1 process x {cores} threads"]
    rows = [
        {"configuration": name, "seconds": round(best[name], 2),
         "samples_per_s": round(args.num_samples / best[name], 2),
         "speedup_vs_one_process_all_threads": round(baseline / best[name], 2)}
        for name in configurations
    ]  # fmt: skip
    print(f"\n{args.num_samples} samples of 256x256, shipped DAFF-GAN bundle, batch {args.batch_size}, {cores} cores:")
    print(f"{'configuration':<28}{'seconds':>9}{'samples/s':>11}{'vs 1 process':>14}")
    for row in rows:
        print(f"{row['configuration']:<28}{row['seconds']:>9.1f}{row['samples_per_s']:>11.2f}"
              f"{row['speedup_vs_one_process_all_threads']:>13.2f}x")  # fmt: skip
    print(f"sharded folders hold the one-thread process's files: {identical}")
    arguments = argv if argv is not None else sys.argv[1:]
    result = {
        "command": "python benchmarks/bench_sharded_synthesis.py " + " ".join(arguments),
        "environment": environment(load_before),
        "num_samples": args.num_samples,
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "seconds_per_round": seconds,
        "rows": rows,
        "sharded_files_identical_to_one_thread_process": identical,
    }
    write_result(result, args.output)
    return result


if __name__ == "__main__":
    main()
