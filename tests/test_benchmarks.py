"""The benchmark scripts that are meant to run elsewhere (on a GPU) still run: their quick CPU mode, end to end."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _load_script(name: str, monkeypatch):
    """Import ``benchmarks/<name>.py`` as a module (the scripts put their folder on sys.path, undone afterwards)."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_gpu_benchmark_quick_cpu_mode(tmp_path, monkeypatch, single_thread):
    bench_gpu = _load_script("bench_gpu", monkeypatch)
    bench_gpu.main(["--quick", "--device", "cpu", "--output-dir", str(tmp_path)])

    result = json.loads((tmp_path / "gpu_benchmark.json").read_text())
    assert result["settings"]["mode"] == "quick"
    rows = result["synthesis"]["rows"]
    assert rows and all(row["pipeline_samples_per_s"] > 0 and row["generators_samples_per_s"] > 0 for row in rows)
    assert all(ms > 0 for row in rows for ms in row["ms_per_sample"].values())
    mixing = result["mixing"]
    assert len(mixing["seconds_per_step"]) == 3 and all(s > 0 for s in mixing["seconds_per_step"].values())
    assert mixing["synthetic_per_step"] >= 1 and mixing["mixer_seconds_per_step"] > 0
    gan = result["generator_training"]["rows"]
    assert gan and all(row["iterations_per_s"] > 0 for row in gan)

    table = (tmp_path / "gpu_benchmark.md").read_text()
    for heading in ("## 1. Synthesis", "## 2. On-the-fly mixing", "## 3. Generator training"):
        assert heading in table
    assert "not GPU figures" in table
