"""The generator bundles as a user runs them: MONAI bundle CLI training (and resume), inference, model-zoo checks
(metadata schema, properties, network I/O, TorchScript export), 2-process distributed training on CPU, and the
synthesis bundle writing samples, also sharded over 2 torchrun processes."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigWorkflow, ckpt_export, verify_metadata, verify_net_in_out

from monai_dafgan.data import make_toy_consep

REPO = Path(__file__).resolve().parents[1]
SCHEMA = Path(__file__).parent / "data" / "meta_schema_20240725.json"
BUNDLES = ("dafgan_points2mask", "dafgan_mask2image")
FAST = ["--epochs", "1", "--decay_epochs", "0", "--window", "128", "--patch_size", "64", "--num_workers", "0"]


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("toy") / "consep"
    make_toy_consep(root, num_tiles=2, size=128, seed=0)
    return root


def _copy_bundle(name: str, tmp_path: Path) -> Path:
    bundle = tmp_path / name
    shutil.copytree(REPO / "bundles" / name, bundle, ignore=shutil.ignore_patterns("runs", "eval", "*.pt", "*.ts", "*.npz"))
    return bundle


def _bundle_cli(bundle: Path, *args: str, runner=(sys.executable, "-m")) -> subprocess.CompletedProcess:
    result = subprocess.run([*runner, "monai.bundle", *args], cwd=bundle, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.mark.parametrize("name", BUNDLES)
def test_bundle_trains_resumes_infers_and_exports(name, toy_dir, tmp_path, monkeypatch):
    bundle = _copy_bundle(name, tmp_path)
    _bundle_cli(bundle, "run", "training", "--config_file", "configs/train.yaml", "--dataset_dir", str(toy_dir), *FAST)
    assert (bundle / "models" / "model.pt").is_file()
    assert torch.load(bundle / "runs" / "checkpoint.pt", weights_only=False)["epoch"] == 1
    assert (bundle / "runs" / "grids" / "epoch0001.png").is_file()

    # a second run with more epochs continues where the first stopped
    log = _bundle_cli(bundle, "run", "training", "--config_file", "configs/train.yaml", "--dataset_dir", str(toy_dir), *FAST[:1], "2", *FAST[2:])
    assert "resumed from" in log.stdout + log.stderr
    saved = torch.load(bundle / "runs" / "checkpoint.pt", weights_only=False)
    assert saved["epoch"] == 2 and saved["iteration"] == 4  # 2 crops of 128 px per epoch, batch 1

    _bundle_cli(bundle, "run", "--config_file", "configs/inference.yaml", "--dataset_dir", str(toy_dir), "--split", "Train")
    assert sorted(p.name for p in (bundle / "eval").iterdir()) == ["toy_1.png", "toy_2.png"]

    monkeypatch.chdir(bundle)
    meta, inference = "configs/metadata.json", "configs/inference.yaml"
    verify_metadata(meta_file=meta, filepath=str(SCHEMA), hash_val=hashlib.md5(SCHEMA.read_bytes()).hexdigest())
    verify_net_in_out(net_id="network_def", meta_file=meta, config_file=inference, device="cpu")
    ckpt_export(net_id="network_def", filepath="models/model.ts", ckpt_file="models/model.pt", meta_file=meta, config_file=inference)
    scripted = torch.jit.load("models/model.ts")
    in_channels = 5 if name == "dafgan_points2mask" else 6
    assert scripted(torch.rand(1, in_channels, 48, 80)).shape[-2:] == (48, 80)  # any size: padded and cropped inside


@pytest.mark.parametrize("name", BUNDLES)
def test_bundle_properties(name, toy_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the configs' bundle_root is '.': their run folders land here, not in the repo
    bundle = REPO / "bundles" / name
    for config, kind in (("train.yaml", "train"), ("inference.yaml", "infer")):
        workflow = ConfigWorkflow(config_file=str(bundle / "configs" / config), workflow_type=kind, dataset_dir=str(toy_dir), split="Train")
        workflow.initialize()
        assert workflow.check_properties() in (None, []), config


def test_inference_without_weights_is_a_clear_error(toy_dir, tmp_path):
    bundle = _copy_bundle("dafgan_mask2image", tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/inference.yaml", "--dataset_dir", str(toy_dir), "--split", "Train"],
        cwd=bundle, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode != 0
    assert "models/model.pt not found. Train the bundle first" in result.stderr


def test_sharded_synthesis_on_two_cpu_processes_equals_one_process(toy_dir, tmp_path, monkeypatch):
    """torchrun ranks write their blocks of one folder at the same time; the last merges the manifests; the files
    are a single process's (at one thread, as torchrun sets for each rank)."""
    import scipy.io

    from monai_dafgan.data import read_manifest
    from monai_dafgan.networks import DAFFGenerator

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    bundle = _copy_bundle("dafgan_nuclei_synthesis", tmp_path)
    torch.manual_seed(0)
    torch.save(DAFFGenerator.from_preset("small", 5, 5, output_activation=None).state_dict(), bundle / "models" / "points_to_mask.pt")
    torch.save(DAFFGenerator.from_preset("small", 6, 3).state_dict(), bundle / "models" / "mask_to_image.pt")
    common = ["--dataset_dir", str(toy_dir), "--num_samples", "5", "--spatial_size", "64", "--batch_size", "2", "--device", "$torch.device('cpu')"]
    _bundle_cli(bundle, "run", "--config_file", "configs/inference.yaml", *common, "--output_dir", str(tmp_path / "one"))
    torchrun = (sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "-m")
    _bundle_cli(bundle, "run", "--config_file", "['configs/inference.yaml','configs/multi_gpu_inference.yaml']", *common,
                "--output_dir", str(tmp_path / "two"), runner=torchrun)
    one, two = read_manifest(tmp_path / "one"), read_manifest(tmp_path / "two")
    assert two["complete"] and two["settings"] == one["settings"] and not list((tmp_path / "two").glob("manifest.shard-*"))
    assert sorted(w["shard"] for w in two["written_by"]) == [[0, 2], [1, 2]]
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.png"))
    assert len(files) == 6 and files == sorted(p.relative_to(tmp_path / "two") for p in (tmp_path / "two").rglob("*.png"))
    for name in files:  # samples and preview, byte for byte
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    for name in (tmp_path / "one" / "Train" / "Labels").iterdir():
        a, b = scipy.io.loadmat(name), scipy.io.loadmat(tmp_path / "two" / "Train" / "Labels" / name.name)
        assert all((a[k] == b[k]).all() for k in ("inst_map", "type_map", "inst_type")), name


def test_distributed_training_on_two_cpu_processes(toy_dir, tmp_path):
    bundle = _copy_bundle("dafgan_mask2image", tmp_path)
    torchrun = (sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "-m")
    _bundle_cli(
        bundle, "run", "training", "--config_file", "['configs/train.yaml','configs/multi_gpu_train.yaml']",
        "--dataset_dir", str(toy_dir), *FAST, runner=torchrun,
    )
    assert (bundle / "models" / "model.pt").is_file()
    assert len([p for p in (bundle / "runs").iterdir() if p.name.startswith("events")]) >= 1
    # 2 tiles x 1 crop of 128 px, shared by 2 ranks: one iteration each (a single process makes two)
    assert torch.load(bundle / "runs" / "checkpoint.pt", weights_only=False)["iteration"] == 1


def test_synthesis_bundle_writes_consep_samples(toy_dir, tmp_path):
    from monai_dafgan.data import check_sample, load_consep
    from monai_dafgan.networks import DAFFGenerator

    bundle = _copy_bundle("dafgan_nuclei_synthesis", tmp_path)
    torch.save(DAFFGenerator.from_preset("small", 5, 5, output_activation=None).state_dict(), bundle / "models" / "points_to_mask.pt")
    torch.save(DAFFGenerator.from_preset("small", 6, 3).state_dict(), bundle / "models" / "mask_to_image.pt")
    out = tmp_path / "synthetic"
    _bundle_cli(bundle, "run", "--config_file", "configs/inference.yaml", "--dataset_dir", str(toy_dir), "--num_samples", "3",
                "--spatial_size", "64", "--output_dir", str(out))
    samples = load_consep(out, "Train")
    assert [s["name"] for s in samples] == ["synthetic_1", "synthetic_2", "synthetic_3"]
    for sample in samples:
        check_sample(sample)
    assert (out / "preview.png").is_file() and (bundle / "models" / "centroid_library.npz").is_file()
    verify_metadata(meta_file=str(bundle / "configs" / "metadata.json"), filepath=str(SCHEMA), hash_val=hashlib.md5(SCHEMA.read_bytes()).hexdigest())

    # the same through the package's command line, reusing the saved centroid library
    from monai_dafgan.__main__ import main

    assert main(["synthesize", "--bundle", str(bundle), "--num-samples", "2", "--out", str(tmp_path / "cli"), "--size", "64"]) == 0
    assert len(load_consep(tmp_path / "cli", "Train")) == 2
    assert main(["synthesize", "--bundle", str(tmp_path / "missing"), "--num-samples", "1", "--out", str(tmp_path / "x")]) == 2
