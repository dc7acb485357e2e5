"""Shared by the benchmark scripts: the environment a result was measured in, writing the result, and a timed
synthetic-batch mixer."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import torch

from monai_dafgan.synthesis import SyntheticBatchMixer

REPO = Path(__file__).resolve().parents[1]

#: glibc malloc without an mmap (and its page faults) per large tensor, and without returning freed memory to the OS
GLIBC_TUNED = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "68719476736"}


def environment(load_before: tuple[float, float, float], device: torch.device | None = None) -> dict:
    """Threads, CPUs, device, load averages before/after, versions: what a reader needs to weigh the numbers."""
    if device is not None and device.type == "cuda":
        device_name = torch.cuda.get_device_name(device)
    elif device is None and torch.cuda.is_available():
        device_name = torch.cuda.get_device_name(0)
    else:
        device_name = "cpu"
    return dict(
        device=device_name,
        threads=torch.get_num_threads(),
        cpu_count=os.cpu_count(),
        load_average_before=load_before,
        load_average_after=os.getloadavg(),
        torch=torch.__version__,
        python=platform.python_version(),
        platform=platform.platform(),
    )


def write_result(result: dict, output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {output.relative_to(REPO) if output.is_relative_to(REPO) else output}")


class TimedMixer(SyntheticBatchMixer):
    """A SyntheticBatchMixer that records the seconds of each ``mix`` (synthesis, label chain, collate, merge),
    CUDA synchronised."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seconds: list[float] = []

    def mix(self, batchdata, device=None):
        start = time.perf_counter()
        mixed = super().mix(batchdata, device)
        if self.synthesizer.device.type == "cuda":
            torch.cuda.synchronize(self.synthesizer.device)
        self.seconds.append(time.perf_counter() - start)
        return mixed
