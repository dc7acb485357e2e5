"""The HoVer-Net bundle as a user runs it: MONAI bundle CLI training (real only, resumed, and mixed with a synthesis
bundle), whole-tile evaluation, folder inference, model-zoo checks, and clear errors on bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigWorkflow, verify_metadata
from scipy.io import loadmat

from monai_dafgan.data import make_toy_consep
from monai_dafgan.networks import DAFFGenerator
from monai_dafgan.records import content_fingerprint
from monai_dafgan.study import set_config_values
from monai_dafgan.synthesis import shipped_synthesis_bundle

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "hovernet_consep_synthetic"
SCHEMA = Path(__file__).parent / "data" / "meta_schema_20240725.json"
TINY = ["--holdout", "['toy_3']", "--epochs", "1", "--frozen_epochs", "1", "--num_train_patches", "1",
        "--batch_size", "1", "--num_val_patches", "1", "--num_workers", "0", "--device", "$torch.device('cpu')"]


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("toy") / "consep"
    make_toy_consep(root, num_tiles=3, size=128, seed=0)
    return root


def _bundle(tmp_path: Path) -> Path:
    bundle = tmp_path / "hovernet"
    shutil.copytree(BUNDLE, bundle, ignore=shutil.ignore_patterns("runs", "eval", "*.pt"))
    return bundle


def _run(bundle: Path, *args: str, ok: bool = True) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", *args], cwd=bundle, capture_output=True, text=True, timeout=600
    )
    output = result.stdout + result.stderr
    assert (result.returncode == 0) == ok, output[-4000:]
    return output


def _synthesis_bundle(tmp_path: Path, num_types: int = 4) -> Path:
    """A synthesis bundle with randomly initialised small generators for ``num_types`` nucleus types."""
    bundle = tmp_path / f"synthesis_{num_types}"
    shutil.copytree(REPO / "bundles" / "dafgan_nuclei_synthesis", bundle, ignore=shutil.ignore_patterns("*.pt", "*.npz"))
    set_config_values(bundle / "configs" / "inference.yaml", {"num_types": num_types, "point_encoding": "disk"})
    torch.manual_seed(0)
    g1 = DAFFGenerator.from_preset("small", num_types + 1, num_types + 1, output_activation=None)
    g2 = DAFFGenerator.from_preset("small", num_types + 2, 3)
    torch.save(g1.state_dict(), bundle / "models" / "points_to_mask.pt")
    torch.save(g2.state_dict(), bundle / "models" / "mask_to_image.pt")
    return bundle


@pytest.fixture(scope="module")
def trained(toy_dir, tmp_path_factory) -> Path:
    """A bundle trained one epoch on real toy tiles (toy_3 held out)."""
    bundle = _bundle(tmp_path_factory.mktemp("trained"))
    _run(bundle, "training", "--config_file", "configs/train.yaml", "--dataset_dir", str(toy_dir), *TINY)
    return bundle


def test_training_writes_final_best_and_resumable_weights(trained, toy_dir):
    assert (trained / "models" / "model.pt").is_file() and (trained / "models" / "best_model.pt").is_file()
    assert [p.name for p in (trained / "runs").glob("checkpoint_epoch=*.pt")] == ["checkpoint_epoch=1.pt"]
    before = torch.load(trained / "models" / "model.pt", weights_only=True)

    # more epochs on the same folder: resumes after epoch 1 (the encoder unfrozen from epoch 2)
    log = _run(trained, "training", "--config_file", "configs/train.yaml", "--dataset_dir", str(toy_dir), *TINY[:2],
               "--epochs", "2", *TINY[4:])
    assert "Restored all variables from" in log and "checkpoint_epoch=1.pt" in log
    assert "Epoch[2] Complete" in log and "Epoch[1] Complete" not in log
    assert (trained / "runs" / "checkpoint_epoch=2.pt").is_file()
    after = torch.load(trained / "models" / "model.pt", weights_only=True)
    encoder_key = "res_blocks.d1.layers.denselayer_0.layers.conv1.weight"
    assert not torch.equal(before[encoder_key], after[encoder_key])  # stage 2 trains the encoder


def test_pretrained_encoder_stays_fixed_in_the_frozen_stage(toy_dir, tmp_path):
    from monai.networks.nets import HoVerNet

    torch.manual_seed(5)
    pretrained = HoVerNet(mode="fast", out_classes=5).state_dict()
    torch.save(pretrained, tmp_path / "encoder.pt")
    bundle = _bundle(tmp_path)
    log = _run(bundle, "training", "--config_file", "configs/train.yaml", "--dataset_dir", str(toy_dir), *TINY,
               "--val_interval", "0", "--pretrained_encoder", str(tmp_path / "encoder.pt"))
    assert "initialised 298 of HoVer-Net's 298 encoder tensors" in log
    trained = torch.load(bundle / "models" / "model.pt", weights_only=True)
    frozen_key = "res_blocks.d2.layers.denselayer_1.layers.conv2.weight"  # frozen by freeze_encoder's rule
    stem_key = "conv0.conv.weight"  # loaded, but trainable in stage 1 (as in MONAI)
    decoder_key = "nucleus_prediction.decoder_blocks.decoderblock1.conva.weight"  # not loaded
    assert torch.equal(trained[frozen_key], pretrained[frozen_key])
    assert not torch.equal(trained[stem_key], pretrained[stem_key])
    assert not torch.equal(trained[decoder_key], pretrained[decoder_key])
    assert not (bundle / "models" / "best_model.pt").exists()  # no validation, no best model


def test_evaluate_writes_metrics_table_and_overlays(trained, toy_dir):
    output = _run(trained, "evaluating", "--config_file", "configs/evaluate.yaml", "--dataset_dir", str(toy_dir),
                  "--split", "Train", "--tiles", "['toy_3', 'toy_1']", "--condition", "real", "--device", "cpu")
    metrics = json.loads((trained / "eval" / "metrics.json").read_text())
    assert metrics["condition"] == "real" and metrics["num_tiles"] == 2
    assert [t["name"] for t in metrics["tiles"]] == ["toy_3", "toy_1"]
    for key in ("dice", "aji", "aji_plus", "dq", "sq", "pq", "f1_detection", "accuracy_type", "f1_type_1", "f1_type_4"):
        assert 0.0 <= metrics["aggregate"][key] <= 1.0, key
    table = (trained / "eval" / "table1.md").read_text()
    assert table.startswith("| Training data | Dice | AJI | DQ | SQ | PQ | AJI+ | F1d |") and "| real |" in table
    assert "| real |" in output  # the table is printed too
    assert sorted(p.name for p in (trained / "eval" / "overlays").iterdir()) == ["toy_1.png", "toy_3.png"]


def test_inference_writes_consep_layout_predictions(trained, toy_dir):
    _run(trained, "--config_file", "configs/inference.yaml", "--dataset_dir", str(toy_dir), "--split", "Train",
         "--device", "cpu", "--output_dir", str(trained / "predictions"))
    labels = sorted((trained / "predictions" / "Labels").glob("*.mat"))
    assert [p.stem for p in labels] == ["toy_1", "toy_2", "toy_3"]
    mat = loadmat(labels[0])
    assert mat["inst_map"].shape == (128, 128) and mat["inst_type"].shape[0] == mat["inst_centroid"].shape[0]
    assert (trained / "predictions" / "overlays" / "toy_1.png").is_file()


def test_bad_input_gives_clear_errors(trained, toy_dir, tmp_path):
    no_labels = tmp_path / "no_labels"
    shutil.copytree(toy_dir / "Train" / "Images", no_labels / "Test" / "Images")
    output = _run(trained, "evaluating", "--config_file", "configs/evaluate.yaml", "--dataset_dir", str(no_labels),
                  "--device", "cpu", ok=False)
    assert "Labels: folder not found" in output

    wrong = tmp_path / "seven_classes.pt"
    from monai.networks.nets import HoVerNet

    torch.save(HoVerNet(mode="fast", out_classes=7).state_dict(), wrong)
    output = _run(trained, "evaluating", "--config_file", "configs/evaluate.yaml", "--dataset_dir", str(toy_dir),
                  "--split", "Train", "--ckpt_path", str(wrong), "--device", "cpu", ok=False)
    assert "its type head has 7 classes, this network 5" in output



def test_mixing_with_a_synthesis_bundle(toy_dir, tmp_path):
    bundle = _bundle(tmp_path)
    synthesis = _synthesis_bundle(tmp_path)
    _run(bundle, "training", "--config_file", "configs/train.yaml", "--dataset_dir", str(toy_dir), *TINY,
         "--val_interval", "0", "--synthesis_bundle", str(synthesis), "--synthetic_ratio", "1.0", "--synthetic_size", "64")
    assert (bundle / "models" / "model.pt").is_file()

    three_types = _synthesis_bundle(tmp_path, num_types=3)
    output = _run(bundle, "training", "--config_file", "configs/train.yaml", "--dataset_dir", str(toy_dir), *TINY,
                  "--resume", "false", "--synthesis_bundle", str(three_types), "--synthetic_ratio", "1.0", ok=False)
    assert "the synthesizer makes 3 nucleus types, the model trained here expects 4" in output

    # no --synthesis_bundle: the generators shipped with the package, and the log says so (all in bf16 here)
    output = _run(bundle, "training", "--config_file", "configs/train.yaml", "--dataset_dir", str(toy_dir), *TINY,
                  "--resume", "false", "--val_interval", "0", "--synthetic_ratio", "1.0", "--synthetic_size", "64",
                  "--synthesis_cpu_amp", "true", "--cpu_amp", "true")
    shipped = shipped_synthesis_bundle()
    assert f"synthesizer from the synthesis bundle {shipped}: points_to_mask.pt and mask_to_image.pt" in output
    latest = max((bundle / "runs").glob("checkpoint_*.pt"), key=lambda path: path.stat().st_mtime)
    identity = torch.load(latest, weights_only=False)["run"]
    assert identity["synthesis_bundle"] == content_fingerprint(shipped / "models")  # a resume checks these weights


def test_resnet_encoder_trains_evaluates_and_refuses_another_encoder(toy_dir, tmp_path):
    bundle = _bundle(tmp_path)
    resnet = ["--encoder", "resnet18", "--out_size", "192"]
    onecycle = ["--lr_schedule", "onecycle", "--hv_loss_weight", "2.0"]  # the CPU recipe's settings
    _run(bundle, "training", "--config_file", "configs/train.yaml", "--dataset_dir", str(toy_dir), *TINY, *resnet, *onecycle)
    (resumable,) = (bundle / "runs").glob("checkpoint_*.pt")
    assert torch.load(resumable, weights_only=False)["lr_scheduler"]["total_steps"] == 1  # OneCycleLR, per iteration
    saved = torch.load(bundle / "models" / "model.pt", weights_only=True)
    assert saved["_extra_state"]["architecture"]["encoder"] == "resnet18" and "encoder.layer4.1.conv2.weight" in saved
    evaluate = ["evaluating", "--config_file", "configs/evaluate.yaml", "--dataset_dir", str(toy_dir),
                "--split", "Train", "--tiles", "['toy_3']", "--device", "cpu", "--save_overlays", "false"]
    _run(bundle, *evaluate, *resnet)
    metrics = json.loads((bundle / "eval" / "metrics.json").read_text())
    assert metrics["num_tiles"] == 1 and 0.0 <= metrics["aggregate"]["pq"] <= 1.0
    output = _run(bundle, *evaluate, "--encoder", "resnet34", ok=False)
    expected = "checkpoint ./models/model.pt was trained with encoder resnet18, this network is resnet34 (--encoder)"
    assert expected in output


def test_model_zoo_checks(trained, toy_dir):
    verify_metadata(meta_file=str(BUNDLE / "configs" / "metadata.json"), filepath=str(SCHEMA))
    for config, kind in (("train.yaml", "train"), ("inference.yaml", "infer")):
        workflow = ConfigWorkflow(
            config_file=str(trained / "configs" / config), workflow_type=kind, bundle_root=str(trained),
            dataset_dir=str(toy_dir), split="Train", device="cpu", holdout=["toy_3"], batch_size=1,
        )
        workflow.initialize()
        assert workflow.check_properties() in (None, []), config


def test_distributed_training_with_mixing_on_two_cpu_processes(toy_dir, tmp_path):
    """multi_gpu_train.yaml with gloo: two ranks, each with its share of patches and its own synthetic samples;
    rank 0 writes plain (not DDP-prefixed) weights that evaluate.yaml loads."""
    bundle, synthesis = _bundle(tmp_path), _synthesis_bundle(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "-m", "monai.bundle", "run", "training",
         "--config_file", "['configs/train.yaml','configs/multi_gpu_train.yaml']", "--dataset_dir", str(toy_dir),
         *TINY[:4], "--frozen_epochs", "0", "--num_train_patches", "2", "--batch_size", "1", "--num_workers", "0",
         "--val_interval", "0", "--synthesis_bundle", str(synthesis), "--synthetic_ratio", "1.0",
         "--synthetic_size", "64", "--encoder", "resnet18", "--patch_size", "64", "--out_size", "48"],
        cwd=bundle, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    weights = torch.load(bundle / "models" / "model.pt", weights_only=True)
    assert not any(key.startswith("module.") for key in weights)
    checkpoint = torch.load(next((bundle / "runs").glob("checkpoint_*.pt")), weights_only=False)
    assert checkpoint["trainer"]["iteration"] == 1  # 2 patches shared by 2 ranks, batch 1: one iteration each
    refused = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "-m", "monai.bundle", "run", "training",
         "--config_file", "['configs/train.yaml','configs/multi_gpu_train.yaml']", "--dataset_dir", str(toy_dir),
         *TINY[:4], "--frozen_epochs", "1"],
        cwd=bundle, capture_output=True, text=True, timeout=600,
    )
    assert refused.returncode != 0 and "frozen_epochs must be 0 with multi_gpu_train.yaml" in refused.stderr
