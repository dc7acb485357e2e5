"""Synthesis bundles: assembling one from trained generators (both pairs in one bundle, errors in flag terms) and
the shipped bundle, which must synthesize realistic-format samples on a fresh checkout with no data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from monai_dafgan.__main__ import main
from monai_dafgan.data import check_sample, load_consep, make_toy_sample, sample_points
from monai_dafgan.networks import DAFFGenerator
from monai_dafgan.points import CentroidLibrary
from monai_dafgan.synthesis import (
    NucleiSynthesizer,
    SyntheticNucleiDataset,
    assemble_synthesis_bundle,
    generator_settings,
    shipped_library,
    shipped_synthesis_bundle,
    synthesis_weight_files,
)

pytestmark = pytest.mark.usefixtures("single_thread")

REPO = Path(__file__).resolve().parents[1]
MAX_WEIGHT_BYTES, MAX_TOTAL_BYTES = 15 * 2**20, 60 * 2**20


def save_pair(folder: Path, baseline: bool, seed: int = 0) -> tuple[Path, Path]:
    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    g1 = DAFFGenerator.from_preset("small", 5, 5, output_activation=None, baseline=baseline)
    g2 = DAFFGenerator.from_preset("small", 6, 3, baseline=baseline)
    paths = folder / "g1.pt", folder / "g2.pt"
    torch.save(g1.state_dict(), paths[0])
    torch.save(g2.state_dict(), paths[1])
    return paths


@pytest.fixture(scope="module")
def library() -> CentroidLibrary:
    return CentroidLibrary.from_samples([make_toy_sample(128, seed=0, index=i) for i in range(2)])


def test_generator_settings_read_preset_and_baseline_off_the_weights(tmp_path):
    daff, p2p = save_pair(tmp_path / "daff", False), save_pair(tmp_path / "p2p", True)
    assert generator_settings(torch.load(daff[0])) == {"preset": "small", "baseline": False, "in_channels": 5, "out_channels": 5}
    assert generator_settings(torch.load(p2p[1]))["baseline"] is True
    tiny = DAFFGenerator(5, 5, ngf=8, n_downsampling=2, n_blocks=1, ngf_local=4, n_blocks_local=1)
    with pytest.raises(ValueError, match="fit none of the presets"):
        generator_settings(tiny.state_dict())


def test_assemble_both_pairs_into_one_bundle(tmp_path, library):
    bundle = tmp_path / "synthesis"
    daff, p2p = save_pair(tmp_path / "daff", False, 0), save_pair(tmp_path / "p2p", True, 1)
    settings = assemble_synthesis_bundle(bundle, *daff, library, point_encoding="ellipse")
    assert settings["weights"] == list(synthesis_weight_files(False)) and settings["baseline"] is False
    assemble_synthesis_bundle(bundle, *p2p, library, point_encoding="ellipse")
    for baseline, (g1_path, _) in ((False, daff), (True, p2p)):
        synthesizer = NucleiSynthesizer.from_bundle(bundle, device="cpu", overrides={"baseline": baseline})
        assert synthesizer.point_encoding == "ellipse"
        stored = torch.load(bundle / synthesis_weight_files(baseline)[0])
        assert all(v.dtype == torch.float16 for v in stored.values() if v.is_floating_point())
        expected = {k: v.half().float() for k, v in torch.load(g1_path).items()}
        torch.testing.assert_close(synthesizer.points_to_mask.state_dict(), expected)
        sample = synthesizer.synthesize_one(sample_points(make_toy_sample(64, seed=0, index=0)), 64)
        check_sample(sample)
    with pytest.raises(ValueError, match="same --preset and --baseline"):
        assemble_synthesis_bundle(tmp_path / "mixed", daff[0], p2p[1], library, point_encoding="disk")
    with pytest.raises(ValueError, match="swapped"):
        assemble_synthesis_bundle(tmp_path / "swapped", daff[1], daff[0], library, point_encoding="disk")


def test_assemble_command(tmp_path):
    from monai_dafgan.data import make_toy_consep

    data = make_toy_consep(tmp_path / "toy", num_tiles=2, size=128, seed=0)
    g1, g2 = save_pair(tmp_path / "daff", False)
    out = tmp_path / "bundle"
    args = ["assemble", "--points-to-mask", str(g1), "--mask-to-image", str(g2), "--data-dir", str(data),
            "--holdout", "toy_1", "--point-encoding", "disk", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    assert CentroidLibrary.load(out / "models" / "centroid_library.npz").names == ["toy_2"]
    assert "point_encoding: disk" in (out / "configs" / "inference.yaml").read_text()
    assert main([*args[:-2], "--out", str(tmp_path / "none"), "--holdout", "toy_1", "toy_2"]) == 2  # no tiles left


# ------------------------------------------------------------------ the shipped bundle
def test_shipped_weights_fit_the_size_budget():
    models = shipped_synthesis_bundle() / "models"
    weights = sorted(models.glob("*.pt"))
    assert {w.name for w in weights} == {Path(n).name for b in (False, True) for n in synthesis_weight_files(b)}
    assert all(w.stat().st_size <= MAX_WEIGHT_BYTES for w in weights)
    assert sum(w.stat().st_size for w in REPO.glob("bundles/*/models/*.pt")) <= MAX_TOTAL_BYTES
    card = (shipped_synthesis_bundle() / "docs" / "README.md").read_text()
    assert "Model card" in card and "train_5" in card


@pytest.mark.parametrize("baseline", [False, True])
def test_shipped_bundle_synthesizes_without_data(tmp_path, baseline):
    out = tmp_path / "synthetic"
    args = ["synthesize", "--num-samples", "2", "--size", "128", "--out", str(out), "--device", "cpu"]
    assert main(args + (["--baseline"] if baseline else [])) == 0
    samples = load_consep(out, "Train")
    assert len(samples) == 2 and (out / "preview.png").is_file()
    for sample in samples:
        check_sample(sample)
        assert len(sample_points(sample)) > 0 and 40 < float(np.mean(sample["image"])) < 250


def test_shipped_generators_in_a_dataset():
    library = shipped_library()
    assert library.shapes is not None and len(library) == 22
    dataset = SyntheticNucleiDataset(NucleiSynthesizer.pretrained(device="cpu"), num_samples=2, spatial_size=96, point_source=library)
    first = dataset[0]
    check_sample(first)
    np.testing.assert_array_equal(first["label_inst"], dataset[0]["label_inst"])
    meta = json.loads((shipped_synthesis_bundle() / "configs" / "metadata.json").read_text())
    assert meta["version"] in meta["changelog"]


def test_shipped_config_builds_the_synthesizer_from_its_own_networks():
    """The config loads the weights into its own network definitions (not by reading its file again): the same
    generators as the Python API's, and a clear error for weights of another preset."""
    from monai.bundle import ConfigParser

    from monai_dafgan.synthesis import NucleiSynthesizer, WeightMismatchError, shipped_synthesis_bundle

    bundle = shipped_synthesis_bundle()
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.yaml"))
    parser.update({"bundle_root": str(bundle), "device": "$torch.device('cpu')"})
    synthesizer = parser.get_parsed_content("synthesizer")
    reference = NucleiSynthesizer.pretrained(device="cpu")
    assert (synthesizer.radius, synthesizer.min_area, synthesizer.point_encoding, synthesizer.num_types) == (
        reference.radius, reference.min_area, reference.point_encoding, reference.num_types)  # fmt: skip
    for ours, theirs in ((synthesizer.points_to_mask, reference.points_to_mask),
                         (synthesizer.mask_to_image, reference.mask_to_image)):  # fmt: skip
        torch.testing.assert_close(ours.state_dict(), theirs.state_dict())
    parser.update({"preset": "paper"})
    with pytest.raises(RuntimeError) as caught:  # MONAI wraps the expression's error
        parser.get_parsed_content("points_to_mask", lazy=False)
    assert isinstance(caught.value.__cause__, WeightMismatchError)
    assert "holds 'small' generators with baseline=False, but the config asks for preset 'paper'" in str(caught.value.__cause__)


def test_cpu_bf16_synthesis_keeps_the_float32_nuclei(tmp_path):
    """``--cpu-bf16`` (``cpu_amp``) changes the arithmetic, not the samples' content: the same instances, nearly the
    same masks, images within a few grey levels; and it is really used (the images are not bit-identical)."""
    folders = {}
    for name, flags in (("fp32", []), ("bf16", ["--cpu-bf16"])):
        folders[name] = tmp_path / name
        args = ["synthesize", "--num-samples", "3", "--size", "128", "--out", str(folders[name]), "--device", "cpu"]
        assert main(args + flags) == 0
    fp32, bf16 = (load_consep(folders[name], "Train") for name in ("fp32", "bf16"))
    assert [s["name"] for s in fp32] == [s["name"] for s in bf16]
    overlap = total = 0
    for a, b in zip(fp32, bf16):
        check_sample(b)
        assert len(sample_points(a)) == len(sample_points(b))
        fa, fb = np.asarray(a["label_inst"]) > 0, np.asarray(b["label_inst"]) > 0
        overlap, total = overlap + 2 * int((fa & fb).sum()), total + int(fa.sum() + fb.sum())
        difference = np.abs(np.asarray(a["image"]) - np.asarray(b["image"]))
        assert 0 < difference.max() and difference.mean() < 3.0
    assert overlap / total > 0.95

    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(shipped_synthesis_bundle() / "configs" / "inference.yaml"))
    parser.update({"bundle_root": str(shipped_synthesis_bundle()), "device": "$torch.device('cpu')", "cpu_amp": True})
    assert parser.get_parsed_content("synthesizer").cpu_amp
    assert not NucleiSynthesizer.pretrained(device="cpu").cpu_amp
    assert NucleiSynthesizer.from_bundle(shipped_synthesis_bundle(), device="cpu", overrides={"cpu_amp": True}).cpu_amp
