"""The procedural CoNSeP-format toy dataset: layout, round trip, determinism, morphology, atomic writing."""

from __future__ import annotations

import numpy as np
import torch
import pytest
from skimage.measure import label, regionprops

from monai_dafgan.data import toy
from monai_dafgan.data.io import check_sample, read_sample, sample_points
from monai_dafgan.data.toy import make_toy_consep, make_toy_sample
from monai_dafgan.data.types import NUM_TYPES

SIZE = 256
NUM_TILES = 4
ARRAY_KEYS = ("image", "label_inst", "label_type")


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
    return make_toy_consep(tmp_path_factory.mktemp("toy") / "data", num_tiles=NUM_TILES, size=SIZE, seed=0)


@pytest.fixture(scope="module")
def toy_samples():
    return [make_toy_sample(SIZE, seed=0, index=i, name=f"toy_{i}") for i in range(1, NUM_TILES + 1)]


def _read_split(root, split="Train", prefix="toy", count=NUM_TILES):
    folder = root / split
    names = [f"{prefix}_{i}" for i in range(1, count + 1)]
    return [read_sample(folder / "Images" / f"{n}.png", folder / "Labels" / f"{n}.mat") for n in names]


def _assert_same_samples(first, second):
    assert len(first) == len(second)
    for a, b in zip(first, second):
        for key in ARRAY_KEYS:
            assert a[key].dtype == b[key].dtype, key
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def _instance_props(samples):
    """(type, area, eccentricity, number of 4-connected pieces) of every instance of the samples."""
    rows = []
    for sample in samples:
        types = sample_points(sample)[:, 2].astype(int)
        for region in regionprops(np.asarray(sample["label_inst"])[0]):
            pieces = label(region.image, connectivity=1).max()
            rows.append((types[region.label - 1], region.area, region.eccentricity, pieces))
    return np.array(rows, dtype=np.float64)


def test_writes_consep_layout(toy_root):
    names = [f"toy_{i}" for i in range(1, NUM_TILES + 1)]
    assert sorted(p.name for p in (toy_root / "Train" / "Images").iterdir()) == sorted(f"{n}.png" for n in names)
    assert sorted(p.name for p in (toy_root / "Train" / "Labels").iterdir()) == sorted(f"{n}.mat" for n in names)
    assert sorted(p.name for p in toy_root.parent.iterdir()) == [toy_root.name]  # no temporary folder left over


def test_read_back_equals_generated_sample(toy_root, toy_samples):
    read = _read_split(toy_root)
    _assert_same_samples(read, toy_samples)
    for sample in toy_samples:
        check_sample(sample)
        assert sample["image"].shape == (3, SIZE, SIZE) and sample["image"].dtype == torch.float32
        assert 0 <= sample["image"].min() and sample["image"].max() <= 255
        np.testing.assert_array_equal(sample["image"], np.rint(sample["image"]))


def test_deterministic_and_independent_of_num_tiles(tmp_path, toy_root):
    again = make_toy_consep(tmp_path / "again", num_tiles=2, size=SIZE, seed=0)
    _assert_same_samples(_read_split(again, count=2), _read_split(toy_root, count=2))
    other_seed = make_toy_sample(SIZE, seed=1, index=1)
    assert not np.array_equal(other_seed["image"], make_toy_sample(SIZE, seed=0, index=1)["image"])


def test_density_touching_and_all_types(toy_samples):
    counts = np.array([np.bincount(sample_points(s)[:, 2].astype(int), minlength=NUM_TYPES + 1)[1:] for s in toy_samples])
    assert np.all(counts.sum(axis=0) > 0), counts  # every type appears
    assert np.all((counts.sum(axis=1) >= 40) & (counts.sum(axis=1) <= 160)), counts
    touching = 0
    for sample in toy_samples:
        inst = sample["label_inst"][0]
        left, right = inst[:, :-1], inst[:, 1:]
        touching += np.count_nonzero((left > 0) & (right > 0) & (left != right))
    assert touching > 0


def test_instances_are_single_components_of_minimum_area(toy_samples):
    props = _instance_props(toy_samples)
    assert np.all(props[:, 3] == 1)
    assert props[:, 1].min() >= toy.MIN_INSTANCE_AREA


def test_type_morphology(toy_samples):
    props = _instance_props(toy_samples)
    area = {t: props[props[:, 0] == t, 1] for t in range(1, NUM_TYPES + 1)}
    eccentricity = {t: props[props[:, 0] == t, 2] for t in range(1, NUM_TYPES + 1)}
    assert 50 <= np.median(area[2]) <= 160
    assert np.median(area[2]) < np.median(area[3])
    assert 200 <= np.median(area[3]) <= 600
    assert np.median(eccentricity[4]) > 0.9 > np.median(eccentricity[2])


def test_refuses_to_overwrite(tmp_path):
    root = make_toy_consep(tmp_path / "data", num_tiles=2, size=64, seed=3)
    before = _read_split(root, count=2)
    with pytest.raises(FileExistsError):
        make_toy_consep(root, num_tiles=1, size=64, seed=4)
    _assert_same_samples(_read_split(root, count=2), before)
    make_toy_consep(root, num_tiles=1, size=64, seed=4, overwrite=True)
    assert sorted(p.name for p in (root / "Train" / "Images").iterdir()) == ["toy_1.png"]
    assert not np.array_equal(_read_split(root, count=1)[0]["image"], before[0]["image"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_empty_split_folder_and_other_split(tmp_path):
    (tmp_path / "data" / "Test").mkdir(parents=True)
    root = make_toy_consep(tmp_path / "data", num_tiles=1, size=64, split="Test", prefix="test")
    assert (root / "Test" / "Images" / "test_1.png").is_file()
    assert (root / "Test" / "Labels" / "test_1.mat").is_file()


def test_nothing_written_when_generation_fails(tmp_path, monkeypatch):
    real = toy.make_toy_sample

    def fail_on_second(size, seed, index, name=None):
        if index == 2:
            raise RuntimeError("boom")
        return real(size, seed, index, name)

    monkeypatch.setattr(toy, "make_toy_sample", fail_on_second)
    with pytest.raises(RuntimeError, match="boom"):
        make_toy_consep(tmp_path / "data", num_tiles=3, size=64)
    assert not (tmp_path / "data" / "Train").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["data"]


@pytest.mark.parametrize("size", [(96, 160), (160, 64)])
def test_non_square_sizes(tmp_path, size):
    root = make_toy_consep(tmp_path / "data", num_tiles=1, size=size)
    (sample,) = _read_split(root, count=1)
    assert sample["image"].shape == (3, *size)
    assert sample["label_inst"].shape == sample["label_type"].shape == (1, *size)
    check_sample(sample)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_tiles": 0},
        {"num_tiles": 2.0},
        {"num_tiles": True},
        {"size": 63},
        {"size": (64, 32)},
        {"size": (64,)},
        {"size": "256"},
        {"seed": -1},
        {"split": ""},
        {"split": "a/b"},
        {"prefix": ".."},
    ],
)
def test_bad_arguments(tmp_path, kwargs):
    with pytest.raises(ValueError):
        make_toy_consep(tmp_path / "data", **kwargs)
    assert not (tmp_path / "data").exists()
