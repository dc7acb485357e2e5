"""The three-stage synthesizer: instance recovery on hand-made G1 outputs, end-to-end synthesis with tiny random
generators (mechanics, not realism), bundle loading and its errors, and SyntheticNucleiDataset determinism."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import DataLoader
from monai.transforms import Compose, RandFlipd, RandGaussianNoised

from monai_dafgan.data import check_sample, make_toy_sample, sample_points
from monai_dafgan.networks import DAFFGenerator
from monai_dafgan.points import CentroidLibrary, points_to_maps
from monai_dafgan.synthesis import (
    NucleiSynthesizer,
    SyntheticNucleiDataset,
    WeightMismatchError,
    network_channels,
    point_set_at,
    recover_instances,
)

pytestmark = pytest.mark.usefixtures("single_thread")

REPO = Path(__file__).resolve().parents[1]
TINY = dict(ngf=8, n_downsampling=2, n_blocks=1, local_enhancer=True, ngf_local=4, n_blocks_local=1, output_activation=None)
SAMPLE_KEYS = {"image", "label_inst", "label_type", "name"}  # exactly a real sample's
SIZE = 64


def tiny_generators(num_types: int = 4) -> tuple[DAFFGenerator, DAFFGenerator]:
    torch.manual_seed(0)
    return DAFFGenerator(num_types + 1, num_types + 1, **TINY), DAFFGenerator(num_types + 2, 3, **TINY)


@pytest.fixture(scope="module")
def synthesizer() -> NucleiSynthesizer:
    return NucleiSynthesizer(*tiny_generators(), device="cpu", batch_size=2)


@pytest.fixture(scope="module")
def library() -> CentroidLibrary:
    return CentroidLibrary.from_samples([make_toy_sample(128, seed=0, index=i) for i in range(2)])


@pytest.fixture(scope="module")
def toy_point_sets() -> list[np.ndarray]:
    return [sample_points(make_toy_sample(SIZE, seed=0, index=i)) for i in range(3)]


# ---------------------------------------------------------------------------------------------- instance recovery
def disk(shape, centre, radius) -> np.ndarray:
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2


def probabilities_of(type_map: np.ndarray, num_types: int = 4) -> np.ndarray:
    """A confident G1 output: one-hot of a (H, W) type map, softened a little."""
    one_hot = np.eye(num_types + 1, dtype=np.float32)[type_map].transpose(2, 0, 1)
    return 0.9 * one_hot + 0.1 / (num_types + 1)


def recover(type_map: np.ndarray, points, **kwargs) -> dict:
    points = np.asarray(points, np.float32).reshape(-1, 3)
    _, markers = points_to_maps(points, type_map.shape)
    result = recover_instances(probabilities_of(type_map), markers, points, **kwargs)
    check_sample({"image": np.zeros((3, *type_map.shape), np.float32), **result})
    return result


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_touching_nuclei_of_one_type_are_split_at_the_neck():
    shape = (48, 64)
    left, right = disk(shape, (24, 22), 9), disk(shape, (24, 38), 9)  # overlap: one blob with a neck at col 30
    type_map = np.where(left | right, 3, 0)
    # markers off the disk centres: the cut follows the neck (column 30), not the markers' midline (column 25)
    result = recover(type_map, [[24, 16, 3], [24, 34, 3]])
    inst = result["label_inst"][0]
    assert result["kept"].tolist() == [True, True] and inst.max() == 2
    cols = np.arange(shape[1])[None, :]
    assert iou(inst == 1, (left | right) & (cols < 30)) > 0.9
    assert iou(inst == 2, (left | right) & (cols > 30)) > 0.9


def test_touching_nuclei_of_two_types_are_split_at_the_type_boundary():
    type_map = np.zeros((40, 60), np.int64)
    type_map[8:32, 6:30] = 3  # a large nucleus ...
    type_map[14:26, 30:42] = 2  # ... and a small one pressed against it, no neck in between
    result = recover(type_map, [[20, 18, 3], [20, 33, 2]])
    inst = result["label_inst"][0]
    assert iou(inst == 1, type_map == 3) > 0.95 and iou(inst == 2, type_map == 2) > 0.95


def test_recovery_keeps_one_typed_instance_per_drawn_point():
    shape = (64, 64)
    type_map = np.zeros(shape, np.int64)
    type_map[disk(shape, (12, 12), 6)] = 2  # drawn as inflammatory, requested as spindle: the request wins
    type_map[disk(shape, (50, 50), 7)] = 1  # a blob G1 drew without any point: dropped
    type_map[30:32, 40:43] = 3  # a 6 px fragment under a point: under min_area, dropped
    type_map[disk(shape, (40, 14), 5)] = 3
    points = [[12, 12, 4], [30, 30, 1], [31, 41, 3], [40, 14, 3]]  # point 1 lies on background
    result = recover(type_map, points)
    assert result["kept"].tolist() == [True, False, False, True]
    inst, types = result["label_inst"][0], result["label_type"][0]
    assert inst.max() == 2 and inst[50, 50] == 0 and inst[30, 41] == 0
    assert iou(inst == 1, disk(shape, (12, 12), 6)) == 1.0 and iou(inst == 2, disk(shape, (40, 14), 5)) == 1.0
    assert set(np.unique(types[inst == 1])) == {4} and set(np.unique(types[inst == 2])) == {3}
    np.testing.assert_allclose(result["points"], [[12, 12, 4], [40, 14, 3]], atol=1e-4)
    assert recover(type_map, points, min_area=1)["kept"].tolist() == [True, False, True, True]


def test_marker_straddling_two_pieces_keeps_the_piece_holding_most_of_it():
    type_map = np.zeros((32, 32), np.int64)
    type_map[10:22, 4:18] = 3  # 9 pixels of the marker disk (radius 2 around column 17) lie on this piece,
    type_map[10:22, 19:30] = 3  # 1 on this one, across a background gap at column 18
    result = recover(type_map, [[16, 17, 3]])
    assert result["label_inst"][0].max() == 1
    np.testing.assert_array_equal(result["label_inst"][0] > 0, np.pad(type_map[:, :18] > 0, ((0, 0), (0, 14))))


@pytest.mark.parametrize("points", [np.zeros((0, 3), np.float32), np.array([[5, 5, 1]], np.float32)])
def test_recovery_without_nuclei_is_a_valid_empty_sample(points):
    result = recover(np.zeros((16, 16), np.int64), points)
    assert result["label_inst"].max() == 0 and result["points"].shape == (0, 3)
    assert result["kept"].tolist() == [False] * len(points)


def test_recovery_rejects_markers_without_points():
    _, markers = points_to_maps(np.array([[4, 4, 1], [9, 9, 2]], np.float32), (16, 16))
    with pytest.raises(ValueError, match="only 1 points"):
        recover_instances(probabilities_of(np.ones((16, 16), np.int64)), markers, np.array([[4, 4, 1]], np.float32))


# ---------------------------------------------------------------------------------------------- synthesizer
def test_synthesize_gives_contract_samples_independent_of_batching(synthesizer, toy_point_sets):
    samples = synthesizer.synthesize(toy_point_sets, SIZE, return_intermediates=True)  # batch_size 2: two chunks
    assert len(samples) == 3
    for i, (sample, requested) in enumerate(zip(samples, toy_point_sets)):
        check_sample(sample)
        assert "synthetic" not in sample and sample["name"] == f"synthetic_{i}"
        assert sample["point_map"].shape == (5, SIZE, SIZE) and sample["probabilities"].shape == (5, SIZE, SIZE)
        np.testing.assert_allclose(sample["probabilities"].sum(0), 1.0, atol=1e-5)
        np.testing.assert_array_equal(sample["requested_points"], requested)
        assert sample["kept"].sum() == len(sample["points"]) <= len(requested)
        np.testing.assert_array_equal(sample["points"][:, 2], requested[sample["kept"], 2])
        np.testing.assert_allclose(sample_points({k: v for k, v in sample.items() if k != "points"}), sample["points"])
    one_by_one = NucleiSynthesizer(synthesizer.points_to_mask, synthesizer.mask_to_image, device="cpu", batch_size=1)
    again = one_by_one.synthesize_one(toy_point_sets[2], SIZE, name="x")
    assert set(again) == SAMPLE_KEYS and again["name"] == "x"
    np.testing.assert_array_equal(again["label_inst"], samples[2]["label_inst"])
    np.testing.assert_allclose(again["image"], samples[2]["image"], atol=1e-3)


def test_empty_point_set_gives_a_valid_empty_sample(synthesizer):
    sample = synthesizer.synthesize_one(np.zeros((0, 3), np.float32), (SIZE, 48))
    check_sample(sample)
    assert sample["image"].shape == (3, SIZE, 48) and sample["label_inst"].max() == 0
    assert synthesizer.synthesize([], SIZE) == []


class CountingNetwork(torch.nn.Module):
    """Wraps a network and counts its forward calls."""

    def __init__(self, network):
        super().__init__()
        self.network, self.calls, self.size_divisor = network, 0, network.size_divisor

    def forward(self, x):
        self.calls += 1
        return self.network(x)


@pytest.mark.parametrize(
    "point_sets, size, match",
    [
        ([np.array([[3, 3, 1]]), np.array([[70, 3, 1]])], SIZE, "outside the 64x64 window"),
        ([np.array([[3, 3, 1]]), np.array([[3, 3, 5]])], SIZE, "types must be integers in 1..4"),
        ([np.array([[3, 3, 1]])], (SIZE, 8), "too small for these generators"),
    ],
)
def test_bad_inputs_fail_before_any_work(point_sets, size, match):
    g1, g2 = tiny_generators()
    counting = CountingNetwork(g1)
    synthesizer = NucleiSynthesizer(counting, g2, device="cpu", batch_size=1)
    calls_at_construction = counting.calls  # the channel check's dry forward
    with pytest.raises(ValueError, match=match):
        synthesizer.synthesize(point_sets, size)
    assert counting.calls == calls_at_construction


@pytest.mark.parametrize(
    "g1, g2, match",
    [
        (DAFFGenerator(5, 4, **TINY), DAFFGenerator(6, 3, **TINY), r"points_to_mask maps 5 -> 4 channels.*5 -> 5"),
        (DAFFGenerator(5, 5, **TINY), DAFFGenerator(5, 3, **TINY), r"mask_to_image maps 5 -> 3 channels.*6 -> 3"),
        (torch.nn.Conv2d(5, 5, 1), torch.nn.Sequential(torch.nn.Conv2d(6, 4, 1)), r"mask_to_image maps 6 -> 4"),
    ],
)
def test_channel_counts_must_match_the_types(g1, g2, match):
    with pytest.raises(ValueError, match=match):
        NucleiSynthesizer(g1, g2, num_types=4, device="cpu")


def test_network_channels_of_plain_modules_by_dry_forward():
    assert network_channels(torch.nn.Sequential(torch.nn.Conv2d(6, 8, 3, padding=1), torch.nn.Conv2d(8, 3, 1))) == (6, 3)
    assert network_channels(DAFFGenerator(5, 5, **TINY)) == (5, 5)


def test_cuda_synthesizer_refuses_dataloader_workers(synthesizer, monkeypatch):
    gpu_like = NucleiSynthesizer(synthesizer.points_to_mask, synthesizer.mask_to_image, device="cpu")
    gpu_like.device = torch.device("cuda")  # only the check is exercised: nothing runs
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: object())
    with pytest.raises(RuntimeError, match="num_workers=0"):
        gpu_like.synthesize([np.zeros((0, 3))], SIZE)


# ---------------------------------------------------------------------------------------------- bundles
def _generator_bundle(name: str, root: Path, edit=None) -> Path:
    """A copy of a generator bundle with random weights for its inference config's network_def."""
    bundle = root / name
    shutil.copytree(REPO / "bundles" / name, bundle, ignore=shutil.ignore_patterns("runs", "eval", "*.pt", "*.ts"))
    config = bundle / "configs" / "inference.yaml"
    if edit is not None:
        config.write_text(edit(config.read_text()))
    parser = ConfigParser()
    parser.read_config(str(config))
    torch.save(parser.get_parsed_content("network_def").state_dict(), bundle / "models" / "model.pt")
    return bundle


@pytest.fixture(scope="module")
def generator_bundles(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("bundles")
    return _generator_bundle("dafgan_points2mask", root), _generator_bundle("dafgan_mask2image", root)


def test_from_bundles_builds_the_inference_networks(generator_bundles, library):
    with pytest.raises(ValueError, match="needs nucleus_shapes"):  # the G1 bundle's default is the ellipse encoding
        NucleiSynthesizer.from_bundles(*generator_bundles, device="cpu")
    synthesizer = NucleiSynthesizer.from_bundles(*generator_bundles, device="cpu", nucleus_shapes=library.nucleus_shapes)
    assert synthesizer.points_to_mask.config["out_channels"] == 5 and synthesizer.radius == 2
    assert synthesizer.point_encoding == "ellipse"
    check_sample(synthesizer.synthesize_one(np.array([[10, 12, 3]], np.float32), 32))
    expected = r"holds .* generators with baseline=False, but the config asks for .*baseline True\. Pass overrides="
    with pytest.raises(WeightMismatchError, match=expected):
        NucleiSynthesizer.from_bundles(*generator_bundles, device="cpu", overrides={"baseline": True}, nucleus_shapes=library.nucleus_shapes)


def test_from_bundles_without_weights_names_the_file(generator_bundles, tmp_path):
    empty = tmp_path / "dafgan_mask2image"
    shutil.copytree(generator_bundles[1], empty, ignore=shutil.ignore_patterns("*.pt"))
    with pytest.raises(FileNotFoundError, match=r"dafgan_mask2image/models/model\.pt not found.*Train the generator bundles first"):
        NucleiSynthesizer.from_bundles(generator_bundles[0], empty)


def test_from_bundles_class_count_mismatch(generator_bundles, tmp_path):
    three_types = _generator_bundle("dafgan_mask2image", tmp_path, lambda text: text.replace("num_types: 4", "num_types: 3"))
    with pytest.raises(ValueError, match=r"mask_to_image maps 5 -> 3 channels, but with num_types=4"):
        NucleiSynthesizer.from_bundles(generator_bundles[0], three_types, device="cpu")


SYNTHESIS_CONFIG = """
imports:
  - $import monai_dafgan
num_types: 4
point_radius: 3
min_area: 5
tiny: {ngf: 8, n_downsampling: 2, n_blocks: 1, ngf_local: 4, n_blocks_local: 1}
points_to_mask_def: "$monai_dafgan.networks.DAFFGenerator(@num_types + 1, @num_types + 1, output_activation=None, **@tiny)"
mask_to_image_def: "$monai_dafgan.networks.DAFFGenerator(@num_types + 2, 3, **@tiny)"
"""


def test_from_bundle_reads_the_synthesis_bundle_layout(tmp_path):
    bundle = tmp_path / "synthesis"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "models").mkdir()
    (bundle / "configs" / "inference.yaml").write_text(SYNTHESIS_CONFIG)
    g1, g2 = DAFFGenerator(5, 5, **TINY), DAFFGenerator(6, 3, **{**TINY, "output_activation": "tanh"})
    torch.save(g1.state_dict(), bundle / "models" / "points_to_mask.pt")
    with pytest.raises(FileNotFoundError, match=r"models/mask_to_image\.pt not found"):
        NucleiSynthesizer.from_bundle(bundle)
    torch.save(g2.state_dict(), bundle / "models" / "mask_to_image.pt")
    synthesizer = NucleiSynthesizer.from_bundle(bundle, device="cpu", batch_size=4)
    assert (synthesizer.radius, synthesizer.min_area, synthesizer.batch_size) == (3, 5, 4)
    for loaded, saved in ((synthesizer.points_to_mask, g1), (synthesizer.mask_to_image, g2)):
        torch.testing.assert_close(loaded.state_dict(), saved.state_dict())


# ---------------------------------------------------------------------------------------------- dataset
def augmentation():
    keys = ["image", "label_inst", "label_type"]
    return Compose([RandFlipd(keys, prob=0.5, spatial_axis=1), RandGaussianNoised("image", prob=1.0, std=5.0)])


def make_dataset(synthesizer, library, transform=None, seed=3) -> SyntheticNucleiDataset:
    return SyntheticNucleiDataset(synthesizer, num_samples=4, spatial_size=SIZE, seed=seed, transform=transform, point_source=library)


def assert_same_samples(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys() and x["name"] == y["name"]
        for key in ("label_inst", "label_type"):
            np.testing.assert_array_equal(np.asarray(x[key]), np.asarray(y[key]), err_msg=key)
        np.testing.assert_allclose(np.asarray(x["image"]), np.asarray(y["image"]), atol=1e-3)


def test_dataset_items_are_contract_samples(synthesizer, library):
    dataset = make_dataset(synthesizer, library)
    item = dataset[1]
    assert set(item) == SAMPLE_KEYS and item["name"] == "synthetic_s3_000001"
    check_sample(item)
    other_seed = make_dataset(synthesizer, library, seed=4)[1]
    assert not np.array_equal(other_seed["label_inst"], item["label_inst"])
    with pytest.raises(IndexError):
        dataset[4]


def test_dataset_items_identical_across_runs_and_worker_counts(synthesizer, library):
    dataset = make_dataset(synthesizer, library, augmentation())
    first = [dataset[i] for i in range(4)]
    assert_same_samples(first, [make_dataset(synthesizer, library, augmentation())[i] for i in range(4)])
    loader = DataLoader(dataset, batch_size=1, num_workers=2, collate_fn=lambda batch: batch[0])
    assert_same_samples(first, list(loader))
    dataset.set_epoch(1)  # another epoch: other augmentation, same synthetic sample
    moved = dataset[0]
    np.testing.assert_array_equal(sample_points(moved)[:, 2], sample_points(first[0])[:, 2])  # flips keep ids
    assert not np.allclose(moved["image"], first[0]["image"])


SUBPROCESS_SCRIPT = """
import sys, pickle, torch
from monai_dafgan.networks import DAFFGenerator
from monai_dafgan.points import CentroidLibrary
from monai_dafgan.synthesis import NucleiSynthesizer, SyntheticNucleiDataset
sys.path.insert(0, {tests!r})
from test_synthesis import TINY, augmentation
g1, g2 = DAFFGenerator(5, 5, **TINY), DAFFGenerator(6, 3, **TINY)
g1.load_state_dict(torch.load({g1!r})); g2.load_state_dict(torch.load({g2!r}))
synthesizer = NucleiSynthesizer(g1, g2, device="cpu", batch_size=2)
dataset = SyntheticNucleiDataset(synthesizer, 4, {size}, seed=3, transform=augmentation(), point_source=CentroidLibrary.load({library!r}))
pickle.dump([dataset[i] for i in range(4)], open({out!r}, "wb"))
"""


def test_dataset_items_identical_in_another_process(synthesizer, library, tmp_path):
    files = {name: str(tmp_path / f"{name}.pt") for name in ("g1", "g2")}
    torch.save(synthesizer.points_to_mask.state_dict(), files["g1"])
    torch.save(synthesizer.mask_to_image.state_dict(), files["g2"])
    library.save(tmp_path / "library.npz")
    out = tmp_path / "items.pkl"
    script = SUBPROCESS_SCRIPT.format(
        tests=str(Path(__file__).parent), size=SIZE, library=str(tmp_path / "library.npz"), out=str(out), **files
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(out, "rb") as f:
        assert_same_samples([make_dataset(synthesizer, library, augmentation())[i] for i in range(4)], pickle.load(f))


def test_dataset_point_source_as_a_sequence(synthesizer, toy_point_sets):
    as_dicts = [{"points": p} for p in toy_point_sets]
    from_arrays = SyntheticNucleiDataset(synthesizer, 3, SIZE, point_source=toy_point_sets)
    from_dicts = SyntheticNucleiDataset(synthesizer, 3, SIZE, point_source=as_dicts)
    assert_same_samples([from_arrays[2]], [from_dicts[2]])
    assert len(sample_points(from_arrays[2])) <= len(toy_point_sets[2])
    with pytest.raises(ValueError, match="fewer than num_samples=4"):
        SyntheticNucleiDataset(synthesizer, 4, SIZE, point_source=toy_point_sets)
    with pytest.raises(ValueError, match="point_source is required"):
        SyntheticNucleiDataset(synthesizer, 4, SIZE)
    with pytest.raises(ValueError, match="too small"):
        SyntheticNucleiDataset(synthesizer, 3, 8, point_source=toy_point_sets)


def test_dataset_min_nuclei_asks_for_point_sets_that_large(synthesizer, library):
    dataset = SyntheticNucleiDataset(synthesizer, 6, SIZE, seed=0, point_source=library, min_nuclei=4)
    assert all(len(point_set_at(dataset.point_source, i)) >= 4 for i in range(6))
    check_sample(dataset[0])


def test_dataset_mixer_and_export_make_one_sample_i(synthesizer, library, tmp_path):
    """Sample i of a seed is one thing (SyntheticSamples) whether indexed, mixed into batches or written out."""
    import scipy.io

    from monai_dafgan.data import read_rgb_image
    from monai_dafgan.synthesis import SyntheticBatchMixer, write_synthetic_dataset

    dataset = SyntheticNucleiDataset(synthesizer, 4, SIZE, seed=3, point_source=library)
    mixer = SyntheticBatchMixer(synthesizer, library, fraction=1.0, seed=3, spatial_size=SIZE)
    mixed = mixer.synthesize(4, (SIZE, SIZE))
    root = write_synthetic_dataset(synthesizer, library, 4, tmp_path / "out", SIZE, seed=3, preview=False,
                                   progress=False, batch_size=4)  # fmt: skip
    assert_same_samples([dataset[i] for i in range(4)], mixed)
    for i in range(4):
        item = dataset[i]
        written = scipy.io.loadmat(root / "Labels" / f"synthetic_{i + 1}.mat")
        np.testing.assert_array_equal(written["inst_map"], np.asarray(item["label_inst"])[0])
        image = read_rgb_image(root / "Images" / f"synthetic_{i + 1}.png").transpose(2, 0, 1)
        assert np.abs(image.astype(np.float32) - np.asarray(item["image"])).max() <= 1  # 8-bit rounding
