"""The Table I protocol end to end at micro scale on toy data (generators, synthesis bundles, HoVer-Net per
condition, evaluation, table and paired comparison), its reuse of finished pieces, and its input checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from PIL import Image

from monai_dafgan.__main__ import main
from monai_dafgan.data import make_toy_consep
from monai_dafgan.study import load_protocol, set_config_values, tile_plot
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
    "postprocess": {"keep_unmarked": True},
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
    assert list(report["evaluation_sets"]) == ["holdout"]
    summary = report["evaluation_sets"]["holdout"]
    assert list(summary["conditions"]) == ["real", "real+pix2pixHD", "real+DAFF-GAN"]
    assert summary["evaluated_tiles"] == ["toy_3"]
    for name, baseline in (("real_pix2pixhd", True), ("real_daff_gan", False)):
        for weights in synthesis_weight_files(baseline):  # the pair the bundle's baseline flag selects
            assert (out / "synthesis" / name / weights).is_file()
        assert (out / "synthesis" / name / "models" / "centroid_library.npz").is_file()
    daff = (out / "synthesis" / "real_daff_gan" / "configs" / "inference.yaml").read_text()
    pix2pixhd = (out / "synthesis" / "real_pix2pixhd" / "configs" / "inference.yaml").read_text()
    assert "baseline: false  #" in daff and "baseline: true  #" in pix2pixhd and "min_area: 5  #" in daff
    assert "--synthesis_bundle" in (out / "logs" / "real_daff_gan_seed0_train.log").read_text()
    assert "--synthetic_ratio 0.0" in (out / "logs" / "real_seed0_train.log").read_text()
    assert "--keep_unmarked True" in (out / "logs" / "real_seed0_evaluate_holdout.log").read_text()
    for condition in ("real", "real_pix2pixhd", "real_daff_gan"):
        metrics = json.loads((out / "hovernet" / condition / "seed0" / "eval" / "holdout" / "metrics.json").read_text())
        assert metrics["num_tiles"] == 1 and 0.0 <= metrics["aggregate"]["pq"] <= 1.0
        (record,) = (out / "records").glob(f"{condition}_seed0_*.json")
        record = json.loads(record.read_text())
        assert record["config"]["seed"] == 0 and record["train_minutes"] > 0
        assert [e["result"] for e in record["evaluations"].values()] == [metrics]
    paired = summary["paired_vs_baseline"]
    assert set(paired) == {"real+pix2pixHD", "real+DAFF-GAN"} and paired["real+DAFF-GAN"]["pq"]["num_seeds"] == 1
    table = (out / "table1.md").read_text()
    assert "| real+DAFF-GAN |" in table and "Paired differences to `real`" in table
    assert "### Evaluation set `holdout`" in table
    assert summary["tile_plot"] == "table1_holdout.png" and "(table1_holdout.png)" in table
    with Image.open(out / "table1_holdout.png") as picture:
        assert picture.size == (720, 3 * 240)  # PQ, AJI and Dice panels


def test_study_reuses_what_exists(study, capsys):
    out = study / "out"
    logs = {p.name: p.stat().st_mtime_ns for p in (out / "logs").iterdir()}
    assert main(["table1", "--protocol", str(study / "micro.yaml"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert " ... " not in printed  # no bundle ran
    assert {p.name: p.stat().st_mtime_ns for p in (out / "logs").iterdir()} == logs


def _protocol(study, path, **changes):
    protocol = yaml.safe_load((study / "micro.yaml").read_text())
    protocol.update(changes)
    path.write_text(yaml.safe_dump(protocol, sort_keys=False))
    return path


def test_records_let_another_machine_finish_the_study(study, tmp_path, capsys):
    """A fresh study folder with the records of the first (another machine, another day) runs nothing; a new
    evaluation set scores the kept weights without retraining; a changed configuration is never taken as done."""
    records = study / "out" / "records"
    protocol = _protocol(study, tmp_path / "p.yaml", results_dir=str(records))
    assert main(["table1", "--protocol", str(protocol), "--out", str(tmp_path / "elsewhere")]) == 0
    assert " ... " not in capsys.readouterr().out  # neither generators nor HoVer-Net trained, nothing evaluated
    assert not (tmp_path / "elsewhere" / "generators").exists()
    first = json.loads((tmp_path / "elsewhere" / "table1.json").read_text())["evaluation_sets"]["holdout"]["table"]
    before = json.loads((study / "out" / "table1.json").read_text())["evaluation_sets"]["holdout"]["table"]
    assert first == before

    # changed lr: a new key, so a new run (weights kept for later evaluation sets)
    changed = _protocol(study, tmp_path / "q.yaml", results_dir=str(tmp_path / "records"), conditions={"real": None},
                        hovernet={**yaml.safe_load((study / "micro.yaml").read_text())["hovernet"], "lr": 0.002})
    kept = tmp_path / "weights"
    assert main(["table1", "--protocol", str(changed), "--out", str(tmp_path / "b"), "--keep-weights", str(kept)]) == 0
    printed = capsys.readouterr().out
    assert "real_seed0_train ... " in printed and "real_seed0_evaluate_holdout ... " in printed
    (weights,) = kept.glob("*.pt")
    (record,) = (tmp_path / "records").glob("real_seed0_*.json")
    assert json.loads(record.read_text())["identity"] == weights.stem

    # a second evaluation set (the generic reader's folders) in a fresh folder: evaluated from the kept weights only
    toy = Path(yaml.safe_load((study / "micro.yaml").read_text())["dataset_dir"]) / "Train"
    both = [{"split": "Train", "tiles": "holdout"},
            {"name": "folders", "image_dir": str(toy / "Images"), "label_dir": str(toy / "Labels"), "tiles": ["toy_1"]}]
    more = _protocol(study, tmp_path / "r.yaml", results_dir=str(tmp_path / "records"), conditions={"real": None},
                     hovernet=yaml.safe_load(changed.read_text())["hovernet"], evaluation=both)
    assert main(["table1", "--protocol", str(more), "--out", str(tmp_path / "c"), "--keep-weights", str(kept)]) == 0
    printed = capsys.readouterr().out
    assert "train ... " not in printed and printed.count(" ... ") == 1 and "evaluate_folders ... " in printed
    report = json.loads((tmp_path / "c" / "table1.json").read_text())
    assert list(report["evaluation_sets"]) == ["holdout", "folders"]
    assert report["evaluation_sets"]["folders"]["evaluated_tiles"] == ["toy_1"]
    assert len(json.loads(record.read_text())["evaluations"]) == 2

    # a record made with other code: reused and listed with --reuse-other-code, run anew without it
    other = json.loads(record.read_text())
    other["code"] = {"segmentation": "0" * 64}
    record.write_text(json.dumps(other))
    assert main(["table1", "--protocol", str(more), "--out", str(tmp_path / "d"), "--reuse-other-code"]) == 0
    assert " ... " not in capsys.readouterr().out
    assert json.loads((tmp_path / "d" / "table1.json").read_text())["reused_with_other_code"] == ["real_seed0"]
    assert "Runs reused from records made with other code" in (tmp_path / "d" / "table1.md").read_text()
    assert main(["table1", "--protocol", str(more), "--out", str(tmp_path / "e")]) == 0  # no weights of this code
    printed = capsys.readouterr().out
    assert "made with other code" in printed and "real_seed0_train ... " in printed
    assert json.loads(record.read_text())["code"] != other["code"]


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
    path.write_text(yaml.safe_dump({"dataset_dir": "x", **MICRO, "train_tiles": ["toy_3"]}))
    with pytest.raises(ValueError, match=r"train_tiles \['toy_3'\] are held out or evaluated"):
        load_protocol(path)
    shipped = {**MICRO["conditions"], "real+DAFF-GAN": {"baseline": False, "synthesis_bundle": "shipped"}}
    path.write_text(yaml.safe_dump({"dataset_dir": "x", **MICRO, "train_tiles": ["toy_1"], "conditions": shipped}))
    with pytest.raises(ValueError, match="uses the shipped generators"):
        load_protocol(path)
    path.write_text(yaml.safe_dump({"dataset_dir": "x", **MICRO, "evaluation": [{"tiles": "holdout"}, {"tiles": "holdout"}]}))
    with pytest.raises(ValueError, match="distinct names"):
        load_protocol(path)
    path.write_text(yaml.safe_dump({"dataset_dir": "x", **MICRO, "evaluation": {"tiles": "holdout", "crop": 3}}))
    with pytest.raises(ValueError, match=r"unknown keys \['crop'\]"):
        load_protocol(path)


def test_shipped_protocols_load_and_name_real_config_keys():
    """A misspelt override would be silently added to a bundle config and do nothing: every key must exist."""
    repo = Path(__file__).resolve().parents[1]
    configs = {name: yaml.safe_load((repo / "bundles" / bundle / "configs" / config).read_text()) for name, bundle, config in (
        ("hovernet", "hovernet_consep_synthetic", "train.yaml"), ("postprocess", "hovernet_consep_synthetic", "evaluate.yaml"),
        ("points2mask", "dafgan_points2mask", "train.yaml"), ("mask2image", "dafgan_mask2image", "train.yaml"),
        ("synthesis", "dafgan_nuclei_synthesis", "inference.yaml"),
    )}  # fmt: skip
    cpu = load_protocol(repo / "configs" / "table1" / "cpu.yaml")
    for name in ("reduced.yaml", "full.yaml", "cpu.yaml", "cpu_low_label.yaml", "cpu_ratio.yaml"):
        protocol = load_protocol(repo / "configs" / "table1" / name)
        if name == "cpu_ratio.yaml":  # a sweep at one seed that shares cpu.yaml's runs at ratios 0 and 0.5
            assert [protocol["conditions"][c] for c in ("real", "real+DAFF-GAN")] == [
                cpu["conditions"][c] for c in ("real", "real+DAFF-GAN")]  # fmt: skip
            assert protocol["hovernet"] == cpu["hovernet"] and protocol["holdout"] == cpu["holdout"]
        else:
            assert set(protocol["conditions"]) == {"real", "real+pix2pixHD", "real+DAFF-GAN"}, name
            assert len(protocol["seeds"]) >= 2, name
        for section in ("hovernet", "postprocess", "synthesis"):
            assert set(protocol[section]) <= set(configs[section]), (name, section)
        generators = {k: v for k, v in protocol["generators"].items() if k not in ("points2mask", "mask2image")}
        assert set(generators) <= set(configs["points2mask"]) & set(configs["mask2image"]), name


def test_set_config_values_keeps_comments(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("# head\npreset: small  # which\nholdout: []\nnested:\n  preset: x\n")
    set_config_values(config, {"preset": "paper", "holdout": ["a", "b"]})
    assert config.read_text() == "# head\npreset: paper  # which\nholdout: [a, b]\nnested:\n  preset: x\n"
    with pytest.raises(KeyError, match="no top-level key 'missing'"):
        set_config_values(config, {"missing": 1})


def test_mixing_ratio_sweep_adds_runs_to_the_study(study, capsys):
    """Conditions with their own synthetic_ratio: a sweep. Runs without one keep their keys (reused from the
    records), the swept condition trains with its ratio on the generators already trained for its twin."""
    micro = yaml.safe_load((study / "micro.yaml").read_text())
    conditions = {"real": None, "real+DAFF-GAN": {"baseline": False},
                  "real+DAFF-GAN x2": {"baseline": False, "synthetic_ratio": 2}}
    protocol = _protocol(study, study / "sweep.yaml", conditions=conditions)
    assert main(["table1", "--protocol", str(protocol), "--out", str(study / "out")]) == 0
    printed = capsys.readouterr().out
    assert printed.count(" ... ") == 2 and "real_daff_gan_x2_seed0_train ... " in printed  # train and evaluate only
    assert printed.count("each step's progress: ") == 1 and str(study / "out" / "logs") in printed
    assert "--synthetic_ratio 2.0" in (study / "out" / "logs" / "real_daff_gan_x2_seed0_train.log").read_text()
    (record,) = (study / "out" / "records").glob("real_daff_gan_x2_seed0_*.json")
    hovernet = json.loads(record.read_text())["config"]["hovernet"]
    assert hovernet == {**micro["hovernet"], "synthetic_ratio": 2.0}
    report = json.loads((study / "out" / "table1.json").read_text())["evaluation_sets"]["holdout"]
    assert set(report["paired_vs_baseline"]) == {"real+DAFF-GAN", "real+DAFF-GAN x2"}

    protocol.write_text(protocol.read_text().replace("synthetic_ratio: 2", "synthetic_ratio: -1"))
    with pytest.raises(ValueError, match="synthetic_ratio -1; give a number >= 0"):
        load_protocol(protocol)


def test_tile_plot_draws_each_metric_and_declines_too_many_conditions():
    def run(pq):
        return {"tiles": [{"name": t, "pq": v, "aji": v, "dice": v} for t, v in zip(("a", "b"), pq)]}

    results = {"real": [run((0.2, 0.4)), run((0.4, 0.4))], "real+synthetic": [run((0.5, 0.1)), run((0.5, 0.3))]}
    assert tile_plot(results).shape == (3 * 240, 720, 3)  # PQ, AJI and Dice panels
    assert tile_plot({f"c{i}": [run((0.1, 0.2))] for i in range(9)}) is None  # 9 colours cannot be told apart
