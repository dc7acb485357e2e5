"""CPU training speed of the generators: which settings make a G1/G2 training iteration cheapest on a CPU.

Every variant runs the real ``ConditionalGanTrainer`` iteration (G forward, D step, G step with LSGAN + feature
matching, as the generator bundles configure it) on random data of the right channel counts, in its own process
(threads, allocator and oneDNN are per process). Variants run one after another, each ``--rounds`` times
interleaved, so that slow drift of the machine hits all alike; the figure is the median seconds per iteration over
all timed iterations, turned into 256x256-equivalent samples per second, and its ratio to today's default (small
preset, 256x256, batch 1, fp32, all threads, glibc malloc). ``2 procs x 1 thread`` runs two processes of one thread
each at the same time and sums their throughput: two independent runs (e.g. G1 and G2, or DAFF-GAN and its
pix2pixHD baseline) on a 2-core machine.

    python benchmarks/bench_cpu_training.py [--network g2] [--steps 6] [--warmup 2] [--rounds 2]

Writes benchmarks/results/cpu_training.json and cpu_training.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _common import GLIBC_TUNED, environment, write_result  # noqa: E402

JEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
TCMALLOC = "/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4"

READING = """Reading (this CPU: AVX-512 with VNNI, no avx512_bf16 and no AMX; `torch.backends.cpu.get_cpu_capability()` =
AVX512):
- bf16 autocast does not pay here: oneDNN runs bf16 convolutions with its `jit_bf16:avx512_core` kernels, which on a
  CPU without bf16 dot-product instructions convert to fp32 and compute at the fp32 rate (ONEDNN_VERBOSE=1 shows
  them), while autocast adds a cast of every weight and activation per step and each convolution adds bf16 layout
  reorders. On a CPU with AMX or avx512_bf16 this changes; measure there before adopting it.
- channels_last does not pay either: oneDNN reorders the tensors to its own blocked layout for every
  convolution whichever layout PyTorch hands it (the verbose log shows the reorders).
- oneDNN is what makes the CPU fast (off: about half the speed). tcmalloc (LD_PRELOAD) gives a few percent;
  glibc with `MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=...` and jemalloc about nothing at this size.
- Two 1-thread processes move more samples than one 2-thread process: a small generator does not keep two threads
  busy. On a 2-core machine, train G1 and G2 (or a model and its baseline) at the same time, one thread each.
- 128x128 crops move the same pixels per second as 256x256 but give 2.6x more updates per second, which a GAN on
  22 tiles needs more than large batches; the bundles' default patch_size is 128 for CPU training.
"""

# name -> (settings of the worker, extra environment)
VARIANTS: dict[str, tuple[dict, dict]] = {
    "today (small, 256, b1, fp32, 2 threads)": (dict(), {}),
    "1 thread": (dict(threads=1), {}),
    "2 procs x 1 thread": (dict(threads=1, procs=2), {}),
    "channels_last": (dict(channels_last=True), {}),
    "bf16 autocast": (dict(bf16=True), {}),
    "oneDNN (mkldnn) off": (dict(mkldnn=False), {}),
    "glibc malloc tuned": (dict(), GLIBC_TUNED),
    "jemalloc": (dict(), {"LD_PRELOAD": JEMALLOC}),
    "tcmalloc": (dict(), {"LD_PRELOAD": TCMALLOC}),
    "128 crops, b1": (dict(size=128), {}),
    "128 crops, b4": (dict(size=128, batch=4), {}),
    "128 crops, b4, 2 procs x 1 thread": (dict(size=128, batch=4, threads=1, procs=2), {}),
}


def worker(args: argparse.Namespace) -> None:
    """One variant in this process: prints a JSON line with the per-iteration wall times."""
    from monai_dafgan.engines import ConditionalGanTrainer
    from monai_dafgan.losses import FeatureMatchingLoss, MultiScaleGANLoss
    from monai_dafgan.losses.segmentation import ProbabilityCrossEntropyLoss
    from monai_dafgan.networks import DAFFGenerator, MultiScaleDiscriminator

    cfg = json.loads(args.worker)
    torch.set_num_threads(cfg.get("threads", torch.get_num_threads()))
    torch.backends.mkldnn.enabled = cfg.get("mkldnn", True)
    g1 = args.network == "g1"
    cin, cout = (5, 5) if g1 else (6, 3)
    torch.manual_seed(0)
    g = DAFFGenerator.from_preset(args.preset, cin, cout, output_activation=None if g1 else "tanh")
    d = MultiScaleDiscriminator.from_preset(args.preset, cin + cout)
    memory_format = torch.channels_last if cfg.get("channels_last") else torch.contiguous_format
    g, d = g.to(memory_format=memory_format), d.to(memory_format=memory_format)
    trainer = ConditionalGanTrainer(
        device="cpu", max_epochs=1, train_data_loader=[], g_network=g,
        g_optimizer=torch.optim.Adam(g.parameters(), 2e-4, betas=(0.5, 0.999)), d_network=d,
        d_optimizer=torch.optim.Adam(d.parameters(), 2e-4, betas=(0.5, 0.999)),
        gan_loss=MultiScaleGANLoss("least_squares"), feature_matching_loss=FeatureMatchingLoss(10.0),
        g_output_transform=(lambda x: torch.softmax(x, 1)) if g1 else None,
        reconstruction_loss=ProbabilityCrossEntropyLoss() if g1 else None,
    )  # fmt: skip
    trainer.state.device = torch.device("cpu")
    size, batch = cfg.get("size", 256), cfg.get("batch", 1)
    labels = torch.randint(0, cin - 1, (batch, size, size), generator=torch.Generator().manual_seed(0))
    condition = torch.nn.functional.one_hot(labels, cin).permute(0, 3, 1, 2).float()
    target = torch.rand(batch, cout, size, size) * 2 - 1
    if g1:
        target = torch.nn.functional.one_hot(labels, cout).permute(0, 3, 1, 2).float()
    batchdata = {
        "condition": condition.contiguous(memory_format=memory_format),
        "target": target.contiguous(memory_format=memory_format),
    }
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if cfg.get("bf16") else nullcontext()
    times = []
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        with autocast:
            trainer._iteration(trainer, batchdata)
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    print(json.dumps({"times": times, "size": size, "batch": batch, "threads": torch.get_num_threads()}))


def run_variant(name: str, args: argparse.Namespace) -> dict:
    cfg, env_extra = VARIANTS[name]
    preload = env_extra.get("LD_PRELOAD")
    if preload and not Path(preload).is_file():
        return {"skipped": f"{preload} not installed"}
    env = {**os.environ, **env_extra}
    command = [sys.executable, __file__, "--worker", json.dumps(cfg), "--network", args.network, "--preset",
               args.preset, "--steps", str(args.steps), "--warmup", str(args.warmup)]  # fmt: skip
    procs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) for _ in range(cfg.get("procs", 1))]
    outs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    return {"outs": outs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", choices=("g1", "g2"), default="g2")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variants", nargs="*", default=None, help="names of VARIANTS (default: all)")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "cpu_training.json")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        worker(args)
        return
    load_before = os.getloadavg()
    names = args.variants or list(VARIANTS)
    times: dict[str, list[list[float]]] = {name: [] for name in names}
    meta: dict[str, dict] = {}
    for round_ in range(args.rounds):
        for name in names:
            result = run_variant(name, args)
            if "skipped" in result:
                meta[name] = result
                continue
            for i, out in enumerate(result["outs"]):
                while len(times[name]) <= i:
                    times[name].append([])
                times[name][i] += out["times"]
                meta[name] = {k: out[k] for k in ("size", "batch", "threads")} | {"procs": len(result["outs"])}
            print(f"round {round_ + 1}: {name}: {statistics.median(result['outs'][0]['times']):.3f} s/it", flush=True)
    rows = []
    reference = None
    for name in names:
        if "skipped" in meta.get(name, {"skipped": "no result"}):
            rows.append({"variant": name, "skipped": meta.get(name, {}).get("skipped", "no result")})
            continue
        m = meta[name]
        per_proc = [statistics.median(t) for t in times[name]]
        pixels = m["size"] ** 2 * m["batch"] / 256**2
        samples_per_s = sum(pixels / s for s in per_proc)
        reference = reference or samples_per_s
        rows.append({"variant": name, **m, "median_s_per_iteration": per_proc,
                     "samples_256_per_s": samples_per_s, "ratio_to_today": samples_per_s / reference})  # fmt: skip
    result = {"network": args.network, "preset": args.preset, "steps": args.steps, "warmup": args.warmup,
              "rounds": args.rounds, "rows": rows, "environment": environment(load_before)}  # fmt: skip
    output = args.output.with_name(args.output.stem + f"_{args.network}.json")
    write_result(result, output)
    lines = [f"| variant ({args.network}, preset {args.preset}) | s / iteration | 256x256 samples / s | ratio to today |",
             "|---|---|---|---|"]  # fmt: skip
    for row in rows:
        if "skipped" in row:
            lines.append(f"| {row['variant']} | skipped: {row['skipped']} | | |")
        else:
            s = " + ".join(f"{t:.3f}" for t in row["median_s_per_iteration"])
            lines.append(f"| {row['variant']} | {s} | {row['samples_256_per_s']:.2f} | {row['ratio_to_today']:.2f}x |")
    table = "\n".join(lines)
    print(table)
    env = result["environment"]
    header = (
        f"# CPU training speed of {args.network.upper()} (preset {args.preset})\n\n"
        f"`python benchmarks/bench_cpu_training.py {shlex.join(sys.argv[1:])}`: {env['cpu_count']} CPUs, torch "
        f"{env['torch']}, load average "
        f"before {env['load_average_before'][0]:.2f}. Median seconds per training iteration (G forward, D step, G step) "
        "per process; samples/s in 256x256 equivalents, summed over processes run at the same time.\n\n"
    )
    output.with_suffix(".md").write_text(header + table + "\n\n" + READING)


if __name__ == "__main__":
    main()
