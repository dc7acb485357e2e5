"""Sliding-window crops of nuclei samples, as a MONAI multi-sample transform and as a map-style dataset.

Windows start at ``-pad`` and step by ``stride``; a last window flush with the far edge (``length + pad``) is added
when the steps do not reach it, so every pixel is covered. Outside the tile, pixels are mirrored (numpy's
``"symmetric"`` mode, any width); a mirrored nucleus is a new instance, never the same id as its original.
Instances of a crop are renumbered 1..K (and ``points``, when the sample carries them, recomputed from what the
crop shows).

Settings of the DAFF-GAN paper and of HoVer-Net on 1000x1000 CoNSeP tiles:

- G2 training, 108 crops of 512x512 from 27 tiles: ``window=512, stride=512`` -> starts 0, 488 (4 per tile).
- HoVer-Net patches: ``window=540, stride=164, pad=188`` -> 7x7 = 49 per tile.
- 256x256 segmentation patches: ``window=256, stride=256`` -> starts 0, 256, 512, 744 (16 per tile).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from monai.data import Dataset
from monai.transforms import Transform
from monai.transforms.traits import MultiSampleTrait
from PIL import Image

from .datasets import LoadNucleiSampled
from .instances import instance_points, relabel_sequential
from ..utils import size_pair
from .io import contract_sample


def window_starts(length: int, window: int, stride: int, pad: int = 0) -> list[int]:
    """Start coordinates (may be negative) of the windows along one axis; see the module docstring."""
    if window < 1 or stride < 1 or pad < 0 or length < 1:
        raise ValueError(f"need length, window, stride >= 1 and pad >= 0, got {length=}, {window=}, {stride=}, {pad=}.")
    end = length + pad
    starts = list(range(-pad, end - window + 1, stride)) or [-pad]
    if starts[-1] + window < end:
        starts.append(end - window)
    return starts


def _mirror_index(start: int, size: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Source index of each position ``start..start+size-1`` under symmetric mirroring, and which copy it is in."""
    pos = np.arange(start, start + size)
    folded = np.mod(pos, 2 * length)
    index = np.where(folded < length, folded, 2 * length - 1 - folded)
    return index, np.floor_divide(pos, length)


def crop_sample(sample: Mapping, top: int, left: int, height: int, width: int) -> dict:
    """Crop a sample to the window with corner (``top``, ``left``) and the given size, mirroring outside the tile.

    Returns a sample of the data contract (``MetaTensor`` s); keys other than ``image``, ``label_inst``,
    ``label_type`` and ``points`` (recomputed when present) are copied; ``name`` gets the suffix ``_y<top>_x<left>``.
    """
    image, inst, types = sample["image"], np.asarray(sample["label_inst"])[0], np.asarray(sample["label_type"])[0]
    rows, row_copy = _mirror_index(top, height, inst.shape[0])
    cols, col_copy = _mirror_index(left, width, inst.shape[1])
    inst_crop = inst[np.ix_(rows, cols)].astype(np.int64)
    if row_copy.min() != row_copy.max() or col_copy.min() != col_copy.max() or row_copy[0] != 0 or col_copy[0] != 0:
        copy = (row_copy - row_copy.min())[:, None] * (col_copy.max() - col_copy.min() + 1) + (col_copy - col_copy.min())
        inst_crop = np.where(inst_crop > 0, inst_crop + copy * (int(inst.max()) + 1), 0)
    inst_crop, _ = relabel_sequential(inst_crop)
    type_crop = types[np.ix_(rows, cols)].astype(np.int32)
    out = {key: value for key, value in sample.items() if key not in ("image", "label_inst", "label_type", "points")}
    out.update(contract_sample(np.asarray(image)[:, rows][:, :, cols], inst_crop[None], type_crop[None]))
    if "points" in sample:
        out["points"] = instance_points(inst_crop, type_crop)
    if "name" in sample:
        out["name"] = f"{sample['name']}_y{top}_x{left}"
    else:
        del out["name"]
    return out


class SlidingWindowCropd(Transform, MultiSampleTrait):
    """Cut a sample into sliding-window crops; returns a list of samples (like MONAI's ``RandSpatialCropSamplesd``).

    Args:
        window: crop size, an int or (height, width).
        stride: step between windows, an int or (rows, cols); defaults to ``window`` (no overlap).
        pad: mirrored margin around the tile, an int or (rows, cols); see the module docstring.
    """

    def __init__(self, window: int | Sequence[int], stride: int | Sequence[int] | None = None, pad: int | Sequence[int] = 0):
        self.window = size_pair(window, "window")
        self.stride = self.window if stride is None else size_pair(stride, "stride")
        self.pad = size_pair(pad, "pad")

    def positions(self, height: int, width: int) -> list[tuple[int, int]]:
        """(top, left) of every window on a tile of the given size, row by row."""
        tops = window_starts(height, self.window[0], self.stride[0], self.pad[0])
        lefts = window_starts(width, self.window[1], self.stride[1], self.pad[1])
        return [(t, l) for t in tops for l in lefts]

    def __call__(self, data: Mapping) -> list[dict]:
        height, width = np.asarray(data["label_inst"]).shape[-2:]
        return [crop_sample(data, t, l, *self.window) for t, l in self.positions(height, width)]


class SlidingWindowCropDataset(Dataset):
    """Map-style dataset of every sliding-window crop of a set of tiles.

    Args:
        data: samples (in memory) or file dicts ``{"image", "label", "name"}`` (loaded on access with ``loader``;
            only image headers are read up front).
        window, stride, pad: see :class:`SlidingWindowCropd`.
        transform: applied to each crop.
        loader: turns a file dict into a sample; defaults to :class:`LoadNucleiSampled`.

    Raises:
        ValueError: ``transform`` cuts random patches (:func:`~monai_dafgan.data.pairs.points_to_mask_pairs` /
            :func:`~monai_dafgan.data.pairs.mask_to_image_pairs` ``patch_size``) larger than ``window``.
    """

    def __init__(
        self,
        data: Sequence[Mapping],
        window: int | Sequence[int],
        stride: int | Sequence[int] | None = None,
        pad: int | Sequence[int] = 0,
        transform: Callable | None = None,
        loader: Callable | None = None,
    ):
        super().__init__(data=data, transform=transform)
        self.cropper = SlidingWindowCropd(window, stride, pad)
        _check_patches_fit(transform, self.cropper.window)
        self.loader = loader or LoadNucleiSampled()
        self.index = [
            (tile, top, left) for tile, item in enumerate(data) for top, left in self.cropper.positions(*_tile_size(item))
        ]
        self._last_tile: tuple[int, Mapping] | None = None  # consecutive crops of one tile load it once

    def _load_tile(self, tile: int) -> Mapping:
        item = self.data[tile]
        if "label_inst" in item:
            return item
        if self._last_tile is None or self._last_tile[0] != tile:
            self._last_tile = (tile, self.loader(item))
        return self._last_tile[1]

    def __len__(self) -> int:
        return len(self.index)

    def _transform(self, index: int):
        tile, top, left = self.index[index]
        crop = crop_sample(self._load_tile(tile), top, left, *self.cropper.window)
        return crop if self.transform is None else self.transform(crop)


def _tile_size(item: Mapping) -> tuple[int, int]:
    if "label_inst" in item:
        return tuple(np.asarray(item["label_inst"]).shape[-2:])
    path = item["image"]
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError("a data item must be a sample (with 'label_inst') or a file dict with an image path.")
    with Image.open(path) as img:
        return img.height, img.width


def _check_patches_fit(transform: Callable | None, window: tuple[int, int]) -> None:
    """Refuse now, not at the first crop, a chain whose random patches exceed the crop window."""
    from .pairs import RandPatchCropd  # pairs imports the points package, which imports this one

    pending = [transform]
    while pending:
        step = pending.pop()
        if isinstance(step, RandPatchCropd) and (step.patch_size[0] > window[0] or step.patch_size[1] > window[1]):
            raise ValueError(
                f"patch_size {step.patch_size} of the transform is larger than the crop window {window}: use a "
                "patch_size no larger than the window."
            )
        pending.extend(getattr(step, "transforms", None) or ())
