"""Speed of the three-stage synthesis and the cost of batch-level mixing, side by side in one run.

1. Synthetic 256x256 samples per second at batch sizes 1, 4 and 8, split into G1 (points -> class probabilities),
   instance recovery (watershed, CPU) and G2 (mask -> image): on the CPU with the ``small`` preset and, when CUDA is
   available, on the GPU with the ``paper`` preset and bf16 autocast. Random weights (speed does not depend on them).
2. The overhead of :class:`~monai_dafgan.synthesis.SyntheticBatchMixer` on a MONAI ``SupervisedTrainer`` step:
   ``HoVerNet(mode="fast", out_classes=5)`` and a small ``BasicUNet`` (``--segmenter`` picks) trained on 256x256
   toy patches with a HoVer-Net label chain, batch 2, without mixing, with ``mode="replace"`` (1 of 2 samples
   synthetic: same batch size, the overhead is synthesis + the label chain) and with ``mode="append"`` (+1
   synthetic sample: also a larger batch). Step time = the trainer's iteration (``prepare_batch`` included), the
   first (warm-up) iteration of each trainer dropped, configurations run round-robin, median of the rest. The
   mixer's own time per step (synthesis + label chain + collate + merge) is also timed directly, since the
   difference of two step times drowns in the noise of a shared machine when the step is slow.

    python benchmarks/bench_synthesis_speed.py --threads 1          # ~10 min on 2 busy CPU cores
    python benchmarks/bench_synthesis_speed.py --segmenter unet --steps 3

Prints tables with ratios and writes benchmarks/results/synthesis_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Events
from monai.apps.pathology.engines.utils import PrepareBatchHoVerNet
from monai.apps.pathology.losses import HoVerNetLoss
from monai.data import DataLoader, Dataset
from monai.engines import SupervisedTrainer, default_prepare_batch
from monai.losses import DiceCELoss
from monai.networks.nets import BasicUNet, HoVerNet
from monai.transforms import (
    AsDiscreted,
    CenterSpatialCropd,
    Compose,
    ComputeHoVerMapsd,
    CopyItemsd,
    EnsureTyped,
    Lambdad,
    ScaleIntensityRanged,
    SelectItemsd,
)

from monai_dafgan.data import make_toy_sample
from monai_dafgan.networks import DAFFGenerator
from monai_dafgan.points import CentroidLibrary, PointSetDataset
from monai_dafgan.synthesis import NucleiSynthesizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import TimedMixer  # noqa: E402

SIZE = (256, 256)
HOVERNET_OUTPUT = 164  # HoVerNet fast mode predicts the central 164x164 of a 256x256 input


def make_synthesizer(preset: str, device: str, batch_size: int) -> NucleiSynthesizer:
    torch.manual_seed(0)
    g1 = DAFFGenerator.from_preset(preset, 5, 5, output_activation=None)
    g2 = DAFFGenerator.from_preset(preset, 6, 3)
    return NucleiSynthesizer(g1, g2, device=device, batch_size=batch_size)


def timed(fn):
    start = time.perf_counter()
    result = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return result, time.perf_counter() - start


def gflop_per_sample(network: torch.nn.Module, device: str) -> float:
    """Floating-point operations (multiply and add counted apart) of one no-grad forward of a 256x256 sample."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, network.in_channels, *SIZE, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        network(x)
    return counter.get_total_flops() / 1e9


def synthesis_rows(synthesizer: NucleiSynthesizer, point_sets: list[np.ndarray], batch_sizes, repeats: int) -> list:
    """Per batch size: seconds per sample of each stage (best of ``repeats`` batches), samples per second, and the
    GFLOP/s each generator reaches (what bounds synthesis speed: compare with the processor's peak)."""
    rows = []
    work = {"g1": gflop_per_sample(synthesizer.points_to_mask, synthesizer.device.type),
            "g2": gflop_per_sample(synthesizer.mask_to_image, synthesizer.device.type)}  # fmt: skip
    synthesizer.synthesize(point_sets[:1], SIZE)  # warm-up (allocator, oneDNN/cuDNN plans)
    for batch_size in batch_sizes:
        synthesizer.batch_size = batch_size
        best = {"g1": np.inf, "recovery": np.inf, "g2": np.inf}
        for repeat in range(repeats):
            batch = point_sets[repeat * batch_size : (repeat + 1) * batch_size]
            maps, markers = synthesizer.encode_points(batch, SIZE)
            probabilities, g1 = timed(lambda: synthesizer.predict_probabilities(maps))
            labels, recovery = timed(lambda: synthesizer.recover(probabilities, markers, batch))
            _, g2 = timed(lambda: synthesizer.render_images(labels))
            for key, seconds in (("g1", g1), ("recovery", recovery), ("g2", g2)):
                best[key] = min(best[key], seconds / batch_size)
        total = sum(best.values())
        per_stage = {f"{k}_s_per_sample": v for k, v in best.items()}
        rates = {f"{k}_gflop_per_s": work[k] / best[k] for k in work}
        rows.append({"batch_size": batch_size, **per_stage, "samples_per_s": 1 / total, **rates,
                     "gflop_per_sample": work})  # fmt: skip
    return rows


def hovernet_chain() -> Compose:
    """The post-load part of the model-zoo HoVer-Net training chain (no random augmentation, for timing)."""
    labels = ["label", "label_type", "hover_label_inst"]
    return Compose([
        ScaleIntensityRanged("image", 0, 255, 0, 1),
        ComputeHoVerMapsd(keys="label_inst"),
        CopyItemsd("label_inst", names="label"),
        Lambdad("label", lambda x: (x > 0).astype(np.int32)),
        AsDiscreted("label_type", to_onehot=5),
        AsDiscreted("label", to_onehot=2),
        CenterSpatialCropd(labels, roi_size=HOVERNET_OUTPUT),
        SelectItemsd(["image", *labels]),
        EnsureTyped(["image", *labels], dtype=torch.float32, track_meta=False),
    ])


def unet_chain() -> Compose:
    return Compose([
        ScaleIntensityRanged("image", 0, 255, 0, 1),
        CopyItemsd("label_inst", names="label"),
        Lambdad("label", lambda x: (x > 0).astype(np.float32)),
        SelectItemsd(["image", "label"]),
        EnsureTyped(["image", "label"], dtype=torch.float32, track_meta=False),
    ])


def segmenter_setup(name: str):
    """(network, loss, chain, prepare_batch) of the segmenter to train."""
    if name == "hovernet":
        network = HoVerNet(mode="fast", out_classes=5)
        prepare = PrepareBatchHoVerNet(extra_keys=["label_type", "hover_label_inst"])
        return network, HoVerNetLoss(lambda_hv_mse=1.0), hovernet_chain(), prepare
    network = BasicUNet(spatial_dims=2, in_channels=3, out_channels=1, features=(16, 16, 32, 64, 128, 16))
    return network, DiceCELoss(sigmoid=True), unet_chain(), default_prepare_batch


def step_durations(setup, device: str, real: list[dict], steps: int, mixer_kwargs: dict | None, synthesizer, library):
    """``(step seconds, mixer seconds)`` of ``steps`` SupervisedTrainer iterations at batch size 2, after one warm-up
    iteration; mixer seconds are 0 without a mixer."""
    network, loss, chain, prepare_batch = setup
    mixer = None
    if mixer_kwargs is not None:
        mixer = TimedMixer(synthesizer, library, sample_transform=chain, prepare_batch=prepare_batch, **mixer_kwargs)
    loader = DataLoader(Dataset(real[: 2 * (steps + 1)], chain), batch_size=2, shuffle=False, num_workers=0)
    trainer = SupervisedTrainer(
        device=torch.device(device),
        max_epochs=1,
        train_data_loader=loader,
        network=network,
        optimizer=torch.optim.Adam(network.parameters(), 1e-4),
        loss_function=loss,
        prepare_batch=mixer or prepare_batch,
        decollate=False,
    )
    durations: list[float] = []

    def stop_clock(_):
        durations[-1] += time.perf_counter()

    trainer.add_event_handler(Events.ITERATION_STARTED, lambda _: durations.append(-time.perf_counter()))
    trainer.add_event_handler(Events.ITERATION_COMPLETED, stop_clock)
    trainer.run()
    return durations[1:], (mixer.seconds[1:] if mixer else [0.0] * steps)


def trainer_overhead(segmenter: str, device: str, preset: str, real, args, configs: dict, synthesizer, library) -> dict:
    """Step times of each mixing configuration for one segmenter; prints a table, returns the JSON record."""
    setup = segmenter_setup(segmenter)
    setup[0].to(device)
    durations: dict[str, list[float]] = {name: [] for name in configs}
    mixing: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(args.rounds):  # round-robin, so that load from other jobs hits every configuration alike
        for name, kwargs in configs.items():
            step, mix = step_durations(setup, device, real, args.steps, kwargs, synthesizer, library)
            durations[name] += step
            mixing[name] += mix
    steps = {name: float(np.median(values)) for name, values in durations.items()}
    mixer_seconds = {name: float(np.median(values)) for name, values in mixing.items()}
    base = steps["no mixing"]
    print(f"\nSupervisedTrainer step, {segmenter} on {device}, batch 2 of 256x256, synthesizer preset {preset}")
    print(f"{'configuration':<38}{'s/step':>9}{'vs no mixing':>14}{'mixer s/step':>14}{'mixer share':>13}")
    for name, seconds in steps.items():
        share = mixer_seconds[name] / seconds
        print(f"{name:<38}{seconds:>9.2f}{seconds / base:>13.2f}x{mixer_seconds[name]:>14.2f}{share:>12.1%}")
    return {
        "device": device, "batch_size": 2, "synthesizer_preset": preset,
        "steps_per_configuration": len(durations["no mixing"]),
        "seconds_per_step": steps, "ratio_to_no_mixing": {k: v / base for k, v in steps.items()},
        "mixer_seconds_per_step": mixer_seconds,
        "mixer_share_of_step": {k: mixer_seconds[k] / steps[k] for k in steps},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--segmenter", choices=("hovernet", "unet"), nargs="+", default=["hovernet", "unet"])
    parser.add_argument("--steps", type=int, default=2, help="timed trainer iterations per configuration")
    parser.add_argument("--rounds", type=int, default=2, help="round-robin rounds over the trainer configurations")
    parser.add_argument("--repeats", type=int, default=2, help="timed batches per synthesis batch size (best kept)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 8])
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    library = CentroidLibrary.from_samples([make_toy_sample(512, seed=0, index=i) for i in range(1, 5)])
    max_batch = max(args.batch_sizes)
    point_stream = PointSetDataset(library, max_batch * args.repeats + 1, SIZE, seed=0, draw_maps=False)
    point_sets = [point_stream[i]["points"] for i in range(len(point_stream))]
    devices = [("cpu", "small")] + ([("cuda", "paper")] if torch.cuda.is_available() else [])

    synthesis = {}
    for device, preset in devices:
        synthesizer = make_synthesizer(preset, device, max_batch)
        synthesis[f"{device}/{preset}"] = synthesis_rows(synthesizer, point_sets, args.batch_sizes, args.repeats)
    nuclei = np.mean([len(p) for p in point_sets])
    print(f"\nSynthesis of 256x256 samples (toy library, {nuclei:.0f} nuclei per sample), "
          f"{torch.get_num_threads()} CPU threads; seconds per sample")
    print(f"{'device/preset':<14}{'batch':>6}{'G1':>9}{'recovery':>10}{'G2':>9}{'samples/s':>11}{'vs batch 1':>12}"
          f"{'G1 GFLOP/s':>12}{'G2 GFLOP/s':>12}")
    for name, rows in synthesis.items():
        for row in rows:
            speedup = row["samples_per_s"] / rows[0]["samples_per_s"]
            print(f"{name:<14}{row['batch_size']:>6}{row['g1_s_per_sample']:>9.3f}{row['recovery_s_per_sample']:>10.4f}"
                  f"{row['g2_s_per_sample']:>9.3f}{row['samples_per_s']:>11.2f}{speedup:>11.2f}x"
                  f"{row['g1_gflop_per_s']:>12.1f}{row['g2_gflop_per_s']:>12.1f}")
        work = rows[0]["gflop_per_sample"]
        print(f"{name}: G1 {work['g1']:.2f} + G2 {work['g2']:.2f} GFLOP per sample")

    device, preset = devices[-1]
    synthesizer = make_synthesizer(preset, device, 8)
    real = [make_toy_sample(256, seed=0, index=i) for i in range(2 * (args.steps + 1))]
    configs = {
        "no mixing": None,
        "mixer replace (1 of 2 synthetic)": {"fraction": 0.5, "mode": "replace"},
        "mixer append (2 real + 1 synthetic)": {"fraction": 0.5, "mode": "append"},
    }
    trainer_steps = {segmenter: trainer_overhead(segmenter, device, preset, real, args, configs, synthesizer, library)
                     for segmenter in args.segmenter}

    command = "python benchmarks/bench_synthesis_speed.py " + " ".join(sys.argv[1:])
    out = Path(__file__).parent / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "synthesis_speed.json").write_text(json.dumps({
        "command": command.strip(),
        "environment": {
            "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "python": platform.python_version(),
        },
        "synthesis_256": synthesis,
        "trainer_step": trainer_steps,
    }, indent=2))


if __name__ == "__main__":
    main()
