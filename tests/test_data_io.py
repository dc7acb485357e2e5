"""Readers, writers and validation of the data layer on tiny hand-made files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
from monai.data import DataLoader, Dataset
from PIL import Image

from monai_dafgan.data import (
    LoadNucleiSampled,
    NucleiDataError,
    check_sample,
    consep_file_list,
    merge_types,
    nuclei_file_list,
    read_sample,
    sample_points,
    write_consep_sample,
)
from monai_dafgan.data.io import LabelFile, make_sample


def _image(h=6, w=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _write(tmp_path, name="t", image=None, ext=".mat", **label):
    image = _image() if image is None else image
    img_dir, lab_dir = tmp_path / "Images", tmp_path / "Labels"
    img_dir.mkdir(parents=True, exist_ok=True)
    lab_dir.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(img_dir / f"{name}.png")
    if ext == ".mat":
        scipy.io.savemat(lab_dir / f"{name}.mat", label)
    return img_dir / f"{name}.png", lab_dir / f"{name}{ext}"


# An asymmetric 6x8 instance map: id 5 is a 2x3 block at rows 0-1, cols 5-7 (so row != col centroid), id 2 one pixel.
INST = np.zeros((6, 8), np.int32)
INST[0:2, 5:8] = 5
INST[4, 1] = 2
INST[3:6, 3:5] = 9


def test_merge_types_raw_and_merged():
    raw = np.arange(8)
    assert merge_types(raw).tolist() == [0, 1, 2, 3, 3, 4, 4, 4]
    assert merge_types(np.array([0, 1, 4]), "merged").tolist() == [0, 1, 4]
    assert merge_types(np.array([0, 1, 4]), "consep_raw").tolist() == [0, 1, 3]  # raw 4 is epithelial
    with pytest.raises(ValueError, match="out of range 0..4"):
        merge_types(np.array([5]), "merged")
    with pytest.raises(ValueError, match="out of range 0..7"):
        merge_types(np.array([8]))


def test_read_mat_relabels_and_computes_points(tmp_path):
    # inst_type has a row per id 1..9 (CoNSeP convention); ids 5, 2, 9 are present, raw types
    inst_type = np.array([[1], [2], [1], [1], [6], [1], [1], [1], [4]])
    image_path, label_path = _write(tmp_path, inst_map=INST, inst_type=inst_type)
    with pytest.warns(UserWarning, match="raw CoNSeP for this file alone"):  # one file read alone, see make_sample
        s = read_sample(image_path, label_path)
    check_sample(s)
    assert s["name"] == "t"
    # sorted old ids 2, 5, 9 -> 1, 2, 3
    assert set(np.unique(s["label_inst"])) == {0, 1, 2, 3}
    assert s["label_inst"][0, 4, 1] == 1 and s["label_inst"][0, 0, 5] == 2 and s["label_inst"][0, 3, 3] == 3
    # raw 2 -> 2, raw 6 -> 4, raw 4 -> 3
    assert sample_points(s)[:, 2].tolist() == [2, 4, 3]
    # centroids are (row, col): id 5 spans rows 0-1 (mean 0.5), cols 5-7 (mean 6)
    np.testing.assert_allclose(sample_points(s)[:, :2], [[4, 1], [0.5, 6], [4, 3.5]])
    np.testing.assert_array_equal(s["image"], _image().transpose(2, 0, 1).astype(np.float32))
    assert s["label_type"][0, 0, 5] == 4 and s["label_type"][0, 0, 0] == 0


def test_types_from_type_map_majority_and_default(tmp_path):
    type_map = np.zeros_like(INST)
    type_map[INST == 5] = 3
    type_map[0, 5] = 2  # minority pixel
    type_map[INST == 2] = 1
    type_map[INST == 9] = 2
    s = make_sample(_image(), LabelFile(INST.astype(np.int64), type_map=type_map))
    assert sample_points(s)[:, 2].tolist() == [1, 3, 2]
    check_sample(s)
    s = make_sample(_image(), LabelFile(INST.astype(np.int64)), default_type=2)
    assert sample_points(s)[:, 2].tolist() == [2, 2, 2]
    with pytest.raises(ValueError, match="default_type"):
        make_sample(_image(), LabelFile(INST.astype(np.int64)), default_type=0)


def test_empty_label_is_valid(tmp_path):
    image_path, label_path = _write(tmp_path, inst_map=np.zeros((6, 8), np.int32), inst_type=np.zeros((0, 1)))
    s = read_sample(image_path, label_path)
    check_sample(s)
    assert sample_points(s).shape == (0, 3) and s["label_inst"].max() == 0


@pytest.mark.parametrize(
    "label, match",
    [
        ({"type_map": np.zeros((6, 8))}, "missing key 'inst_map'.*type_map"),
        ({"inst_map": np.zeros((5, 8))}, "image is 6x8 but labels are 5x8"),
        ({"inst_map": INST, "inst_type": np.array([[1]] * 8 + [[9]])}, "type id 9 is out of range"),
        ({"inst_map": INST, "inst_type": np.array([[1]] * 8)}, "instance id 9 has no entry in inst_type"),
        ({"inst_map": INST, "inst_type": np.array([[1]] * 4 + [[0]] + [[1]] * 4)}, "1 instance.*without a type .ids 5"),
        ({"inst_map": INST, "type_map": (INST == 5).astype(int)}, "2 instance.*without a type .ids 2, 9"),
        ({"inst_map": INST + 0.5}, "non-integer"),
        ({"inst_map": -INST}, "negative"),
        ({"inst_map": INST, "type_map": np.zeros((6, 7))}, "type_map shape"),
    ],
)
def test_bad_labels_name_file_and_problem(tmp_path, label, match):
    image_path, label_path = _write(tmp_path, **label)
    with pytest.raises(NucleiDataError, match=match) as err:
        read_sample(image_path, label_path)
    assert str(label_path) in str(err.value)


def test_bad_images(tmp_path):
    _, label_path = _write(tmp_path, inst_map=INST)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png at all")
    with pytest.raises(NucleiDataError, match="broken.png: unreadable image"):
        read_sample(broken, label_path)
    grey = tmp_path / "grey.png"
    Image.fromarray(np.zeros((6, 8), np.uint8)).save(grey)
    with pytest.raises(NucleiDataError, match="expected an RGB image"):
        read_sample(grey, label_path)
    rgba = tmp_path / "rgba.png"
    Image.fromarray(np.dstack([_image(), np.full((6, 8), 7, np.uint8)])).save(rgba)
    np.testing.assert_array_equal(read_sample(rgba, label_path)["image"], _image().transpose(2, 0, 1))
    with pytest.raises(NucleiDataError, match="image file not found"):
        read_sample(tmp_path / "missing.png", label_path)


def test_mat_v73_and_unknown_format(tmp_path):
    fake = tmp_path / "h5.mat"
    fake.write_bytes(b"MATLAB 7.3 MAT-file" + b"\0" * 200 + b"\x89HDF\r\n\x1a\n" + b"\0" * 300)
    with pytest.raises(NucleiDataError, match="h5.mat"):
        read_sample(_write(tmp_path, inst_map=INST)[0], fake)
    other = tmp_path / "x.json"
    other.write_text("{}")
    with pytest.raises(NucleiDataError, match="unsupported label format '.json'"):
        read_sample(_write(tmp_path, inst_map=INST)[0], other)


def test_npy_and_16bit_png_instance_maps(tmp_path):
    image_path, _ = _write(tmp_path, inst_map=INST)
    inst = INST.copy()
    inst[inst == 9] = 40000  # needs 16 bits
    np.save(tmp_path / "a.npy", inst)
    np.save(tmp_path / "b.npy", np.stack([INST, (INST > 0) * 3], -1))
    Image.fromarray(inst.astype(np.uint16)).save(tmp_path / "c.png")
    for label, types in (("a.npy", [1, 1, 1]), ("b.npy", [3, 3, 3]), ("c.png", [1, 1, 1])):
        s = read_sample(image_path, tmp_path / label)
        check_sample(s)
        assert sample_points(s)[:, 2].tolist() == types, label
        assert s["label_inst"].max() == 3
    np.save(tmp_path / "bad.npy", np.zeros((6, 8, 3)))
    with pytest.raises(NucleiDataError, match=r"\(H, W, 2\)"):
        read_sample(image_path, tmp_path / "bad.npy")


def test_write_consep_sample_round_trip(tmp_path):
    image_path, label_path = _write(tmp_path / "src", inst_map=INST, inst_type=np.ones((9, 1)))
    s = read_sample(image_path, label_path)
    out_image, out_label = write_consep_sample(tmp_path / "out", s, name="copy")
    back = read_sample(out_image, out_label)
    for key in ("image", "label_inst", "label_type"):
        np.testing.assert_array_equal(back[key], s[key])
    mat = scipy.io.loadmat(out_label)
    assert mat["inst_type"].shape == (3, 1) and mat["inst_centroid"].shape == (3, 2)
    np.testing.assert_allclose(mat["inst_centroid"], sample_points(s)[:, [1, 0]])
    np.testing.assert_allclose(sample_points(back), sample_points(s))  # CoNSeP order (x, y)
    assert sorted(p.name for p in (tmp_path / "out").rglob("*")) == ["Images", "Labels", "copy.mat", "copy.png"]


def test_check_sample_catches_contract_breaks():
    s = make_sample(_image(), LabelFile(INST.astype(np.int64)))
    check_sample(s)
    for key, value, match in [
        ("image", s["image"].astype(np.float64), "float32"),
        ("label_inst", np.where(s["label_inst"] == 2, 7, s["label_inst"]).astype(np.int32), "without gaps"),
        ("points", sample_points(s)[:2], r"\(3, 3\)"),
        ("label_type", np.where(s["label_inst"] > 0, 0, 1).astype(np.int32), "exactly on instance pixels"),
    ]:
        with pytest.raises(ValueError, match=match):
            check_sample({**s, key: value})
    with pytest.raises(ValueError, match="lacks keys"):
        check_sample({"image": s["image"]})


def test_file_lists_and_monai_dataset(tmp_path):
    for i in (10, 2, 1):
        _write(tmp_path, name=f"train_{i}", inst_map=INST, inst_type=np.ones((9, 1)))
    files = nuclei_file_list(tmp_path / "Images", tmp_path / "Labels")
    assert [f["name"] for f in files] == ["train_1", "train_2", "train_10"]  # natural order
    (tmp_path / "Train").mkdir()
    (tmp_path / "Images").rename(tmp_path / "Train" / "Images")
    (tmp_path / "Labels").rename(tmp_path / "Train" / "Labels")
    files = consep_file_list(tmp_path, "Train")
    ds = Dataset([{**f, "extra": i} for i, f in enumerate(files)], transform=LoadNucleiSampled())
    batch = next(iter(DataLoader(ds, batch_size=3, num_workers=0)))
    assert tuple(batch["image"].shape) == (3, 3, 6, 8) and tuple(batch["label_inst"].shape) == (3, 1, 6, 8)
    assert batch["extra"].tolist() == [0, 1, 2] and batch["name"] == ["train_1", "train_2", "train_10"]
    (tmp_path / "Train" / "Labels" / "train_2.mat").unlink()
    with pytest.raises(NucleiDataError, match="no label file for 1 image.*train_2.png"):
        consep_file_list(tmp_path, "Train")
    # other datasets in CoNSeP layout keep their label format; a .mat wins over an instance image of the same stem
    np.save(tmp_path / "Train" / "Labels" / "train_2.npy", np.stack([INST, 2 * (INST > 0)], axis=-1))
    Image.fromarray(INST.astype(np.uint16)).save(tmp_path / "Train" / "Labels" / "train_1.png")
    files = consep_file_list(tmp_path, "Train")
    assert [Path(f["label"]).name for f in files] == ["train_1.mat", "train_2.npy", "train_10.mat"]
    sample = LoadNucleiSampled()(files[1])
    inst, types = sample["label_inst"][0].numpy(), sample["label_type"][0].numpy()
    assert np.array_equal(inst > 0, INST > 0) and inst.max() == 3 and set(np.unique(types[inst > 0])) == {2}
    with pytest.raises(NucleiDataError, match="split folder not found.*Train"):
        consep_file_list(tmp_path, "Test")


def test_as_plane_takes_one_map_in_any_container():
    import torch
    from monai.data import MetaTensor

    from monai_dafgan.data.instances import as_plane

    plane = np.arange(12).reshape(3, 4)
    for given in (plane, plane[None], plane[None, None], torch.as_tensor(plane)[None], MetaTensor(plane[None])):
        out = as_plane(given)
        assert isinstance(out, np.ndarray) and out.shape == (3, 4)
        np.testing.assert_array_equal(out, plane)
    for bad in (np.zeros((2, 3, 4)), np.zeros(5), np.zeros((1, 2, 3, 4))[:, :, :1].repeat(2, 0)):
        with pytest.raises(ValueError, match="expected one 2-D map"):
            as_plane(bad)
