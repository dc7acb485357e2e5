"""The Table I protocol end to end at micro scale on toy data (generators, synthesis bundles, HoVer-Net per
condition, evaluation, table and paired comparison), its reuse of finished pieces, and its input checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from monai_dafgan.__main__ import main
from monai_dafgan.data import make_toy_consep
from monai_dafgan.study import load_protocol, set_config_values
from monai_dafgan.synthesis import synthesis_weight_files

MICRO = {
    "holdout": ["toy_3"],
    "evaluation": {"split": "Train", "tiles": "holdout"},
    "seeds": [0],
    "device": "cpu",
    "conditions": {"real": None, "real+pix2pixHD": {"baseline": True}, "real+DAFF-GAN": {"baseline": False}},
    "generators": {"preset": "small", "epochs": 1, "decay_epochs": 0, "window": 128, "patch_size": 64,
                   "num_workers": 0, "log_enabled": False},
    "synthesis": {"min_area": 5},
    "hovernet": {"epochs": 1, "frozen_epochs": 1, "num_train_patches": 1, "batch_size": 1, "synthetic_ratio": 1.0,
                 "synthetic_size": 64, "val_interval": 0, "num_workers": 0},
}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    make_toy_consep(root / "toy", num_tiles=3, size=128, seed=0)
    protocol = root / "micro.yaml"
    protocol.write_text(yaml.safe_dump({"dataset_dir": str(root / "toy"), **MICRO}, sort_keys=False))
    assert main(["table1", "--protocol", str(protocol), "--out", str(root / "out")]) == 0
    return root


def test_study_trains_evaluates_and_reports(study):
    out = study / "out"
    report = json.loads((out / "table1.json").read_text())
    assert list(report["conditions"]) == ["real", "real+pix2pixHD", "real+DAFF-GAN"]
    assert report["evaluated_tiles"] == ["toy_3"]
    for name, baseline in (("real_pix2pixhd", True), ("real_daff_gan", False)):
        for weights in synthesis_weight_files(baseline):  # the pair the bundle's baseline flag selects
            assert (out / "synthesis" / name / weights).is_file()
        assert (out / "synthesis" / name / "models" / "centroid_library.npz").is_file()
    daff = (out / "synthesis" / "real_daff_gan" / "configs" / "inference.yaml").read_text()
    pix2pixhd = (out / "synthesis" / "real_pix2pixhd" / "configs" / "inference.yaml").read_text()
    assert "baseline: false  #" in daff and "baseline: true  #" in pix2pixhd and "min_area: 5  #" in daff
    assert "--synthesis_bundle" in (out / "logs" / "real_daff_gan_seed0_train.log").read_text()
    assert "--synthetic_ratio 0.0" in (out / "logs" / "real_seed0_train.log").read_text()
    for condition in ("real", "real_pix2pixhd", "real_daff_gan"):
        metrics = json.loads((out / "hovernet" / condition / "seed0" / "eval" / "metrics.json").read_text())
        assert metrics["num_tiles"] == 1 and 0.0 <= metrics["aggregate"]["pq"] <= 1.0
    paired = report["paired_vs_baseline"]
    assert set(paired) == {"real+pix2pixHD", "real+DAFF-GAN"} and paired["real+DAFF-GAN"]["pq"]["num_seeds"] == 1
    table = (out / "table1.md").read_text()
    assert "| real+DAFF-GAN |" in table and "Paired differences to `real`" in table


def test_study_reuses_what_exists(study, capsys):
    out = study / "out"
    logs = {p.name: p.stat().st_mtime_ns for p in (out / "logs").iterdir()}
    assert main(["table1", "--protocol", str(study / "micro.yaml"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert " ... " not in printed  # no bundle ran
    assert {p.name: p.stat().st_mtime_ns for p in (out / "logs").iterdir()} == logs


def test_protocol_checks(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"dataset_dir": "x", **MICRO, "epochs": 3}))
    with pytest.raises(ValueError, match=r"unknown protocol keys \['epochs'\]"):
        load_protocol(path)
    path.write_text(yaml.safe_dump({"dataset_dir": "x", **MICRO, "checkpoint": "best_model.pt"}))
    with pytest.raises(ValueError, match="best_model.pt is chosen on the holdout tiles"):
        load_protocol(path)
    path.write_text(yaml.safe_dump({"dataset_dir": "x", **MICRO, "baseline_condition": "none"}))
    with pytest.raises(ValueError, match="baseline condition 'none'"):
        load_protocol(path)
    path.write_text(yaml.safe_dump({k: v for k, v in MICRO.items()}))
    with pytest.raises(ValueError, match="no dataset_dir"):
        load_protocol(path)
    assert load_protocol(path, dataset_dir="d", seeds=[4, 5], device=None)["seeds"] == [4, 5]


def test_shipped_protocols_load():
    configs = Path(__file__).resolve().parents[1] / "configs" / "table1"
    for name in ("reduced.yaml", "full.yaml"):
        protocol = load_protocol(configs / name)
        assert set(protocol["conditions"]) == {"real", "real+pix2pixHD", "real+DAFF-GAN"}, name
        assert len(protocol["seeds"]) >= 2, name


def test_set_config_values_keeps_comments(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("# head\npreset: small  # which\nholdout: []\nnested:\n  preset: x\n")
    set_config_values(config, {"preset": "paper", "holdout": ["a", "b"]})
    assert config.read_text() == "# head\npreset: paper  # which\nholdout: [a, b]\nnested:\n  preset: x\n"
    with pytest.raises(KeyError, match="no top-level key 'missing'"):
        set_config_values(config, {"missing": 1})
