"""Trustworthy synthetic outputs: the manifest of write_synthetic_dataset, resuming an interrupted run to the files of
an uninterrupted one, refusing to mix datasets, the readers' warning on an incomplete folder, shards that fill one
folder with the files of one process, the centroid library cache never standing in for another dataset folder, and
what synthesis guarantees across DataLoader worker counts."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from monai.data import DataLoader

import monai_dafgan.synthesis.export as export
from monai_dafgan.__main__ import build_parser, main
from monai_dafgan.data import (
    IncompleteDatasetWarning,
    OutputFolderError,
    consep_file_list,
    load_consep,
    make_toy_consep,
    make_toy_sample,
    nuclei_file_list,
    read_manifest,
    shard_indices,
)
from monai_dafgan.data.manifest import shard_manifests
from monai_dafgan.networks import DAFFGenerator
from monai_dafgan.points import CentroidLibrary
from monai_dafgan.synthesis import (
    NucleiSynthesizer,
    SyntheticNucleiDataset,
    library_from_folder,
    resolve_centroid_library,
    write_synthetic_dataset,
)

TINY = dict(
    ngf=8, n_downsampling=2, n_blocks=1, local_enhancer=True, ngf_local=4, n_blocks_local=1, output_activation=None
)
SIZE, NUM = 64, 5


def tiny_synthesizer(seed: int = 0) -> NucleiSynthesizer:
    torch.manual_seed(seed)
    return NucleiSynthesizer(DAFFGenerator(5, 5, **TINY), DAFFGenerator(6, 3, **TINY), device="cpu", batch_size=2)


@pytest.fixture(scope="module")
def synthesizer() -> NucleiSynthesizer:
    return tiny_synthesizer()


@pytest.fixture(scope="module")
def library() -> CentroidLibrary:
    return CentroidLibrary.from_samples([make_toy_sample(128, seed=0, index=i) for i in range(2)])


@pytest.fixture
def one_thread():
    """Resumed files equal an uninterrupted run's at one thread count (the arithmetic depends on it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def reference(synthesizer, library, tmp_path, one_thread) -> Path:
    """An uninterrupted single-process run at one thread: what resumed and sharded folders must equal."""
    write(synthesizer, library, tmp_path / "reference")
    return tmp_path / "reference"


def write(synthesizer, library, out, **kwargs) -> Path:
    num_samples = kwargs.pop("num_samples", NUM)
    return write_synthetic_dataset(synthesizer, library, num_samples, out, SIZE, progress=False, **kwargs)


def sample_files(out: Path) -> list[Path]:
    return sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())


def assert_same_dataset(a: Path, b: Path) -> None:
    """Same files; PNGs byte for byte, .mat by content (their header holds the time of writing)."""
    files = sample_files(a)
    assert [f for f in files if f.name != "manifest.json"] == [f for f in sample_files(b) if f.name != "manifest.json"]
    for name in files:
        if name.suffix == ".png":
            assert (a / name).read_bytes() == (b / name).read_bytes(), name
        elif name.suffix == ".mat":
            x, y = scipy.io.loadmat(a / name), scipy.io.loadmat(b / name)
            for key in ("inst_map", "type_map", "inst_type", "inst_centroid"):
                np.testing.assert_array_equal(x[key], y[key], err_msg=f"{name} {key}")


@pytest.mark.usefixtures("one_thread")
def test_an_interrupted_run_resumes_to_the_files_of_an_uninterrupted_one(synthesizer, library, reference, tmp_path, monkeypatch):
    manifest = read_manifest(reference)
    assert manifest["complete"] and manifest["num_completed"] == NUM and manifest["completed"] == [[0, NUM]]
    assert manifest["settings"]["seed"] == 0 and len(manifest["settings"]["generators"]["mask_to_image"]) == 64

    out = tmp_path / "interrupted"
    calls = []
    real_write = export.write_consep_sample

    def failing_write(root, sample):
        if len(calls) == 3:
            raise RuntimeError("disk gone")
        calls.append(sample["name"])
        return real_write(root, sample)

    monkeypatch.setattr(export, "write_consep_sample", failing_write)
    with pytest.raises(RuntimeError, match="disk gone"):
        write(synthesizer, library, out)
    manifest = read_manifest(out)
    assert not manifest["complete"] and manifest["num_completed"] == 3
    with pytest.warns(IncompleteDatasetWarning, match=r"3 of 5 samples"):
        assert len(load_consep(out)) == 3

    # what a SIGKILL leaves: atomic_write's temporary files, an image whose label was never written
    (out / "Train" / "Images" / ".synthetic_4.png.k1ll3d.tmp").write_bytes(b"half a png")
    (out / ".manifest.json.k1ll3d.tmp").write_bytes(b"{")
    shutil.copy(reference / "Train" / "Images" / "synthetic_4.png", out / "Train" / "Images" / "synthetic_4.png")
    (out / "Train" / "Labels" / "synthetic_5.mat").write_bytes(b"not a mat file")

    written = []
    def counting_write(root, sample):
        written.append(sample["name"])
        return real_write(root, sample)

    monkeypatch.setattr(export, "write_consep_sample", counting_write)
    write(synthesizer, library, out)
    assert written == ["synthetic_4", "synthetic_5"]  # the three complete samples are kept
    assert not list(out.rglob("*.tmp"))
    assert_same_dataset(reference, out)
    assert read_manifest(out)["complete"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", IncompleteDatasetWarning)
        assert [s["name"] for s in load_consep(out)] == [f"synthetic_{i}" for i in range(1, NUM + 1)]

    written.clear()
    write(synthesizer, library, out)  # a complete folder: nothing to do
    assert written == [] and read_manifest(out)["complete"]


def test_other_settings_are_refused_and_overwrite_replaces(synthesizer, library, tmp_path):
    out = tmp_path / "synthetic"
    write(synthesizer, library, out, num_samples=3)
    before = {p: p.stat().st_mtime_ns for p in (out / "Train").rglob("*")}
    with pytest.raises(OutputFolderError, match=r"seed: 0 in the folder, 1 now.*--overwrite"):
        write(synthesizer, library, out, num_samples=3, seed=1)
    with pytest.raises(OutputFolderError, match=r"num_samples: 3 in the folder, 4 now"):
        write(synthesizer, library, out, num_samples=4)
    with pytest.raises(OutputFolderError, match=r"generators\.mask_to_image"):
        write(tiny_synthesizer(seed=1), library, out, num_samples=3)
    with pytest.raises(OutputFolderError, match=r"spatial_size"):
        write_synthetic_dataset(synthesizer, library, 3, out, 48, progress=False)
    assert {p: p.stat().st_mtime_ns for p in (out / "Train").rglob("*")} == before  # refused before any write

    write(synthesizer, library, out, num_samples=2, seed=1, prefix="other", overwrite=True)
    assert [f["name"] for f in consep_file_list(out)] == ["other_1", "other_2"]  # no sample of the old run is left
    manifest = read_manifest(out)
    assert manifest["complete"] and manifest["settings"]["seed"] == 1


def test_a_folder_of_samples_without_a_manifest_is_never_mixed_with(synthesizer, library, tmp_path):
    data = make_toy_consep(tmp_path / "real", num_tiles=2, size=64)
    files = sample_files(data)
    for overwrite in (False, True):
        with pytest.raises(OutputFolderError, match=r"holds 4 files.*no manifest.json"):
            write(synthesizer, library, data, overwrite=overwrite)
    assert sample_files(data) == files

    out = tmp_path / "synthetic"
    write(synthesizer, library, out, num_samples=2)
    (out / "Train" / "Images" / "stray.png").write_bytes((out / "Train" / "Images" / "synthetic_1.png").read_bytes())
    with pytest.raises(OutputFolderError, match=r"not samples of its manifest.json \(stray\.png\)"):
        write(synthesizer, library, out, num_samples=2)


def test_readers_warn_only_on_an_incomplete_manifest_of_ours(synthesizer, library, tmp_path):
    out = tmp_path / "synthetic"
    write(synthesizer, library, out, num_samples=2, preview=False)
    manifest_path = out / "manifest.json"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_consep(out)
        nuclei_file_list(out / "Train" / "Images", out / "Train" / "Labels")
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "complete": False, "num_completed": 1}))
    with pytest.warns(IncompleteDatasetWarning, match=r"Train is an incomplete synthetic dataset.*1 of 2 samples"):
        nuclei_file_list(out / "Train" / "Images", out / "Train" / "Labels")
    with pytest.warns(IncompleteDatasetWarning):
        load_consep(out)
    manifest_path.write_text(json.dumps({"complete": False, "tool": "someone else's manifest"}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_consep(out)
    with pytest.raises(OutputFolderError, match="not a manifest of this package"):  # nor is it overwritten
        write(synthesizer, library, out, num_samples=2, overwrite=True)


def test_shard_blocks_cover_every_sample_once():
    for num_samples in (0, 1, 5, 659):
        for num_shards in (1, 2, 3, 7):
            blocks = [shard_indices(k, num_shards, num_samples) for k in range(num_shards)]
            assert [i for block in blocks for i in block] == list(range(num_samples))
            assert max(map(len, blocks)) - min(map(len, blocks)) <= 1
    for bad in ((2, 2), (-1, 2), (0, 0), (True, 2)):
        with pytest.raises(ValueError, match="shard|shards"):
            shard_indices(*bad, 10)


@pytest.mark.usefixtures("one_thread")
def test_shards_fill_one_folder_with_the_files_of_one_process(synthesizer, library, reference, tmp_path):
    """3 shards of 5 samples in batches of 2: blocks [0], [1, 2], [3, 4], so two batches straddle two shards."""
    out = tmp_path / "sharded"
    write(synthesizer, library, out, shard=(2, 3))
    write(synthesizer, library, out, shard=(0, 3))
    assert read_manifest(out) is None and sorted(shard_manifests(out)) == [(0, 3), (2, 3)]
    assert shard_manifests(out)[(2, 3)]["completed"] == [[3, 5]] and shard_manifests(out)[(2, 3)]["complete"]
    with pytest.warns(IncompleteDatasetWarning, match=r"written in shards: 3 of 5 samples.*finished: \[0, 2\]"):
        assert len(load_consep(out)) == 3
    with pytest.raises(OutputFolderError, match=r"being written in \[3\] shards"):
        write(synthesizer, library, out, shard=(0, 2))
    with pytest.raises(ValueError, match="overwrite clears the whole folder"):
        write(synthesizer, library, out, shard=(1, 3), overwrite=True)

    write(synthesizer, library, out, shard=(1, 3))  # the last shard merges
    manifest, expected = read_manifest(out), read_manifest(reference)
    assert shard_manifests(out) == {} and not list(out.glob("manifest.shard-*"))
    assert {k: manifest[k] for k in ("settings", "complete", "num_completed", "completed")} == {
        k: expected[k] for k in ("settings", "complete", "num_completed", "completed")}  # fmt: skip
    assert [w["shard"] for w in manifest["written_by"]] == [[0, 3], [1, 3], [2, 3]]  # in shard order
    assert_same_dataset(reference, out)  # preview.png included: the shard of sample 0 made it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load_consep(out)) == NUM
    write(synthesizer, library, out, shard=(0, 3))  # a shard rerun in the finished folder leaves no shard manifest
    assert read_manifest(out)["complete"] and shard_manifests(out) == {}


@pytest.mark.usefixtures("one_thread")
def test_one_process_finishes_what_shards_began(synthesizer, library, reference, tmp_path):
    out = tmp_path / "sharded"
    write(synthesizer, library, out, shard=(1, 2))
    (out / "Train" / "Images" / ".synthetic_1.png.k1ll3d.tmp").write_bytes(b"half a png")  # shard 0, killed
    write(synthesizer, library, out)
    assert read_manifest(out)["complete"] and shard_manifests(out) == {}
    assert [w.get("shard") for w in read_manifest(out)["written_by"]] == [[1, 2], None]
    assert_same_dataset(reference, out)
    with pytest.raises(OutputFolderError, match="other settings"):  # shards, too, refuse other settings
        write(synthesizer, library, out, shard=(0, 2), seed=1)


def test_cli_shard_argument(tmp_path, capsys):
    parser = build_parser()
    assert parser.parse_args(["synthesize", "--out", "x", "--shard", "1/4"]).shard == (1, 4)
    for bad in ("4/4", "1-4", "a/2", "0/0"):
        with pytest.raises(SystemExit):
            parser.parse_args(["synthesize", "--out", "x", "--shard", bad])
        assert "--shard" in capsys.readouterr().err


def test_a_cached_library_never_stands_in_for_another_dataset_dir(tmp_path):
    first = make_toy_consep(tmp_path / "first", num_tiles=2, size=128, seed=0)
    second = make_toy_consep(tmp_path / "second", num_tiles=2, size=128, seed=1)
    saved = tmp_path / "bundle" / "models" / "centroid_library.npz"
    messages = []

    built = resolve_centroid_library(saved, first, announce=messages.append)
    assert "saved the centroid library" in messages.pop() and saved.is_file()
    assert built.provenance["dataset_dir"] == str(first.resolve()) and built.provenance["holdout"] == []
    assert CentroidLibrary.load(saved).fingerprint() == built.fingerprint()
    assert resolve_centroid_library(saved, None, announce=messages.append).fingerprint() == built.fingerprint()

    moved = shutil.copytree(first, tmp_path / "moved")  # the same tiles elsewhere: the cache is reused, silently
    assert resolve_centroid_library(saved, moved, announce=messages.append).fingerprint() == built.fingerprint()
    assert messages == []

    other = resolve_centroid_library(saved, second, announce=messages.append)
    assert other.fingerprint() == library_from_folder(second).fingerprint() != built.fingerprint()
    message = messages.pop()
    assert "building the centroid library of" in message and f"of {first.resolve()}" in message
    assert CentroidLibrary.load(saved).fingerprint() == built.fingerprint()  # the bundle's library is left alone
    held_out = resolve_centroid_library(saved, first, holdout=["toy_1"], announce=messages.append)
    assert held_out.names == ["toy_2"] and "building" in messages.pop()

    old_format = CentroidLibrary(built.points, built.sizes, built.names, built.shapes)  # saved before provenance
    old_format.save(saved)
    assert CentroidLibrary.load(saved).provenance is None
    resolve_centroid_library(saved, first, announce=messages.append)
    assert "unrecorded tiles" in messages.pop()


def test_cli_resumes_refuses_and_overwrites(tmp_path, capsys):
    help_text = " ".join(build_parser()._subparsers._group_actions[0].choices["synthesize"].format_help().split())
    assert "resumes" in help_text and "--overwrite" in help_text
    out = tmp_path / "synthetic"
    args = ["synthesize", "--num-samples", "2", "--size", "64", "--out", str(out), "--device", "cpu"]
    assert main(args) == 0 and read_manifest(out)["complete"]
    assert main(args + ["--seed", "1"]) == 2
    err = capsys.readouterr().err
    assert "seed: 0 in the folder, 1 now" in err and "--overwrite" in err
    assert main(args + ["--seed", "1", "--overwrite"]) == 0 and read_manifest(out)["settings"]["seed"] == 1


def test_across_worker_counts_point_sets_and_labels_are_equal_images_within_1e3(synthesizer, library):
    """What the docs promise across DataLoader worker counts: workers run torch on one thread, the main process on
    its own count, so image arithmetic may differ by ~1e-4; labels come from the same point sets."""
    dataset = SyntheticNucleiDataset(synthesizer, num_samples=4, spatial_size=SIZE, seed=3, point_source=library)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        main_process = [dataset[i] for i in range(4)]
    finally:
        torch.set_num_threads(threads)
    workers = list(DataLoader(dataset, batch_size=1, num_workers=2, collate_fn=lambda batch: batch[0]))
    for x, y in zip(main_process, workers):
        assert x["name"] == y["name"]
        np.testing.assert_array_equal(np.asarray(x["label_inst"]), np.asarray(y["label_inst"]))
        np.testing.assert_array_equal(np.asarray(x["label_type"]), np.asarray(y["label_type"]))
        np.testing.assert_allclose(np.asarray(x["image"]), np.asarray(y["image"]), atol=1e-3)
