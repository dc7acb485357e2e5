"""Benchmark scripts that are not run by hand often still run: the GPU benchmark's quick CPU mode and the sharded
synthesis benchmark at a few samples, the generator-against-pix2pixHD benchmark at toy sizes, and the synthesis
fidelity benchmark on real CoNSeP tiles and the CPU bf16 benchmark with the shipped generators, end to end."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import torch

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


def test_sharded_synthesis_benchmark_runs_and_checks_the_shards(tmp_path, monkeypatch):
    bench = _load_script("bench_sharded_synthesis", monkeypatch)
    output = tmp_path / "sharded.json"
    result = bench.main(["--num-samples", "3", "--cores", "2", "--rounds", "1", "--batch-size", "2",
                         "--output", str(output)])  # fmt: skip
    assert json.loads(output.read_text())["rows"] == result["rows"]
    assert [row["configuration"] for row in result["rows"]] == [
        "1 process x 1 thread", "1 process x 2 threads", "2 shards x 1 thread"]  # fmt: skip
    assert all(row["samples_per_s"] > 0 for row in result["rows"])
    assert result["sharded_files_identical_to_one_thread_process"] == {"2 shards x 1 thread": True}


def test_generator_reference_benchmark_matches_pix2pixhd_and_times_both_allocators(tmp_path, monkeypatch):
    bench = _load_script("bench_generator_reference", monkeypatch)
    # the package's GlobalGenerator takes pix2pixHD's weights in order and gives its output (raises otherwise)
    package, reference = bench.matched_pair(ngf=8, n_downsampling=2, n_blocks=2)
    x = torch.randn(2, bench.IN_CHANNELS, 32, 48)
    with torch.no_grad():
        torch.testing.assert_close(package(x), reference(x))

    output = tmp_path / "reference.json"
    result = bench.main(["--repeats", "1", "--config", "8:2:1:32", "--output", str(output)])
    assert json.loads(output.read_text())["rows"] == result["rows"]
    assert [row["mode"] for row in result["rows"]] == ["no-grad forward", "forward + backward"]
    for row in result["rows"]:
        for allocator in ("glibc default", "glibc tuned"):
            assert row[allocator]["package"]["cpu_s"] > 0 and row[allocator]["package_over_reference"] > 0


def test_synthesis_fidelity_benchmark_on_real_tiles_with_the_shipped_generators(
    consep_dir, tmp_path, monkeypatch, single_thread
):
    from monai_dafgan.segmentation import ResNetHoVerNet

    bench = _load_script("bench_synthesis_fidelity", monkeypatch)
    segmenter = tmp_path / "segmenter.pt"  # untrained: what is checked is that section 5 runs and is reported
    torch.manual_seed(0)
    torch.save(ResNetHoVerNet("resnet18").state_dict(), segmenter)
    models = REPO / "bundles" / "dafgan_nuclei_synthesis" / "models"
    monkeypatch.setenv("CONSEP_DIR", str(consep_dir))
    monkeypatch.setattr(sys, "argv", [
        "bench_synthesis_fidelity.py", "--points-to-mask", str(models / "points_to_mask.pt"),
        "--mask-to-image", str(models / "mask_to_image.pt"), "--point-encoding", "ellipse", "--radius", "2",
        "--num-samples", "4", "--num-segmented", "2", "--segmenter", str(segmenter), "--segmenter-note", "untrained",
        "--out", str(tmp_path / "out"), "--tag", "t",
    ])  # fmt: skip
    assert bench.main() == 0

    result = json.loads((tmp_path / "out" / "synthesis_fidelity_t.json").read_text())
    assert result["holdout_tiles"] == list(bench.HOLDOUT) and result["num_synthetic"] == 4
    assert {row["section"] for row in result["rows"]} >= {"1 morphology", "3 nuclei per patch"}
    assert 0 < result["recovery"]["all"]["requested"] and result["synthetic_per_s"] > 0
    scores = result["segmentation_consistency"]["scores"]
    assert set(scores) == {"synthetic", "heldout", "library"}
    assert all(0 <= scores[source]["dice"] <= 1 for source in scores)
    report = (tmp_path / "out" / "synthesis_fidelity_t.md").read_text()
    assert "**Segmentation consistency**: a HoVer-Net trained on real data only (untrained)" in report
    assert "| 5 segmentation consistency | dice of a real-only HoVer-Net" in report and "pending" not in report
    assert (tmp_path / "out" / "synthesis_preview_t.png").stat().st_size == result["preview"]["bytes"] > 0


def test_cpu_bf16_benchmark_times_both_precisions_and_compares_their_samples(tmp_path, monkeypatch):
    bench = _load_script("bench_cpu_bf16", monkeypatch)
    output = tmp_path / "bf16.json"
    result = bench.main(["--num-samples", "2", "--size", "64", "--rounds", "1", "--threads", "1", "--steps", "1",
                         "--train-batch", "1", "--output", str(output)])  # fmt: skip
    assert json.loads(output.read_text())["rows"] == result["rows"]
    (row,) = result["rows"]
    assert row["threads"] == 1 and min(row["samples_per_s"].values()) > 0
    assert min(row["training_step_s"].values()) > 0 and row["training_fp32_over_bf16"] > 0
    same = result["agreement"]
    assert same["samples_with_the_same_instance_count"] == 1.0 and same["foreground_dice"] > 0.95
    assert 0 < same["image_max_abs_difference"] and same["image_mean_abs_difference"] < 5
