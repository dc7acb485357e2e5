"""Training pairs for the two generators, made from real samples.

- Points to masks (G1): ``condition`` = the point map of the sample's real centroids (T + 1 channels, see
  :mod:`monai_dafgan.points.encoding`), ``target`` = the one-hot type mask (T + 1 channels).
- Masks to images (G2): ``condition`` = the one-hot type mask plus an instance-edge channel (T + 2 channels),
  ``target`` = the RGB image scaled from 0..255 to -1..1.

Both pipelines take a sample (data contract) and keep its ``name`` when it has one; they optionally cut a random ``patch_size`` window and apply random
flips and 90-degree rotations to image and labels together, then recompute the points from the augmented labels.
With ``half_resolution=True`` condition and target are average-pooled once (3x3, stride 2), which is what the
global part of a local-enhancer generator sees: pix2pixHD's first phase trains that global generator alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.transforms import (
    Compose,
    ConcatItemsd,
    CopyItemsd,
    EnsureTyped,
    Lambdad,
    RandFlipd,
    RandRotate90d,
    RandSpatialCropd,
    SelectItemsd,
)

from monai.utils import convert_to_numpy

from ..points.encoding import DEFAULT_RADIUS, PointsToMapd
from .transforms import InstanceEdgesd, LabelsToPointsd, TypeOneHotd
from .types import NUM_TYPES

SPATIAL_KEYS = ("image", "label_inst", "label_type")


def _spatial_augmentation(patch_size: Sequence[int] | int | None, augment: bool) -> list:
    steps = []
    if patch_size is not None:
        steps.append(RandSpatialCropd(SPATIAL_KEYS, roi_size=patch_size, random_size=False))
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
) -> Compose:
    """Sample -> ``{"condition": (T+1, H, W) point map, "target": (T+1, H, W) one-hot mask}``, float32 tensors."""
    return Compose([
        *_spatial_augmentation(patch_size, augment),
        Lambdad(["label_inst", "label_type"], convert_to_numpy),
        LabelsToPointsd(),
        PointsToMapd(radius=radius, num_types=num_types, map_key="condition", markers_key="point_markers"),
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
        TypeOneHotd(output_key="type_onehot", num_types=num_types),
        InstanceEdgesd(output_key="inst_edges"),
        ConcatItemsd(["type_onehot", "inst_edges"], name="condition", dim=0),
        CopyItemsd("image", names="target"),
        Lambdad("target", image_to_unit_range),
        SelectItemsd(["condition", "target", "name"], allow_missing_keys=True),
        EnsureTyped(["condition", "target"], data_type="tensor", dtype=torch.float32, track_meta=False),
        *_finish(half_resolution),
    ])


def image_to_unit_range(image):
    """RGB 0..255 -> -1..1, the generators' image range (their output is a tanh)."""
    return image / 127.5 - 1.0


def unit_range_to_image(image):
    """-1..1 -> RGB 0..255 (inverse of :func:`image_to_unit_range`), clipped."""
    return ((image + 1.0) * 127.5).clip(0, 255)
