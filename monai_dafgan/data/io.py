"""Reading and writing nuclei samples: H&E images and instance/type label files.

A *sample* is the package's data contract, a dict of MONAI ``MetaTensor`` s (what ``LoadImaged``
gives) with fixed shapes, so MONAI's default ``list_data_collate`` and ``decollate_batch`` handle it:

==============  ============  =========  ==================================================
key             shape         dtype      values
==============  ============  =========  ==================================================
``image``       (3, H, W)     float32    RGB, 0..255
``label_inst``  (1, H, W)     int32      0 background, 1..K instances
``label_type``  (1, H, W)     int32      0 background, 1..4 merged types
``name``        str                      sample name (file stem)
==============  ============  =========  ==================================================

Instances are always numbered 1..K with no gap. The type of every instance is uniform over its pixels, and
``label_type`` is zero outside instances. Functions that read samples accept numpy arrays as well.

Nucleus centroids are not a key of the sample: their number differs from one sample to the next, which no default
collate can batch. They are a function of the labels: :func:`sample_points` gives the (K, 3) float32 ``(row, col,
type)`` array whose row ``k - 1`` is instance ``k``, and :class:`~monai_dafgan.data.transforms.LabelsToPointsd` adds
it as ``points`` inside a transform chain (batch such samples with :func:`~monai_dafgan.data.nuclei_collate`).

Label files may be ``.mat`` (CoNSeP: ``inst_map`` required; ``inst_type``, ``type_map`` optional), ``.npy``
((H, W) instance map, or (H, W, 2) instance and type maps) or single-channel 8/16/32-bit ``.png``/``.tif``
instance maps. Types are taken from ``inst_type`` when present, else from the majority of ``type_map`` inside each
instance, else every instance gets ``default_type`` (1, "other", unless told otherwise): instance-only datasets are
thus usable, with one documented type. Type ids are raw CoNSeP (0..7) or merged (0..4); the dataset readers decide
which once per dataset, and ``label_type.meta["type_scheme"]`` records the decision (see :func:`make_sample`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io
import torch
from monai.utils import convert_to_tensor
from PIL import Image

from ..utils import atomic_write
from .instances import as_plane, instance_points, majority_type_per_id, relabel_sequential
from .types import NUM_TYPES, RAW_CONSEP_MAX_TYPE, TypeScheme, check_type_ids, merge_types, resolve_type_scheme

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
LABEL_SUFFIXES = (".mat", ".npy", ".png", ".tif", ".tiff")


class NucleiDataError(ValueError):
    """A data file cannot be used; the message names the file and the problem."""

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(problem if path is None else f"{path}: {problem}")


@dataclass
class LabelFile:
    """The content of one label file, before validation against its image.

    ``inst_map`` keeps the file's ids; ``inst_type[k - 1]`` is the type of id ``k`` (CoNSeP's ``inst_type``).
    """

    inst_map: np.ndarray
    inst_type: np.ndarray | None = None
    type_map: np.ndarray | None = None


def read_rgb_image(path: str | os.PathLike) -> np.ndarray:
    """Read an 8-bit RGB image as (H, W, 3) uint8. An alpha channel is dropped; grey images are refused, and so are
    images of more than 8 bits per channel (16-bit PNG or TIFF): Pillow would keep their top 8 bits without a word,
    and no one conversion suits every scanner, so convert such images to 8-bit RGB first."""
    path = Path(path)
    if not path.is_file():
        raise NucleiDataError(path, "image file not found.")
    bits = 8
    try:
        with Image.open(path) as img:
            bits = _bits_per_channel(img)
            if img.mode in ("RGBA", "RGBX", "P", "CMYK", "YCbCr"):
                img = img.convert("RGB")
            array = np.asarray(img)
    except Exception as err:  # PIL raises many types for corrupt or unknown files
        array = _read_tiff(path) if path.suffix.lower() in (".tif", ".tiff") else None
        if array is None:
            raise NucleiDataError(path, f"unreadable image ({type(err).__name__}: {err}).") from err
    if array.ndim == 3 and array.shape[-1] == 4:
        array = array[..., :3]
    if array.ndim != 3 or array.shape[-1] != 3:
        raise NucleiDataError(path, f"expected an RGB image, got an array of shape {array.shape}.")
    if bits > 8 or array.dtype != np.uint8:
        depth = f"{bits}-bit" if bits > 8 else str(array.dtype)
        raise NucleiDataError(path, f"expected 8-bit RGB, got {depth} RGB; convert it to 8 bits per channel first.")
    return np.ascontiguousarray(array)


def _bits_per_channel(img: Image.Image) -> int:
    """Bits per channel stored in the file. Pillow opens 16-bit RGB(A) PNG and TIFF as 8-bit ``"RGB"`` images; only
    TIFF's BitsPerSample tag or the decoder's raw mode (e.g. ``"RGB;16B"``) still tell."""
    bits = getattr(img, "tag_v2", {}).get(258)
    if bits is not None:
        return int(max(bits) if isinstance(bits, tuple) else bits)
    for tile in getattr(img, "tile", None) or []:
        args = tile[3]
        rawmode = args if isinstance(args, str) else (args[0] if isinstance(args, tuple) and args else "")
        if isinstance(rawmode, str) and ";16" in rawmode:
            return 16
    return 8


def _read_tiff(path: Path) -> np.ndarray | None:
    try:
        import tifffile

        return np.asarray(tifffile.imread(path))
    except Exception:
        return None


def read_label_file(path: str | os.PathLike) -> LabelFile:
    """Read an instance/type label file (``.mat``, ``.npy``, ``.png``, ``.tif``); see the module docstring."""
    path = Path(path)
    if not path.is_file():
        raise NucleiDataError(path, "label file not found.")
    suffix = path.suffix.lower()
    if suffix == ".mat":
        return _read_mat(path)
    if suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except Exception as err:
            raise NucleiDataError(path, f"unreadable .npy file ({err}).") from err
        if array.ndim == 3 and array.shape[-1] == 2:
            return LabelFile(_integral(path, "instance map", array[..., 0]), type_map=_integral(path, "type map", array[..., 1]))
        if array.ndim != 2:
            raise NucleiDataError(path, f"expected an (H, W) instance map or (H, W, 2) instance+type maps, got {array.shape}.")
        return LabelFile(_integral(path, "instance map", array))
    if suffix in (".png", ".tif", ".tiff"):
        try:
            with Image.open(path) as img:
                array = np.asarray(img)
        except Exception:
            array = _read_tiff(path)
            if array is None:
                raise NucleiDataError(path, "unreadable label image.") from None
        if array.ndim != 2:
            raise NucleiDataError(path, f"expected a single-channel instance map, got shape {array.shape}.")
        return LabelFile(_integral(path, "instance map", array))
    raise NucleiDataError(path, f"unsupported label format {suffix!r}; use one of {', '.join(LABEL_SUFFIXES)}.")


def _read_mat(path: Path) -> LabelFile:
    try:
        mat = scipy.io.loadmat(path)
    except NotImplementedError as err:  # MATLAB v7.3 files are HDF5
        raise NucleiDataError(path, "MATLAB v7.3 (HDF5) files are not supported; save with -v7.") from err
    except Exception as err:
        raise NucleiDataError(path, f"unreadable .mat file ({err}).") from err
    if "inst_map" not in mat:
        keys = sorted(k for k in mat if not k.startswith("__"))
        raise NucleiDataError(path, f"missing key 'inst_map' (keys present: {keys}).")
    inst_map = _integral(path, "inst_map", mat["inst_map"])
    inst_type = None
    if "inst_type" in mat:
        inst_type = _integral(path, "inst_type", np.asarray(mat["inst_type"]).reshape(-1))
    type_map = _integral(path, "type_map", mat["type_map"]) if "type_map" in mat else None
    return LabelFile(inst_map, inst_type, type_map)


def _integral(path: Path, what: str, array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
            raise NucleiDataError(path, f"{what} holds non-integer values.")
    elif array.dtype.kind not in "iub":
        raise NucleiDataError(path, f"{what} has dtype {array.dtype}, expected integers.")
    array = array.astype(np.int64)
    if array.size and array.min() < 0:
        raise NucleiDataError(path, f"{what} holds negative values (min {array.min()}).")
    return array


def label_max_type(label: LabelFile) -> int:
    """The largest type id a label file's types are read from: ``inst_type`` when present, else ``type_map``; 0 for
    a file without type information. :func:`~monai_dafgan.data.types.resolve_type_scheme` decides from it."""
    types = label.inst_type if label.inst_type is not None else label.type_map
    return int(types.max()) if types is not None and types.size else 0


def make_sample(
    image: np.ndarray,
    label: LabelFile,
    name: str = "",
    type_scheme: TypeScheme = "auto",
    default_type: int = 1,
    source: str | os.PathLike | None = None,
) -> dict:
    """Validate an (H, W, 3) uint8 image and its labels and build a sample (see the module docstring).

    The scheme the type ids were read with is recorded as ``sample["label_type"].meta["type_scheme"]``
    (``"consep_raw"`` or ``"merged"``). ``"auto"`` here decides from this one file; a file whose ids reach 5..7 is
    then read as raw with a ``UserWarning``, since the other files of its dataset that hold only 0..4 would be read
    as merged: the dataset readers (:func:`~monai_dafgan.data.datasets.dataset_type_scheme`) decide once per dataset.

    Args:
        image: (H, W, 3) RGB image.
        label: instance ids and, optionally, types.
        name: the sample's name.
        type_scheme: how type ids are read, see :func:`monai_dafgan.data.types.resolve_type_scheme`.
        default_type: merged type (1..4) given to every instance when the label has no type information.
        source: file named in error messages.

    Raises:
        NucleiDataError: shape mismatch, type ids out of range, instances without a type.
    """
    if not 1 <= default_type <= NUM_TYPES:
        raise ValueError(f"default_type must be in 1..{NUM_TYPES}, got {default_type}.")
    inst_map = label.inst_map
    if inst_map.ndim != 2:
        raise NucleiDataError(source, f"instance map must be 2-D, got shape {inst_map.shape}.")
    if image.shape[:2] != inst_map.shape:
        raise NucleiDataError(source, f"image is {image.shape[0]}x{image.shape[1]} but labels are {inst_map.shape[0]}x{inst_map.shape[1]}.")
    if label.type_map is not None and label.type_map.shape != inst_map.shape:
        raise NucleiDataError(source, f"type_map shape {label.type_map.shape} differs from inst_map shape {inst_map.shape}.")

    max_type = label_max_type(label)
    scheme = resolve_type_scheme(type_scheme, max_type)
    if type_scheme == "auto" and NUM_TYPES < max_type <= RAW_CONSEP_MAX_TYPE:
        warnings.warn(
            f"{source or name or 'label'}: type ids up to {max_type} read as raw CoNSeP for this file alone; files of "
            "the same dataset with ids only up to 4 would be read as merged (raw 4, epithelial, as spindle). Read "
            "datasets with load_consep / consep_file_list, which decide once per dataset, or pass "
            "type_scheme='consep_raw'.",
            UserWarning,
            stacklevel=2,
        )
    inst, old_ids = relabel_sequential(inst_map)
    k = old_ids.size
    try:
        if label.inst_type is not None:
            if k and old_ids[-1] > label.inst_type.size:
                raise NucleiDataError(source, f"instance id {old_ids[-1]} has no entry in inst_type ({label.inst_type.size} rows).")
            types = merge_types(label.inst_type, scheme)[old_ids - 1]
        elif label.type_map is not None:
            check_type_ids(label.type_map, scheme)  # before the majority vote, whose table grows with the largest id
            types = merge_types(majority_type_per_id(inst, label.type_map, k), scheme)
        else:
            types = np.full(k, default_type, dtype=np.int32)
    except NucleiDataError:
        raise
    except ValueError as err:
        raise NucleiDataError(source, str(err)) from err
    untyped = old_ids[types == 0]
    if untyped.size:
        shown = ", ".join(str(i) for i in untyped[:5]) + (", ..." if untyped.size > 5 else "")
        raise NucleiDataError(source, f"{untyped.size} instance(s) without a type (ids {shown}).")

    lut = np.concatenate([[0], types]).astype(np.int32)
    sample = contract_sample(image.transpose(2, 0, 1).astype(np.float32), inst[None], lut[inst][None], name)
    sample["label_type"].meta["type_scheme"] = scheme
    return sample


def contract_sample(image, label_inst, label_type, name: str = "") -> dict:
    """A sample (see the module docstring) from its three arrays: ``image`` (3, H, W) 0..255, ``label_inst`` and
    ``label_type`` (1, H, W), numpy or torch, converted to float32 / int32 ``MetaTensor`` s. Does not validate
    (:func:`check_sample` does)."""
    return {
        "image": _meta_tensor(image, torch.float32),
        "label_inst": _meta_tensor(label_inst, torch.int32),
        "label_type": _meta_tensor(label_type, torch.int32),
        "name": name,
    }


def _meta_tensor(array, dtype: torch.dtype):
    if isinstance(array, np.ndarray):
        array = np.ascontiguousarray(array)
    return convert_to_tensor(array, dtype=dtype, track_meta=True)


def sample_points(sample: Mapping) -> np.ndarray:
    """(K, 3) float32 ``(row, col, type)`` of the pixel-mean centroid of every nucleus of ``sample`` (row ``k - 1``
    is instance ``k``), from its ``label_inst`` and ``label_type``; ``sample["points"]`` when the sample carries
    them (e.g. after :class:`~monai_dafgan.data.transforms.LabelsToPointsd`)."""
    if "points" in sample:
        return np.asarray(sample["points"], dtype=np.float32).reshape(-1, 3)
    inst = as_plane(sample["label_inst"]).astype(np.int64)
    return instance_points(inst, as_plane(sample["label_type"]).astype(np.int64))


def read_sample(
    image_path: str | os.PathLike,
    label_path: str | os.PathLike,
    name: str | None = None,
    type_scheme: TypeScheme = "auto",
    default_type: int = 1,
) -> dict:
    """Read an image and its label file into a sample (see the module docstring)."""
    image = read_rgb_image(image_path)
    label = read_label_file(label_path)
    name = Path(image_path).stem if name is None else name
    return make_sample(image, label, name, type_scheme, default_type, source=label_path)


def write_consep_sample(root: str | os.PathLike, sample: dict, name: str | None = None) -> tuple[Path, Path]:
    """Write a sample in CoNSeP layout: ``root/Images/<name>.png`` and ``root/Labels/<name>.mat``.

    The ``.mat`` holds ``inst_map`` (H, W), ``type_map`` (H, W), ``inst_type`` (K, 1) and ``inst_centroid`` (K, 2)
    in CoNSeP's (x, y) = (column, row) order, all merged types, instance ids renumbered 1..K. Each file is written
    to a temporary name and renamed, so a reader never sees half a file.

    Returns:
        the image and label paths.
    """
    root = Path(root)
    name = sample.get("name") if name is None else name
    if not name:
        raise ValueError("the sample has no name; pass name=...")
    image = np.asarray(sample["image"])
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"sample image must be (3, H, W), got {image.shape}.")
    inst = np.asarray(sample["label_inst"]).reshape(image.shape[1:]).astype(np.int32)
    type_map = np.asarray(sample["label_type"]).reshape(image.shape[1:]).astype(np.int32)
    inst = relabel_sequential(inst)[0]
    points = instance_points(inst, type_map).astype(np.float64)
    rgb = np.clip(np.rint(image.transpose(1, 2, 0)), 0, 255).astype(np.uint8)
    mat = {
        "inst_map": inst,
        "type_map": type_map,
        "inst_type": points[:, 2:3].astype(np.int32),
        "inst_centroid": points[:, [1, 0]],
    }
    image_path = root / "Images" / f"{name}.png"
    label_path = root / "Labels" / f"{name}.mat"
    atomic_write(image_path, lambda f: Image.fromarray(rgb).save(f, format="PNG"))
    atomic_write(label_path, lambda f: scipy.io.savemat(f, mat, do_compression=True))
    return image_path, label_path


def check_sample(sample: Mapping) -> None:
    """Check that ``sample`` follows the data contract (module docstring); raise ``ValueError`` saying what is off.

    Checks keys, shapes, dtypes (tensors or numpy arrays), value ranges, ids 1..K without gaps, one type per
    instance, and, when the sample carries ``points``, that they have one row per instance with that instance's type.
    Use it on any source of samples, real or synthetic.
    """
    missing = [k for k in ("image", "label_inst", "label_type") if k not in sample]
    if missing:
        raise ValueError(f"sample lacks keys {missing}.")
    image, inst, types = (np.asarray(sample[k]) for k in ("image", "label_inst", "label_type"))
    if image.ndim != 3 or image.shape[0] != 3 or image.dtype != np.float32:
        raise ValueError(f"image must be (3, H, W) float32, got {image.shape} {image.dtype}.")
    if image.size and (image.min() < 0 or image.max() > 255):
        raise ValueError(f"image values must lie in 0..255, got {image.min()}..{image.max()}.")
    for key, array in (("label_inst", inst), ("label_type", types)):
        if array.shape != (1, *image.shape[1:]) or array.dtype != np.int32:
            raise ValueError(f"{key} must be (1, {image.shape[1]}, {image.shape[2]}) int32, got {array.shape} {array.dtype}.")
    k = int(inst.max(initial=0))
    if inst.min(initial=0) < 0 or np.count_nonzero(np.bincount(inst.ravel(), minlength=k + 1)[1:]) != k:
        raise ValueError(f"label_inst ids must be 1..K without gaps (max id {k}).")
    if types.min(initial=0) < 0 or types.max(initial=0) > NUM_TYPES or np.any((types > 0) != (inst > 0)):
        raise ValueError(f"label_type must be 1..{NUM_TYPES} exactly on instance pixels and 0 elsewhere.")
    per_instance = np.zeros(k + 1, dtype=np.int64)
    per_instance[inst.ravel()] = types.ravel()
    if np.any(per_instance[inst] != types):
        raise ValueError("an instance has more than one type in label_type.")
    if "points" not in sample:
        return
    points = np.asarray(sample["points"])
    if points.shape != (k, 3) or points.dtype != np.float32:
        raise ValueError(f"points must be ({k}, 3) float32 for {k} instances, got {points.shape} {points.dtype}.")
    if np.any(points[:, 2].astype(np.int64) != per_instance[1:]):
        raise ValueError("points types differ from the types of their instances in label_type.")
