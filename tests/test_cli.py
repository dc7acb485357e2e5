"""The command line on the toy dataset, as a user runs it."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from PIL import Image

from monai_dafgan.__main__ import build_parser, main
from monai_dafgan.synthesis import bundle_library


def test_demo_then_summarize_and_preview(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo"), "--num-tiles", "2", "--size", "256", "--epochs", "0"]) == 0
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["num_tiles"] == 2 and summary["num_nuclei"] > 50
    assert sum(row["count"] for row in summary["types"].values()) == summary["num_nuclei"]
    assert np.asarray(Image.open(tmp_path / "demo" / "overview.png")).ndim == 3
    assert "nuclei" in capsys.readouterr().out

    data = tmp_path / "demo" / "toy_consep"
    assert main(["summarize", "--data-dir", str(data), "--out", str(tmp_path / "s")]) == 0
    assert json.loads((tmp_path / "s" / "summary.json").read_text())["num_nuclei"] == summary["num_nuclei"]

    out = tmp_path / "preview.png"
    assert main(["preview-points", "--data-dir", str(data), "--out", str(out), "--num", "3", "--size", "128"]) == 0
    picture = np.asarray(Image.open(out))
    assert picture.shape[0] > 2 * 128 and picture.shape[1] > 3 * 128
    # type colours are in the picture: yellow inflammatory and blue spindle disks
    colours = {tuple(c) for c in picture.reshape(-1, picture.shape[-1])[:, :3]}
    assert (255, 220, 0) in colours and (30, 80, 255) in colours


def test_bad_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["summarize", "--data-dir", str(tmp_path / "nowhere")]) == 2
    assert "split folder not found" in capsys.readouterr().err


def test_plot_losses_from_tensorboard_events(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(tmp_path / "runs"))
    for step in range(1, 31):
        writer.add_scalar("loss/g_loss", 10.0 / step, step)
        writer.add_scalar("loss/d_loss", 0.5, step)
    writer.close()
    out = tmp_path / "losses.png"
    assert main(["plot-losses", "--log-dir", str(tmp_path / "runs"), "--out", str(out), "--smooth", "3"]) == 0
    picture = np.asarray(Image.open(out))
    assert picture.shape[0] == 2 * 360 and (picture[..., 0] < 100).any()  # two panels with dark axes/lines
    assert main(["plot-losses", "--log-dir", str(tmp_path / "empty")]) == 2


def test_full_demo_trains_both_generators_and_synthesizes(tmp_path):
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--num-tiles", "2", "--size", "128", "--epochs", "1", "--patch-size", "64", "--num-samples", "3"]
    assert main(args) == 0
    for name in ("dafgan_points2mask", "dafgan_mask2image"):
        assert (out / "bundles" / name / "models" / "model.pt").is_file()
    assert not list((out / "bundles").rglob("docs/*.png"))  # the repository's real-data pictures are not the demo's
    from monai_dafgan.data import check_sample, load_consep

    samples = load_consep(out / "synthetic", "Train")
    assert len(samples) == 3
    for sample in samples:
        check_sample(sample)
        assert sample["image"].shape == (3, 128, 128)  # samples are windows of the 128 px toy tiles
    assert np.asarray(Image.open(out / "synthetic" / "preview.png")).shape[1] > 4 * 128


def test_every_command_has_a_description_defaults_and_an_example(capsys):
    commands = build_parser()._subparsers._group_actions[0].choices
    assert set(commands) == {"demo", "summarize", "preview-points", "plot-losses", "synthesize", "assemble", "table1"}
    for name, parser in commands.items():
        text = parser.format_help()
        assert parser.description and f"python -m monai_dafgan {name} " in text.split("example")[-1], name
        for action in parser._actions:
            if action.default not in (None, False, [], "==SUPPRESS==") and action.option_strings:
                assert f"(default: {action.default})" in " ".join(text.split()), (name, action.dest)
    assert "(default: 659)" in " ".join(commands["synthesize"].format_help().split())


def test_a_preset_mismatch_is_a_few_lines_naming_the_flag(tmp_path, capsys):
    assert main(["synthesize", "--preset", "paper", "--num-samples", "1", "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "holds 'small' generators" in err and "--preset small" in err
    assert len(err.strip().splitlines()) <= 3 and "size mismatch" not in err
    assert not (tmp_path / "s").exists()


def test_a_library_built_from_data_is_saved_where_help_says_the_default_is(tmp_path, capsys):
    from monai_dafgan.data import make_toy_consep

    data = make_toy_consep(tmp_path / "toy", num_tiles=2, size=128)
    bundle = tmp_path / "bundle"
    with pytest.raises(FileNotFoundError, match="pass --data-dir"):
        bundle_library(bundle, None, "Train", [])
    built = bundle_library(bundle, data, "Train", [])
    assert (bundle / "models" / "centroid_library.npz").is_file() and "saved the centroid library" in capsys.readouterr().out
    assert bundle_library(bundle, None, "Train", []).num_points == built.num_points


def test_training_progress_logs_elapsed_time_and_eta(caplog):
    from ignite.engine import Engine

    from monai_dafgan.engines import LossProgressBar

    engine = Engine(lambda engine, batch: {"g_loss": 1.0})
    LossProgressBar(keys=["g_loss"], persist=False).attach(engine)
    with caplog.at_level(logging.INFO):
        engine.run([0, 1], max_epochs=3)
    lines = [r.getMessage() for r in caplog.records if "ETA" in r.getMessage()]
    assert len(lines) == 3 and lines[0].startswith("epoch 1/3: elapsed 0:0") and lines[-1].endswith("ETA 0:00")
