"""The GPU benchmark in one command: synthesis throughput, the cost of on-the-fly mixing, generator training speed.

1. **Synthesis**: 256x256 samples per second of the whole synthesis (point maps, G1, instance recovery on the CPU,
   G2; ``NucleiSynthesizer.synthesize``) for the ``small`` preset (the shipped weights when present, else random)
   and the ``paper`` preset (random weights: none are shipped; speed does not depend on the weights), in fp32 and
   with bf16 autocast (CUDA only), at several batch sizes. Beside it, the G1 + G2 forward passes alone on inputs
   already on the device, so that the share of the CPU stages shows; and each stage's time per sample.
2. **Mixing overhead**: one HoVer-Net training step as the bundle ``hovernet_consep_synthetic`` runs it (MONAI
   ``SupervisedTrainer`` iteration: ``PrepareBatchHoVerNet``, forward, ``HoVerNetLoss``, backward, Adam; fp16 AMP
   on CUDA as the bundle's ``amp: true``) on a batch of B real patches, with and without ``SyntheticBatchMixer``
   (the bundle's settings: ``mode="append"``, ``synthetic_ratio`` 0.625 by default, the synthesizer on the
   trainer's device, the training chain run on each synthetic sample). A mixed step trains B + n samples, so it is
   also compared with a step on B + n real patches: that ratio is what synthesising on the fly costs against the
   same samples made beforehand (target <= 10 %). Real batches are made beforehand (the bundle loads them in
   DataLoader workers, beside the step), so a step here is the main process's work only.
3. **Generator training**: ``ConditionalGanTrainer`` iterations per second (G2-like, one-hot mask + edges -> RGB;
   as ``bench_generator_step.py``: G forward, D step, G step with LSGAN + feature matching) for both presets, AMP
   off and on (AMP on CUDA only).

Each timing runs warm-up calls first, synchronises CUDA around every timed call and reports the median.

    python benchmarks/bench_gpu.py                  # on a GPU: the full benchmark (minutes; not yet run on one)
    python benchmarks/bench_gpu.py --quick          # small sizes (also the default without CUDA): a smoke test

Without CUDA (or with ``--quick``) the sizes shrink to a smoke test that finishes in well under a minute: 64x64,
batches 1-2, the small preset, a ResNet-18 HoVer-Net (64 -> 48) instead of MONAI's 256 -> 164 HoVerNet; those
figures are not GPU figures. Writes ``gpu_benchmark.json`` and ``gpu_benchmark.md`` into ``--output-dir``
(default ``benchmarks/results``) and prints the tables.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from monai.apps.pathology.engines.utils import PrepareBatchHoVerNet
from monai.apps.pathology.losses import HoVerNetLoss
from monai.data import list_data_collate
from monai.engines import SupervisedTrainer

BENCHMARKS = Path(__file__).resolve().parent
REPO = BENCHMARKS.parent
sys.path[:0] = [str(BENCHMARKS), str(REPO)]

from _common import TimedMixer, environment, write_result  # noqa: E402
from bench_generator_step import IN_CHANNELS, OUT_CHANNELS, GanStep  # noqa: E402
from monai_dafgan.data import make_toy_sample  # noqa: E402
from monai_dafgan.data.conditions import mask_condition  # noqa: E402
from monai_dafgan.networks import DAFFGenerator  # noqa: E402
from monai_dafgan.points import CentroidLibrary, PointSetDataset  # noqa: E402
from monai_dafgan.segmentation import build_hovernet, hovernet_train_transforms  # noqa: E402
from monai_dafgan.synthesis import NucleiSynthesizer, shipped_library  # noqa: E402

NUM_TYPES = 4
MIXING_TARGET = 0.10  # issue 16: on-the-fly synthesis may cost at most 10 % over the same samples made beforehand


@dataclass
class Settings:
    """Sizes of one benchmark run: :func:`full_settings` on a GPU, :func:`quick_settings` as a smoke test."""

    mode: str
    size: int
    presets: tuple[str, ...]
    batch_sizes: tuple[int, ...]
    precisions: tuple[str, ...]
    warmup: int
    repeats: int
    hovernet_encoder: str
    patch_size: int
    out_size: int
    train_batch: int
    synthetic_ratio: float
    gan_presets: tuple[str, ...]
    gan_size: int
    gan_batch: int
    gan_amp: tuple[bool, ...]
    notes: list[str] = field(default_factory=list)


def full_settings(device: torch.device, synthetic_ratio: float | None) -> Settings:
    """The sizes the issue asks for: 256x256, both presets, fp32 and bf16, batches 1/8/32, the bundle's HoVer-Net."""
    return Settings(
        mode="full", size=256, presets=("small", "paper"), batch_sizes=(1, 8, 32), precisions=("fp32", "bf16"),
        warmup=3, repeats=10, hovernet_encoder="hovernet", patch_size=256, out_size=164, train_batch=16,
        synthetic_ratio=0.625 if synthetic_ratio is None else synthetic_ratio, gan_presets=("small", "paper"),
        gan_size=256, gan_batch=1,
        gan_amp=(False, True) if device.type == "cuda" else (False,),
    )


def quick_settings(device: torch.device, synthetic_ratio: float | None) -> Settings:
    """A smoke test of every code path in seconds: tiny sizes, the small preset, a ResNet-18 HoVer-Net."""
    cuda = device.type == "cuda"
    return Settings(
        mode="quick", size=64, presets=("small",), batch_sizes=(1, 2),
        precisions=("fp32", "bf16") if cuda else ("fp32",), warmup=1, repeats=2, hovernet_encoder="resnet18",
        patch_size=64, out_size=48, train_batch=2, synthetic_ratio=0.5 if synthetic_ratio is None else synthetic_ratio,
        gan_presets=("small",), gan_size=64, gan_batch=1, gan_amp=(False, True) if cuda else (False,),
    )


# ---------------------------------------------------------------------------------------------------- timing
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(run: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> float:
    """Median wall time of ``repeats`` calls of ``run`` after ``warmup`` untimed ones (CUDA synchronised)."""
    for _ in range(warmup):
        run()
    synchronize(device)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


# ---------------------------------------------------------------------------------------------------- 1. synthesis
def point_library() -> tuple[CentroidLibrary, str]:
    """The shipped centroid library (CoNSeP statistics), else one of toy tiles; and which one it is."""
    try:
        return shipped_library(), "shipped CoNSeP centroid library"
    except FileNotFoundError:
        samples = [make_toy_sample(512, seed=0, index=i) for i in range(1, 5)]
        return CentroidLibrary.from_samples(samples), "toy-tile centroid library"


def make_synthesizer(preset: str, device: torch.device, library: CentroidLibrary) -> tuple[NucleiSynthesizer, str]:
    """The synthesizer of ``preset`` and where its weights come from: the shipped small pair when it loads, else
    randomly initialised generators of the preset with the shipped bundle's point encoding."""
    if preset == "small":
        try:
            return NucleiSynthesizer.pretrained(device=device), "shipped"
        except (FileNotFoundError, ValueError):
            pass
    torch.manual_seed(0)
    g1 = DAFFGenerator.from_preset(preset, NUM_TYPES + 1, NUM_TYPES + 1, output_activation=None)
    g2 = DAFFGenerator.from_preset(preset, NUM_TYPES + 2, 3)
    synthesizer = NucleiSynthesizer(
        g1, g2, num_types=NUM_TYPES, device=device, point_encoding="ellipse", nucleus_shapes=library.nucleus_shapes
    )
    return synthesizer, "random"


def synthesis_row(
    synthesizer: NucleiSynthesizer, point_sets: Sequence[np.ndarray], size: int, batch: int, settings: Settings
) -> dict:
    """Throughput of one (preset, precision, batch size): the whole pipeline, the generators alone, each stage."""
    device = synthesizer.device
    synthesizer.batch_size = batch
    batch_sets = list(point_sets[:batch])
    pipeline = median_seconds(
        lambda: synthesizer.synthesize(batch_sets, size), device, settings.warmup, settings.repeats
    )

    stages: dict[str, list[float]] = {"encode": [], "g1": [], "recovery": [], "g2": []}
    for index in range(settings.warmup + settings.repeats):
        clock = time.perf_counter()
        maps, markers = synthesizer.encode_points(batch_sets, size)
        encoded = time.perf_counter()
        probabilities = synthesizer.predict_probabilities(maps)  # returns host memory: synchronised
        predicted = time.perf_counter()
        labels = synthesizer.recover(probabilities, markers, batch_sets)
        recovered = time.perf_counter()
        synthesizer.render_images(labels)
        rendered = time.perf_counter()
        if index >= settings.warmup:
            for name, seconds in zip(stages, (encoded - clock, predicted - encoded, recovered - predicted,
                                              rendered - recovered)):
                stages[name].append(seconds)

    point_maps = torch.from_numpy(maps).to(device)
    conditions = np.stack([mask_condition(item["label_inst"], item["label_type"], NUM_TYPES) for item in labels])
    conditions = torch.from_numpy(conditions).to(device)
    autocast = synthesizer.amp and device.type == "cuda"  # as NucleiSynthesizer does

    def generators_only():
        with torch.inference_mode(), torch.autocast(device.type, dtype=synthesizer.amp_dtype, enabled=autocast):
            synthesizer.points_to_mask(point_maps)
            synthesizer.mask_to_image(conditions)

    forward = median_seconds(generators_only, device, settings.warmup, settings.repeats)
    return {
        "batch_size": batch,
        "pipeline_samples_per_s": batch / pipeline,
        "generators_samples_per_s": batch / forward,
        "generator_share_of_pipeline": forward / pipeline,
        "ms_per_sample": {name: 1000 * statistics.median(values) / batch for name, values in stages.items()},
        "mean_nuclei_per_sample": float(np.mean([len(p) for p in batch_sets])),
    }


def synthesis_section(device: torch.device, settings: Settings, library: CentroidLibrary, library_name: str) -> dict:
    stream = PointSetDataset(library, max(settings.batch_sizes), settings.size, seed=0, draw_maps=False, min_nuclei=1)
    point_sets = [stream[i]["points"] for i in range(len(stream))]
    rows = []
    for preset in settings.presets:
        synthesizer, weights = make_synthesizer(preset, device, library)
        for precision in settings.precisions:
            synthesizer.amp, synthesizer.amp_dtype = precision == "bf16", torch.bfloat16
            for batch in settings.batch_sizes:
                row = synthesis_row(synthesizer, point_sets, settings.size, batch, settings)
                rows.append({"preset": preset, "weights": weights, "precision": precision, **row})
        del synthesizer
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return {"size": settings.size, "point_sets": library_name, "rows": rows}


# ---------------------------------------------------------------------------------------------------- 2. mixing
def real_batch(count: int, settings: Settings, chain) -> dict:
    """``count`` toy patches through the bundle's training chain, collated: what a DataLoader worker hands over."""
    chain.set_random_state(0)
    return list_data_collate([chain(make_toy_sample(settings.patch_size, seed=0, index=i)) for i in range(count)])


def mixing_section(device: torch.device, settings: Settings, library: CentroidLibrary) -> dict:
    """Step times of the bundle's HoVer-Net trainer: B real, B real + n synthetic (mixer), B + n real."""
    torch.manual_seed(0)
    network = build_hovernet(
        settings.hovernet_encoder, out_classes=NUM_TYPES + 1, patch_size=settings.patch_size, out_size=settings.out_size
    ).to(device)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-4, weight_decay=1e-5)
    loss = HoVerNetLoss(lambda_hv_mse=1.0)
    prepare = PrepareBatchHoVerNet(extra_keys=["label_type", "hover_label_inst"])
    synthesizer, weights = make_synthesizer("small", device, library)
    mixer = TimedMixer(
        synthesizer, library, fraction=settings.synthetic_ratio, mode="append",
        sample_transform=hovernet_train_transforms(settings.patch_size, settings.out_size, augment=True),
        prepare_batch=prepare, seed=0, spatial_size=settings.patch_size, num_types=NUM_TYPES,
    )
    amp = device.type == "cuda"

    def trainer(prepare_batch) -> SupervisedTrainer:
        engine = SupervisedTrainer(
            device=device, max_epochs=1, train_data_loader=[None], epoch_length=1, network=network,
            optimizer=optimizer, loss_function=loss, prepare_batch=prepare_batch, amp=amp, decollate=False,
        )
        engine.scaler = torch.amp.GradScaler("cuda") if amp else None  # Trainer.run makes it; we call _iteration
        return engine

    batch = settings.train_batch
    # the mixer carries rounding over batches: with a whole number per batch every mixed step is alike
    synthetic = round(batch * settings.synthetic_ratio)
    if synthetic != batch * settings.synthetic_ratio:
        settings.notes.append(f"{batch} x synthetic_ratio {settings.synthetic_ratio} is no whole number: mixed steps "
                              f"vary around {batch * settings.synthetic_ratio:.2f} synthetic samples")
    chain = hovernet_train_transforms(settings.patch_size, settings.out_size, augment=True)
    larger = real_batch(batch + synthetic, settings, chain)
    smaller = {key: value[:batch] for key, value in larger.items()}
    configurations = {
        f"{batch} real": (trainer(prepare), smaller),
        f"{batch} real + {synthetic} synthetic (mixer)": (trainer(mixer), smaller),
        f"{batch + synthetic} real": (trainer(prepare), larger),
    }
    seconds: dict[str, list[float]] = {name: [] for name in configurations}
    for index in range(settings.warmup + settings.repeats):
        for name, (engine, data) in configurations.items():  # round-robin: background load hits all alike
            synchronize(device)
            start = time.perf_counter()
            engine._iteration(engine, data)
            synchronize(device)
            if index >= settings.warmup:
                seconds[name].append(time.perf_counter() - start)
    step = {name: statistics.median(values) for name, values in seconds.items()}
    names = list(configurations)
    plain, mixed, same_samples = (step[name] for name in names)
    mixer_seconds = statistics.median(mixer.seconds[settings.warmup:])
    overhead = mixed / same_samples - 1
    return {
        "network": f"build_hovernet({settings.hovernet_encoder!r}) {settings.patch_size} -> {settings.out_size}",
        "amp": amp,
        "synthesizer_weights": weights,
        "synthetic_ratio": settings.synthetic_ratio,
        "mode": "append",
        "real_batch": batch,
        "synthetic_per_step": synthetic,
        "synthetic_per_mixed_step_mean": mixer.num_synthesized / len(mixer.seconds),
        "seconds_per_step": step,
        "samples_per_step": {names[0]: batch, names[1]: batch + synthetic, names[2]: batch + synthetic},
        "mixed_over_real_step": mixed / plain,
        "mixed_over_same_samples_real_step": mixed / same_samples,
        "on_the_fly_overhead": overhead,
        "mixer_seconds_per_step": mixer_seconds,
        "mixer_share_of_mixed_step": mixer_seconds / mixed,
        "target_overhead": MIXING_TARGET,
        "target_met": overhead <= MIXING_TARGET,
    }


# ---------------------------------------------------------------------------------------------------- 3. GAN training
def generator_training_section(device: torch.device, settings: Settings) -> dict:
    """``ConditionalGanTrainer`` iterations per second, DAFF-GAN generator (G2-like channels), per preset and AMP."""
    generator = torch.Generator().manual_seed(0)
    size, batch = settings.gan_size, settings.gan_batch
    labels = torch.randint(0, IN_CHANNELS - 1, (batch, size, size), generator=generator)
    condition = torch.nn.functional.one_hot(labels, IN_CHANNELS).permute(0, 3, 1, 2).float().to(device)
    real = (torch.rand(batch, OUT_CHANNELS, size, size, generator=generator) * 2 - 1).to(device)
    rows = []
    for preset in settings.gan_presets:
        for amp in settings.gan_amp:
            step = GanStep(preset, baseline=False, device=device, amp=amp)
            seconds = median_seconds(lambda: step(condition, real), device, settings.warmup, settings.repeats)
            rows.append({"preset": preset, "amp": amp, "ms_per_iteration": 1000 * seconds,
                         "iterations_per_s": 1 / seconds})
            del step
    return {"size": size, "batch": batch, "generator": "DAFFGenerator (attention + long skips), G2 channels",
            "rows": rows}


# ---------------------------------------------------------------------------------------------------- output
def markdown(result: dict) -> str:
    """The three tables of ``result`` in Markdown, headed by what was measured where."""
    env, settings = result["environment"], result["settings"]
    lines = [
        "# GPU benchmark",
        "",
        f"`{result['command']}`: {settings['mode']} mode on {env['device']} (torch {env['torch']}, "
        f"{env['threads']} CPU threads, load {env['load_average_before'][0]:.1f} before); medians of "
        f"{settings['repeats']} timed runs after {settings['warmup']} warm-up runs.",
    ]
    if settings["mode"] == "quick":
        lines += ["", "**Quick mode: a smoke test at tiny sizes, not GPU figures.**"]
    lines += [f"- {note}" for note in settings["notes"]]
    synthesis = result["synthesis"]
    lines += [
        "", f"## 1. Synthesis, {synthesis['size']}x{synthesis['size']} ({synthesis['point_sets']})", "",
        "| preset | weights | precision | batch | pipeline samples/s | G1+G2 forward samples/s | forward share "
        "| encode ms | G1 ms | recovery ms | G2 ms |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in synthesis["rows"]:
        ms = row["ms_per_sample"]
        lines.append(
            f"| {row['preset']} | {row['weights']} | {row['precision']} | {row['batch_size']} "
            f"| {row['pipeline_samples_per_s']:.2f} | {row['generators_samples_per_s']:.2f} "
            f"| {row['generator_share_of_pipeline']:.0%} | {ms['encode']:.1f} | {ms['g1']:.1f} "
            f"| {ms['recovery']:.1f} | {ms['g2']:.1f} |"
        )
    lines += ["", "Stage times are per sample; G1 and G2 include the host transfers and G2 the CPU-built "
              "condition; forward share = G1+G2 forward alone / whole pipeline (the rest is CPU work)."]
    mixing = result["mixing"]
    lines += [
        "", f"## 2. On-the-fly mixing, {mixing['network']}, AMP {'on' if mixing['amp'] else 'off'}", "",
        "| step | samples | s/step | vs real-only step | per sample vs real-only |", "|---|---:|---:|---:|---:|",
    ]
    names = list(mixing["seconds_per_step"])
    base = mixing["seconds_per_step"][names[0]] / mixing["samples_per_step"][names[0]]
    for name in names:
        seconds, samples = mixing["seconds_per_step"][name], mixing["samples_per_step"][name]
        lines.append(f"| {name} | {samples} | {seconds:.3f} | {seconds / mixing['seconds_per_step'][names[0]]:.2f}x "
                     f"| {seconds / samples / base:.2f}x |")
    verdict = "met" if mixing["target_met"] else "not met"
    lines += [
        "",
        f"Mixer (synthetic_ratio {mixing['synthetic_ratio']}, append, {mixing['synthesizer_weights']} small "
        f"generators): {mixing['mixer_seconds_per_step']:.3f} s per step, {mixing['mixer_share_of_mixed_step']:.0%} "
        f"of the mixed step. On-the-fly overhead against the same number of real samples: "
        f"**{mixing['on_the_fly_overhead']:+.1%}** (target <= {mixing['target_overhead']:.0%}: {verdict}).",
    ]
    gan = result["generator_training"]
    lines += [
        "", f"## 3. Generator training, ConditionalGanTrainer, {gan['size']}x{gan['size']}, batch {gan['batch']}", "",
        "| preset | AMP | ms/iteration | iterations/s |", "|---|---|---:|---:|",
    ]
    for row in gan["rows"]:
        lines.append(f"| {row['preset']} | {'on' if row['amp'] else 'off'} | {row['ms_per_iteration']:.1f} "
                     f"| {row['iterations_per_s']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the benchmark, write the JSON and Markdown results, print the tables; returns the result."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the default when CUDA is unavailable)")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--output-dir", type=Path, default=BENCHMARKS / "results")
    parser.add_argument("--synthetic-ratio", type=float, default=None,
                        help="synthetic samples per real one (default 0.625, the bundle's documented real + DAFF-GAN "
                        "run; 0.5 in quick mode, one synthetic sample per batch of 2)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    quick = args.quick or device.type != "cuda"
    settings = (quick_settings if quick else full_settings)(device, args.synthetic_ratio)
    if quick and not args.quick:
        settings.notes.append("no CUDA device: quick mode (tiny sizes), not GPU figures")
        print(f"{settings.notes[-1]}; on a GPU: python benchmarks/bench_gpu.py")

    load_before = os.getloadavg()
    started = time.perf_counter()
    library, library_name = point_library()
    result = {
        "command": " ".join(["python benchmarks/bench_gpu.py", *(argv if argv is not None else sys.argv[1:])]).strip(),
        "synthesis": synthesis_section(device, settings, library, library_name),
        "mixing": mixing_section(device, settings, library),
        "generator_training": generator_training_section(device, settings),
    }
    result["settings"] = asdict(settings)  # after the sections, which add notes
    result["environment"] = {
        **environment(load_before, device),
        "cuda": torch.version.cuda,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,  # fp32 convolutions on TF32 cores when True
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
    }
    result["total_benchmark_s"] = time.perf_counter() - started
    table = markdown(result)
    print(table)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    write_result(result, args.output_dir / "gpu_benchmark.json")
    (args.output_dir / "gpu_benchmark.md").write_text(table)
    return result


if __name__ == "__main__":
    main()
