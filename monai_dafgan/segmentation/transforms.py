"""HoVer-Net's training transform chain: from a data-contract sample to what its loss takes.

The chain follows the MONAI model-zoo bundle ``pathology_nuclei_segmentation_classification`` (v0.2.6, fast mode
256 -> 164), with these differences, all on purpose:

- no torchvision: ``ColorJitter`` is replaced by MONAI intensity transforms (multiplicative brightness 0.9-1.0,
  contrast 0.95-1.1 about the mean, as in the bundle) and, for its hue/saturation jitter, which MONAI lacks, an H&E
  stain jitter (:class:`monai_dafgan.data.RandHEDJitterd`: each stain's optical density scaled by 0.95-1.05 and
  shifted by +-0.05, Tellez et al.'s "HED-light"; ``monai.apps.pathology`` 1.6.1 normalises stains, it does not
  augment them);
- the image is resampled bilinearly by the affine (the bundle uses nearest for everything), labels stay nearest;
- Gaussian noise has std up to 0.05 * 255 on the 0..255 image, HoVer-Net's own setting (the bundle's 0.05 on a
  0..255 image does nothing visible);
- ``points``, when a sample carries them, are dropped (an affine moves nuclei, and their varying length cannot be
  collated);
- inputs smaller than ``patch_size`` are zero-padded (image and labels) instead of failing at the network.

Input is a sample of the data contract (:mod:`monai_dafgan.data.io`), real or synthetic alike; the output is what
``PrepareBatchHoVerNet(extra_keys=["label_type", "hover_label_inst"])`` and ``HoVerNetLoss`` take.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from monai.transforms import (
    AsDiscreted,
    CastToTyped,
    CenterSpatialCropd,
    Compose,
    ComputeHoVerMapsd,
    DeleteItemsd,
    EnsureTyped,
    Lambdad,
    MedianSmoothd,
    OneOf,
    RandAffined,
    RandFlipd,
    RandGaussianNoised,
    RandGaussianSmoothd,
    RandScaleIntensityd,
    RandScaleIntensityFixedMeand,
    ScaleIntensityRange,
    ScaleIntensityRanged,
    SpatialPadd,
)
from monai.utils import convert_to_numpy, convert_to_tensor
from skimage.measure import label as connected_components

from monai_dafgan.data.instances import as_plane
from monai_dafgan.data.stain import RandHEDJitterd

__all__ = ["HOVERNET_NUM_CLASSES", "ScaleImaged", "hovernet_train_transforms", "scale_image", "split_disconnected_instances"]

HOVERNET_NUM_CLASSES = 5  # background + the 4 merged CoNSeP types
_LABEL_KEYS = ("label_inst", "label_type")
_SAMPLE_KEYS = ("image",) + _LABEL_KEYS


_IMAGE_SCALING = {"a_min": 0.0, "a_max": 255.0, "b_min": 0.0, "b_max": 1.0, "clip": True}


class ScaleImaged(ScaleIntensityRanged):
    """The segmenter's input scaling, one definition for training, evaluation and inference: the data contract's RGB
    0..255 to 0..1, clipped.

    Args:
        keys: the image keys (default ``image``).
        allow_missing_keys: do not raise when a key is missing.
    """

    def __init__(self, keys="image", allow_missing_keys: bool = False):
        super().__init__(keys=keys, allow_missing_keys=allow_missing_keys, **_IMAGE_SCALING)


def scale_image(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """:class:`ScaleImaged` on one image or batch (any shape): a float32 tensor 0..1."""
    return convert_to_tensor(ScaleIntensityRange(**_IMAGE_SCALING)(image), dtype=torch.float32, track_meta=False)


def split_disconnected_instances(inst: np.ndarray | torch.Tensor) -> np.ndarray:
    """Give every 8-connected piece of every instance its own id (the bundle's ``skimage.measure.label`` step).

    Crops can cut a nucleus into pieces; HoVer maps of a multi-piece id point to a centre between them.

    Args:
        inst: instance map (1, H, W) or (H, W), ids >= 0.

    Returns:
        int32 array of the same shape, ids 1..K (0 background). Touching instances with different ids stay apart.
    """
    array = convert_to_numpy(inst)
    plane = as_plane(array)
    return connected_components(plane, background=0, connectivity=2).astype(np.int32).reshape(array.shape)


def _foreground(inst: torch.Tensor) -> torch.Tensor:
    return (inst > 0).to(torch.int32)


def hovernet_train_transforms(patch_size: int = 256, out_size: int = 164, augment: bool = True) -> Compose:
    """Transform chain from a data-contract sample to a HoVer-Net training (``augment=True``) or validation sample.

    Args:
        patch_size: network input size (256 for ``HoVerNet(mode="fast")``, 270 for ``"original"``).
        out_size: network output size (164 fast, 80 original); ``patch_size - out_size`` must be even so that both
            centre crops share a centre.
        augment: apply the random affine, flips, blur/noise and colour augmentation; without it the chain is the
            bundle's validation chain (relabel, crop, scale, targets).

    Input sample: ``image`` (3, H, W) float 0..255, ``label_inst`` (1, H, W) int ids, ``label_type`` (1, H, W) int
    0..4, optional ``points`` (dropped); other keys (``name``, ``synthetic``) pass through. H, W >= ``patch_size``
    is expected (HoVer-Net patches are 540 x 540); smaller inputs are zero-padded.

    Returns:
        a ``Compose`` whose output has ``image`` (3, patch, patch) float32 0..1, ``label`` (2, out, out) float32
        one-hot foreground, ``label_type`` (5, out, out) float32 one-hot types, ``hover_label_inst`` (2, out, out)
        float32 horizontal/vertical maps in [-1, 1], ``label_inst`` (1, out, out) int32 instance ids (for metrics).
    """
    if patch_size < 1 or out_size < 1 or out_size > patch_size or (patch_size - out_size) % 2:
        raise ValueError(
            f"need 1 <= out_size <= patch_size with an even difference, got {patch_size=}, {out_size=}."
        )
    patch, out = (patch_size, patch_size), (out_size, out_size)
    transforms: list[Callable] = [
        DeleteItemsd(keys="points"),
        EnsureTyped(keys="image", dtype=torch.float32, track_meta=False),
        EnsureTyped(keys=_LABEL_KEYS, dtype=torch.int32, track_meta=False),
        Lambdad(keys="label_inst", func=split_disconnected_instances),
        SpatialPadd(keys=_SAMPLE_KEYS, spatial_size=patch, mode="constant"),
    ]
    if augment:
        transforms.append(
            RandAffined(
                keys=_SAMPLE_KEYS,
                prob=1.0,
                spatial_size=patch,
                rotate_range=(np.pi,),
                scale_range=((-0.2, 0.2), (-0.2, 0.2)),
                shear_range=((-0.05, 0.05), (-0.05, 0.05)),
                translate_range=((-6, 6), (-6, 6)),
                padding_mode="zeros",
                mode=("bilinear", "nearest", "nearest"),
            )
        )
    transforms.append(CenterSpatialCropd(keys="image", roi_size=patch))
    if augment:
        transforms += [
            RandFlipd(keys=_SAMPLE_KEYS, prob=0.5, spatial_axis=0),
            RandFlipd(keys=_SAMPLE_KEYS, prob=0.5, spatial_axis=1),
            OneOf(
                [
                    RandGaussianSmoothd(keys="image", sigma_x=(0.1, 1.1), sigma_y=(0.1, 1.1), prob=1.0),
                    MedianSmoothd(keys="image", radius=1),
                    RandGaussianNoised(keys="image", std=0.05 * 255.0, prob=1.0),
                ]
            ),
            RandScaleIntensityd(keys="image", factors=(-0.1, 0.0), prob=1.0),
            RandScaleIntensityFixedMeand(keys="image", factors=(-0.05, 0.1), prob=1.0),
            RandHEDJitterd(keys="image", prob=1.0, scale_range=0.05, shift_range=0.05),
        ]
    transforms += [
        ScaleImaged(keys="image"),
        CastToTyped(keys=_LABEL_KEYS, dtype=torch.int32),
        # HoVer maps come from whole nuclei, before the crop to the output size cuts them
        ComputeHoVerMapsd(keys="label_inst"),
        Lambdad(keys="label_inst", func=_foreground, overwrite="label"),
        CenterSpatialCropd(keys=("label", "hover_label_inst", "label_inst", "label_type"), roi_size=out),
        AsDiscreted(keys="label", to_onehot=2),
        AsDiscreted(keys="label_type", to_onehot=HOVERNET_NUM_CLASSES),
        CastToTyped(keys=("image", "label", "label_type", "hover_label_inst"), dtype=torch.float32),
        EnsureTyped(keys=("image", "label", "label_type", "hover_label_inst", "label_inst"), track_meta=False),
    ]
    return Compose(transforms)
