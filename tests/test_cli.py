"""The command line on the toy dataset, as a user runs it."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from monai_dafgan.__main__ import main


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
    from monai_dafgan.data import check_sample, load_consep

    samples = load_consep(out / "synthetic", "Train")
    assert len(samples) == 3
    for sample in samples:
        check_sample(sample)
        assert sample["image"].shape == (3, 128, 128)  # samples are windows of the 128 px toy tiles
    assert np.asarray(Image.open(out / "synthetic" / "preview.png")).shape[1] > 4 * 128
