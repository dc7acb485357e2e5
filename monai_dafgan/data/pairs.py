"""Training pairs for the two generators, made from real samples.

- Points to masks (G1): ``condition`` = the point map of the sample's real centroids (T + 1 channels, see
  :mod:`monai_dafgan.points.encoding`), ``target`` = the one-hot type mask (T + 1 channels). ``point_encoding``
  ``"disk"`` draws each point as a disk of ``radius`` (the paper's point map), ``"ellipse"`` as the moment ellipse
  of its real nucleus (the shape-aware encoding; synthesis then draws shapes from the centroid library).
- Masks to images (G2): ``condition`` = the one-hot type mask plus an instance-edge channel (T + 2 channels),
  ``target`` = the RGB image scaled from 0..255 to -1..1.

Both pipelines take a sample (data contract) and keep its ``name`` when it has one; they optionally cut a random
``patch_size`` window (a sample smaller than it is refused with a ``ValueError``, see :class:`RandPatchCropd`) and
apply random flips and 90-degree rotations to image and labels together, then recompute the points from the
augmented labels.
With ``half_resolution=True`` condition and target are average-pooled once (3x3, stride 2), which is what the
global part of a local-enhancer generator sees: pix2pixHD's first phase trains that global generator alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.transforms import (
    Compose,
    CopyItemsd,
    EnsureTyped,
    Lambdad,
    RandFlipd,
    RandRotate90d,
    RandSpatialCropd,
    SelectItemsd,
)

from monai.utils import convert_to_numpy, ensure_tuple_rep

from ..points.encoding import DEFAULT_RADIUS, PointsToMapd
from .conditions import MaskConditiond, image_to_unit_range, unit_range_to_image  # noqa: F401 (re-exported)
from .transforms import InstanceEllipsesd, LabelsToPointsd, TypeOneHotd
from .types import NUM_TYPES

SPATIAL_KEYS = ("image", "label_inst", "label_type")
#: How G1's input draws a point: "disk" (a disk of the point radius) or "ellipse" (the nucleus's shape).
POINT_ENCODINGS = ("disk", "ellipse")


class RandPatchCropd(RandSpatialCropd):
    """A random ``patch_size`` window of image and labels, which refuses a smaller sample with a ``ValueError``
    (MONAI's ``RandSpatialCropd`` would return the whole sample, so a ``patch_size`` above a crop window would
    silently train on smaller patches)."""

    def __init__(self, patch_size: Sequence[int] | int, keys: Sequence[str] = SPATIAL_KEYS):
        self.patch_size = tuple(int(v) for v in ensure_tuple_rep(patch_size, 2))
        if min(self.patch_size) < 1:
            raise ValueError(f"patch_size must be positive, got {patch_size}.")
        super().__init__(keys, roi_size=self.patch_size, random_size=False)

    def __call__(self, data, lazy: bool | None = None):
        size = tuple(data[self.first_key(data)].shape[-2:])
        if size[0] < self.patch_size[0] or size[1] < self.patch_size[1]:
            where = f" ({data['name']})" if data.get("name") else ""
            raise ValueError(
                f"patch_size {self.patch_size} is larger than the {size[0]}x{size[1]} sample{where}; use a patch_size "
                "no larger than the crop window (e.g. SlidingWindowCropDataset's window)."
            )
        return super().__call__(data, lazy)


def _spatial_augmentation(patch_size: Sequence[int] | int | None, augment: bool) -> list:
    steps = []
    if patch_size is not None:
        steps.append(RandPatchCropd(patch_size))
    if augment:
        steps += [
            RandFlipd(SPATIAL_KEYS, prob=0.5, spatial_axis=0),
            RandFlipd(SPATIAL_KEYS, prob=0.5, spatial_axis=1),
            RandRotate90d(SPATIAL_KEYS, prob=0.5, max_k=3),
        ]
    return steps


def to_half_resolution(x: torch.Tensor) -> torch.Tensor:
    """(C, H, W) -> (C, ceil(H/2), ceil(W/2)) by 3x3 average pooling with stride 2 (pix2pixHD's input pyramid)."""
    return torch.nn.functional.avg_pool2d(x[None], 3, stride=2, padding=1, count_include_pad=False)[0]


def _finish(half: bool) -> list:
    return [Lambdad(["condition", "target"], to_half_resolution)] if half else []


def points_to_mask_pairs(
    patch_size: Sequence[int] | int | None = None,
    augment: bool = True,
    radius: float = DEFAULT_RADIUS,
    num_types: int = NUM_TYPES,
    half_resolution: bool = False,
    point_encoding: str = "disk",
) -> Compose:
    """Sample -> ``{"condition": (T+1, H, W) point map, "target": (T+1, H, W) one-hot mask}``, float32 tensors."""
    if point_encoding not in POINT_ENCODINGS:
        raise ValueError(f"point_encoding must be one of {POINT_ENCODINGS}, got {point_encoding!r}.")
    ellipse = point_encoding == "ellipse"
    return Compose([
        *_spatial_augmentation(patch_size, augment),
        Lambdad(["label_inst", "label_type"], convert_to_numpy),
        LabelsToPointsd(),
        *([InstanceEllipsesd("label_inst", "point_shapes")] if ellipse else []),
        PointsToMapd(radius=radius, num_types=num_types, map_key="condition", markers_key="point_markers",
                     shapes_key="point_shapes" if ellipse else None),
        TypeOneHotd(output_key="target", num_types=num_types),
        SelectItemsd(["condition", "target", "name"], allow_missing_keys=True),
        EnsureTyped(["condition", "target"], data_type="tensor", dtype=torch.float32, track_meta=False),
        *_finish(half_resolution),
    ])


def mask_to_image_pairs(
    patch_size: Sequence[int] | int | None = None,
    augment: bool = True,
    num_types: int = NUM_TYPES,
    half_resolution: bool = False,
) -> Compose:
    """Sample -> ``{"condition": (T+2, H, W) one-hot mask + edges, "target": (3, H, W) image in -1..1}``."""
    return Compose([
        *_spatial_augmentation(patch_size, augment),
        Lambdad(["label_inst", "label_type"], convert_to_numpy),
        MaskConditiond(("label_inst", "label_type"), output_key="condition", num_types=num_types),
        CopyItemsd("image", names="target"),
        Lambdad("target", image_to_unit_range),
        SelectItemsd(["condition", "target", "name"], allow_missing_keys=True),
        EnsureTyped(["condition", "target"], data_type="tensor", dtype=torch.float32, track_meta=False),
        *_finish(half_resolution),
    ])
