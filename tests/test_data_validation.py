"""Data and types: every odd input ends in a clear error or a documented behaviour, never a silent change."""

from __future__ import annotations

import logging
import struct
import warnings
import zlib

import numpy as np
import pytest
import scipy.io
from monai.data import Dataset
from PIL import Image

from monai_dafgan.data import (
    LoadNucleiSampled,
    NucleiDataError,
    SlidingWindowCropDataset,
    consep_file_list,
    dataset_type_scheme,
    load_consep,
    load_nuclei_folder,
    make_toy_sample,
    nuclei_file_list,
    read_rgb_image,
    read_sample,
    sample_points,
)
from monai_dafgan.data.instances import majority_type_per_id
from monai_dafgan.data.pairs import mask_to_image_pairs, points_to_mask_pairs
from monai_dafgan.metrics import NucleiMetric, nuclei_metrics
from monai_dafgan.metrics.detection import pair_centroids
from monai_dafgan.points import (
    CentroidLibrary,
    RandPointAffine,
    RandPointCombine,
    RandPointCover,
    RandPointFlip,
    RandPointRotate90,
    RandPointSetAugmentd,
    map_to_points,
    points_to_maps,
)

# three nuclei: id 1 a 2x2 block, id 2 a 2x2 block, id 3 one pixel
INST = np.zeros((6, 8), np.int32)
INST[0:2, 0:2] = 1
INST[3:5, 4:6] = 2
INST[5, 7] = 3


def _write_tile(root, name, inst_type, split="Train"):
    images, labels = root / split / "Images", root / split / "Labels"
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((6, 8, 3), 200, np.uint8)).save(images / f"{name}.png")
    scipy.io.savemat(labels / f"{name}.mat", {"inst_map": INST, "inst_type": np.array(inst_type).reshape(-1, 1)})
    return images / f"{name}.png", labels / f"{name}.mat"


def _types(sample) -> list[int]:
    return sample_points(sample)[:, 2].astype(int).tolist()


# ---- 1. the type scheme is decided once per dataset ---------------------------------------------------------


@pytest.fixture
def raw_dataset(tmp_path):
    """Raw CoNSeP labels: tile t_1 holds a fibroblast (raw 5); t_2 only raw 1..4, so alone it looks merged."""
    _write_tile(tmp_path, "t_1", [4, 5, 2])
    _write_tile(tmp_path, "t_2", [4, 1, 3])
    return tmp_path


def test_auto_type_scheme_is_decided_once_per_dataset(raw_dataset, caplog):
    with caplog.at_level(logging.INFO, logger="monai_dafgan.data.datasets"), warnings.catch_warnings():
        warnings.simplefilter("error")  # a dataset-wide decision warns about no single file
        tiles = load_consep(raw_dataset)
    # raw 4 (dysplastic epithelial) is merged 3 in both tiles; t_2 alone would have kept it as 4 (spindle)
    assert [_types(t) for t in tiles] == [[3, 4, 2], [3, 1, 3]]
    assert [t["label_type"].meta["type_scheme"] for t in tiles] == ["consep_raw", "consep_raw"]
    assert "type ids read as consep_raw" in caplog.text
    assert dataset_type_scheme(consep_file_list(raw_dataset)) == "consep_raw"

    files = consep_file_list(raw_dataset)  # streamed: the file dicts carry the decision to LoadNucleiSampled
    assert {f["type_scheme"] for f in files} == {"consep_raw"}
    streamed = Dataset(files, transform=LoadNucleiSampled())
    assert _types(streamed[1]) == [3, 1, 3] and "type_scheme" not in streamed[1]
    folder = load_nuclei_folder(raw_dataset / "Train" / "Images", raw_dataset / "Train" / "Labels")
    assert [_types(t) for t in folder] == [[3, 4, 2], [3, 1, 3]]


def test_merged_dataset_keeps_type_4_and_explicit_schemes_win(raw_dataset, tmp_path):
    merged_root = tmp_path / "merged"
    _write_tile(merged_root, "m_1", [4, 1, 3])
    _write_tile(merged_root, "m_2", [2, 2, 1])
    tiles = load_consep(merged_root)
    assert _types(tiles[0]) == [4, 1, 3] and tiles[0]["label_type"].meta["type_scheme"] == "merged"
    # an explicit scheme is used as told, by the file list or by the loader over the file dict's decision
    assert _types(load_consep(merged_root, type_scheme="consep_raw")[0]) == [3, 1, 3]
    files = consep_file_list(raw_dataset, type_scheme="merged")
    assert {f["type_scheme"] for f in files} == {"merged"}
    assert _types(LoadNucleiSampled(type_scheme="consep_raw")(files[1])) == [3, 1, 3]
    with pytest.raises(NucleiDataError, match=r"t_1\.mat: type id 5 is out of range 0..4 for merged types"):
        LoadNucleiSampled()(files[0])


def test_single_file_auto_decides_alone_and_warns_when_it_reads_raw(raw_dataset):
    root = raw_dataset / "Train"
    with pytest.warns(UserWarning, match=r"t_1\.mat: type ids up to 5 read as raw CoNSeP for this file alone"):
        sample = read_sample(root / "Images" / "t_1.png", root / "Labels" / "t_1.mat")
    assert _types(sample) == [3, 4, 2] and sample["label_type"].meta["type_scheme"] == "consep_raw"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        alone = read_sample(root / "Images" / "t_2.png", root / "Labels" / "t_2.mat")  # documented: read as merged
        told = read_sample(root / "Images" / "t_2.png", root / "Labels" / "t_2.mat", type_scheme="consep_raw")
    assert _types(alone) == [4, 1, 3] and alone["label_type"].meta["type_scheme"] == "merged"
    assert _types(told) == [3, 1, 3]


# ---- 2. 16-bit RGB images are refused -------------------------------------------------------------------------


def _write_png16(path, array: np.ndarray) -> None:
    """A 16-bit RGB (colour type 2) or RGBA (6) PNG, which Pillow can read but not write."""
    h, w, c = array.shape
    raw = b"".join(b"\x00" + array[r].astype(">u2").tobytes() for r in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 16, 2 if c == 3 else 6, 0, 0, 0)
    chunks = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunks)


@pytest.mark.parametrize("channels", [3, 4])
def test_16_bit_rgb_png_is_refused_not_cut_to_8_bits(tmp_path, channels):
    path = tmp_path / "deep.png"
    _write_png16(path, np.random.default_rng(0).integers(0, 65536, (4, 5, channels), dtype=np.uint16))
    with pytest.raises(NucleiDataError, match=r"deep\.png: expected 8-bit RGB, got 16-bit RGB"):
        read_rgb_image(path)
    Image.fromarray(np.full((4, 5, 3), 7, np.uint8)).save(tmp_path / "fine.png")
    assert read_rgb_image(tmp_path / "fine.png").dtype == np.uint8


def test_16_bit_rgb_tiff_is_refused(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    tifffile.imwrite(tmp_path / "deep.tif", np.full((4, 5, 3), 40000, np.uint16), photometric="rgb")
    with pytest.raises(NucleiDataError, match=r"deep\.tif: expected 8-bit RGB, got 16-bit RGB"):
        read_rgb_image(tmp_path / "deep.tif")


# ---- 3. one stem, two images -----------------------------------------------------------------------------------


def test_two_images_with_one_stem_are_refused(tmp_path):
    _, label = _write_tile(tmp_path, "t_1", [1, 2, 3])
    images = label.parent.parent / "Images"
    Image.fromarray(np.full((6, 8, 3), 200, np.uint8)).save(images / "t_1.jpg")
    with pytest.raises(NucleiDataError, match=r"Images: images share a name .*t_1\.jpg and t_1\.png"):
        nuclei_file_list(images, label.parent)
    with pytest.raises(NucleiDataError, match=r"t_1\.jpg and t_1\.png"):
        consep_file_list(tmp_path)


# ---- 4. huge type ids ------------------------------------------------------------------------------------------


def test_huge_type_id_gives_the_range_error_not_a_memory_error(tmp_path):
    _write_tile(tmp_path, "t", [1, 1, 1])
    type_map = np.where(INST > 0, 2, 0).astype(np.int64)
    type_map[5, 7] = 10**9
    np.save(tmp_path / "t.npy", np.stack([INST.astype(np.int64), type_map], axis=-1))
    with pytest.raises(NucleiDataError, match=r"t\.npy: type id 1000000000 is out of range 0..7"):
        read_sample(tmp_path / "Train" / "Images" / "t.png", tmp_path / "t.npy")
    with pytest.raises(NucleiDataError, match=r"t\.npy: type id 1000000000 is out of range 0..4"):
        read_sample(tmp_path / "Train" / "Images" / "t.png", tmp_path / "t.npy", type_scheme="merged")


def test_majority_vote_with_huge_type_ids_stays_small_and_exact():
    type_map = np.where(INST > 0, 3, 0).astype(np.int64)
    type_map[0, 0:2] = type_map[1, 0] = 10**12  # 3 of the 4 pixels of id 1
    type_map[5, 7] = 2**40 + 3  # would wrap to 3 as int32
    np.testing.assert_array_equal(majority_type_per_id(INST, type_map), [10**12, 3, 2**40 + 3])


# ---- 5. patch_size larger than the crop window ---------------------------------------------------------------


def _value_error_in_chain(call) -> str:
    """The message of the ValueError that ``call`` raises, also when MONAI wraps it in a RuntimeError."""
    with pytest.raises(Exception) as info:
        call()
    error = info.value
    while error is not None and type(error) is not ValueError:
        error = error.__cause__
    assert error is not None, f"no ValueError behind {info.value!r}"
    return str(error)


@pytest.mark.parametrize("pairs", [points_to_mask_pairs, mask_to_image_pairs])
def test_patch_size_larger_than_the_window_is_refused(pairs):
    tile = make_toy_sample(64, seed=0, index=1)
    with pytest.raises(ValueError, match=r"patch_size \(48, 48\) .* larger than the crop window \(32, 32\)"):
        SlidingWindowCropDataset([tile], window=32, transform=pairs(patch_size=48))
    hidden = pairs(patch_size=48)  # a chain the dataset cannot look into fails at its first crop
    crops = SlidingWindowCropDataset([tile], window=32, transform=lambda crop: hidden(crop))
    message = _value_error_in_chain(lambda: crops[0])
    assert "patch_size (48, 48) is larger than the 32x32 sample (toy_1_y0_x0)" in message
    message = _value_error_in_chain(lambda: pairs(patch_size=65)(tile))
    assert "patch_size (65, 65) is larger than the 64x64 sample" in message
    crops = SlidingWindowCropDataset([tile], window=32, transform=pairs(patch_size=(32, 16), augment=False))
    assert tuple(crops[0]["condition"].shape[-2:]) == (32, 16)


# ---- 6. a point in the last half pixel keeps its marker ------------------------------------------------------


@pytest.mark.parametrize("radius", [0, 1])
def test_point_in_the_last_half_pixel_keeps_its_marker(radius):
    points = np.array([[5.75, 7.6, 2], [0.0, 0.4, 3], [5.5, 0.0, 1]], np.float32)
    point_map, markers = points_to_maps(points, (6, 8), radius=radius)
    assert markers[0, 5, 7] == 1 and markers[0, 0, 0] == 2 and markers[0, 5, 0] == 3
    assert set(np.unique(markers)) == {0, 1, 2, 3}
    assert point_map[2, 5, 7] == 1 and point_map[1, 5, 0] == 1
    np.testing.assert_array_equal(map_to_points(point_map, markers)[:, 2], points[:, 2])


# ---- 7. point transforms refuse what points_to_maps refuses ---------------------------------------------------


@pytest.fixture(scope="module")
def library():
    rng = np.random.default_rng(0)
    points = [np.c_[rng.uniform(0, 64, (40, 2)), rng.integers(1, 5, 40)].astype(np.float32) for _ in range(3)]
    return CentroidLibrary(points, [(64, 64)] * 3)


TRANSFORMS = {
    "flip": lambda lib, p: RandPointFlip(p),
    "rotate90": lambda lib, p: RandPointRotate90(p),
    "cover": lambda lib, p: RandPointCover(p),
    "affine": lambda lib, p: RandPointAffine(p),
    "combine": lambda lib, p: RandPointCombine(lib, p),
}


@pytest.mark.parametrize("prob", [0.0, 1.0])
@pytest.mark.parametrize("name", TRANSFORMS)
@pytest.mark.parametrize(
    "bad, match",
    [
        ([np.nan, 3.0, 1], "NaN"),
        ([3.0, np.inf, 1], "NaN or infinite"),
        ([-0.1, 3.0, 1], "outside the 32x32 window"),
        ([3.0, 32.0, 1], "outside the 32x32 window"),
    ],
)
def test_point_transforms_refuse_nan_and_out_of_window_points(library, name, prob, bad, match):
    points = np.array([[4.0, 4.0, 2], bad], np.float32)
    with pytest.raises(ValueError, match=match):
        TRANSFORMS[name](library, prob)(points, (32, 32))
    with pytest.raises(ValueError, match=match):
        points_to_maps(points, (32, 32))
    augment = RandPointSetAugmentd(library)
    with pytest.raises(ValueError, match=match):
        augment({"points": points, "spatial_size": (32, 32)})


def test_flip_and_rotate90_drop_a_point_of_the_last_half_pixel_as_documented():
    points = np.array([[31.7, 5.0, 1], [10.0, 10.0, 2]], np.float32)  # row 31.7 is in the last half pixel
    flipped, size = RandPointFlip(1.0, spatial_axis=[0])(points, (32, 32))
    np.testing.assert_allclose(flipped, [[21.0, 10.0, 2]])  # 31 - 31.7 = -0.7 lies outside [0, 32)
    assert size == (32, 32)
    rotated, size = RandPointRotate90(1.0, max_k=1)(points[:, [1, 0, 2]], (32, 32))  # column 31.7 goes to row -0.7
    np.testing.assert_allclose(rotated, [[21.0, 10.0, 2]])


# ---- 8. detection radius ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("radius", [float("nan"), float("inf"), 0.0, -1.0])
def test_detection_radius_must_be_finite_and_positive(radius):
    inst = np.zeros((8, 8), np.int32)
    inst[2:4, 2:4] = 1
    with pytest.raises(ValueError, match="radius must be a finite number > 0"):
        pair_centroids([[2.5, 2.5]], [[2.5, 2.5]], radius)
    with pytest.raises(ValueError, match="radius must be a finite number > 0"):
        nuclei_metrics(inst, inst, inst, inst, radius=radius)
    with pytest.raises(ValueError, match="radius must be a finite number > 0"):
        NucleiMetric(radius=radius)
    assert nuclei_metrics(inst, inst, inst, inst, radius=12.0)["f1_detection"] == 1.0


def test_point_map_radius_must_be_finite():
    with pytest.raises(ValueError, match="radius must be finite and >= 0"):
        points_to_maps(np.array([[1.0, 1.0, 1]]), (4, 4), radius=float("nan"))


# ---- 9. RandPointCombine with an unknown type ----------------------------------------------------------------


@pytest.mark.parametrize("prob", [0.0, 1.0])
def test_combine_names_the_bad_type_id(library, prob):
    points = np.array([[4.0, 4.0, 2], [8.0, 8.0, 5]], np.float32)
    with pytest.raises(ValueError, match=r"point types must be integers in 1\.\.4; got \[5\.0\]"):
        RandPointCombine(library, prob).set_random_state(0)(points, (32, 32))
    combine = RandPointCombine(library, 1.0).set_random_state(0)
    with pytest.raises(ValueError, match=r"1\.\.4; got \[5\.0\]"):
        combine.randomize(points, (32, 32))
