"""HoVer-Net recipe pieces: the training transform chain, two-stage training helpers, whole-tile inference,
post-processing (also as an evaluator transform) and writing predictions in CoNSeP layout.

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

import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
from monai.apps.pathology.inferers import SlidingWindowHoVerNetInferer
from monai.apps.pathology.transforms.post.array import (
    HoVerNetInstanceMapPostProcessing,
    HoVerNetNuclearTypePostProcessing,
)
from monai.transforms import (
    AsDiscreted,
    CastToTyped,
    CenterSpatialCropd,
    Compose,
    ComputeHoVerMapsd,
    DeleteItemsd,
    EnsureTyped,
    Lambdad,
    MapTransform,
    MedianSmoothd,
    OneOf,
    RandAffined,
    RandFlipd,
    RandGaussianNoised,
    RandGaussianSmoothd,
    RandScaleIntensityd,
    RandScaleIntensityFixedMeand,
    ScaleIntensityRanged,
    SpatialPadd,
)
from monai.utils import HoVerNetBranch, convert_to_dst_type, convert_to_numpy
from scipy import ndimage
from skimage.measure import label as connected_components

from monai_dafgan.data.instances import relabel_sequential
from monai_dafgan.data.io import write_consep_sample
from monai_dafgan.data.stain import RandHEDJitterd
from monai_dafgan.data.transforms import LabelsToPoints
from monai_dafgan.segmentation.networks import ResNetHoVerNet

__all__ = [
    "HOVERNET_NUM_CLASSES",
    "TwoStageStepLR",
    "hovernet_encoder_parameters",
    "hovernet_inferer",
    "hovernet_lr_scheduler",
    "hovernet_postprocess",
    "hovernet_train_transforms",
    "HoVerNetNucleid",
    "SaveNucleiPredictions",
    "infer_tile",
    "predict_tile",
    "split_disconnected_instances",
]

HOVERNET_NUM_CLASSES = 5  # background + the 4 merged CoNSeP types
_LABEL_KEYS = ("label_inst", "label_type")
_SAMPLE_KEYS = ("image",) + _LABEL_KEYS


def split_disconnected_instances(inst: np.ndarray | torch.Tensor) -> np.ndarray:
    """Give every 8-connected piece of every instance its own id (the bundle's ``skimage.measure.label`` step).

    Crops can cut a nucleus into pieces; HoVer maps of a multi-piece id point to a centre between them.

    Args:
        inst: instance map (1, H, W) or (H, W), ids >= 0.

    Returns:
        int32 array of the same shape, ids 1..K (0 background). Touching instances with different ids stay apart.
    """
    array = convert_to_numpy(inst)
    plane = array.reshape(array.shape[-2:]) if array.ndim == 3 else array
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
        ScaleIntensityRanged(keys="image", a_min=0.0, a_max=255.0, b_min=0.0, b_max=1.0, clip=True),
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


def hovernet_encoder_parameters(network: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The parameters ``freeze_encoder=True`` freezes. MONAI's ``HoVerNet``: the dense layers of the first residual
    block and the whole of the other three (the stem, the first block's shortcut and its transition stay trainable).
    :class:`monai_dafgan.segmentation.ResNetHoVerNet`: the whole ResNet encoder (stem included).

    With :class:`monai_dafgan.engines.FreezeParameters` this gives the model zoo's two stages (encoder frozen, then
    unfrozen) in one run."""
    network = getattr(network, "module", network)  # DataParallel / DDP
    if isinstance(network, ResNetHoVerNet):
        return list(network.encoder.parameters())
    blocks = list(network.res_blocks.children())
    return list(blocks[0].layers.parameters()) + [p for block in blocks[1:] for p in block.parameters()]


class TwoStageStepLR:
    """Learning-rate factor (for ``LambdaLR``, stepped per epoch) of two stages that each restart a ``StepLR``.

    The model zoo trains stage 0 (encoder frozen) and stage 1 (unfrozen) as two runs, each with ``StepLR(step_size,
    gamma)`` from the base rate; in one run the factor is ``gamma ** ((epoch - start) // step_size)``, ``start``
    being 0 in the first ``frozen_epochs`` epochs and ``frozen_epochs`` after.
    """

    def __init__(self, frozen_epochs: int, step_size: int = 25, gamma: float = 0.1):
        if frozen_epochs < 0 or step_size < 1:
            raise ValueError(f"need frozen_epochs >= 0 and step_size >= 1, got {frozen_epochs=}, {step_size=}.")
        self.frozen_epochs, self.step_size, self.gamma = int(frozen_epochs), int(step_size), float(gamma)

    def __call__(self, epoch: int) -> float:
        start = self.frozen_epochs if epoch >= self.frozen_epochs else 0
        return self.gamma ** ((epoch - start) // self.step_size)


def hovernet_lr_scheduler(
    optimizer: torch.optim.Optimizer,
    schedule: str,
    epochs: int,
    iterations_per_epoch: int,
    frozen_epochs: int = 0,
    lr_step: int = 25,
    warmup_fraction: float = 0.15,
) -> torch.optim.lr_scheduler.LRScheduler:
    """The HoVer-Net bundle's learning-rate schedule, by name.

    Args:
        optimizer: its learning rate is the peak (``onecycle``) or the start of each stage (``step``).
        schedule: ``step``: :class:`TwoStageStepLR` (stepped per epoch, the model zoo's); ``onecycle``: torch's
            ``OneCycleLR`` over ``epochs * iterations_per_epoch`` iterations (stepped per iteration), warm-up over
            ``warmup_fraction`` of them, cosine decay after.
        epochs, iterations_per_epoch: the run's length.
        frozen_epochs, lr_step: of :class:`TwoStageStepLR`.
        warmup_fraction: of ``onecycle``.

    Raises:
        ValueError: an unknown schedule, or a run without iterations.
    """
    if schedule == "step":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, TwoStageStepLR(frozen_epochs, lr_step))
    if schedule == "onecycle":
        total = int(epochs) * int(iterations_per_epoch)
        if total < 1:
            raise ValueError(f"onecycle needs at least one iteration, got {epochs=} x {iterations_per_epoch=}.")
        peaks = [group["lr"] for group in optimizer.param_groups]
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=peaks, total_steps=total, pct_start=warmup_fraction
        )
    raise ValueError(f"unknown lr_schedule {schedule!r}; choose step or onecycle.")


class _HoVerNetInferer(SlidingWindowHoVerNetInferer):
    def __call__(self, *args, **kwargs):
        with warnings.catch_warnings():
            # MONAI 1.6.1's HoVer-Net inferer indexes with a list of slices; torch still reads it as a tuple
            # (tests/test_hovernet_recipe.py checks the stitching), so the deprecation is noise here
            warnings.filterwarnings("ignore", message="Using a non-tuple sequence", category=UserWarning)
            return super().__call__(*args, **kwargs)


def hovernet_inferer(
    roi_size: int = 256, out_size: int = 164, sw_batch_size: int = 4, overlap: float | None = None
) -> SlidingWindowHoVerNetInferer:
    """The bundle's whole-tile inferer: windows step by the output size and the tile is padded by half the margin.

    Args:
        roi_size: network input size (256 fast, 270 original).
        out_size: network output size (164 fast, 80 original).
        sw_batch_size: windows per forward pass.
        overlap: window overlap; default ``1 - out_size / roi_size``, so the valid outputs tile the image exactly.

    Returns:
        a ``SlidingWindowHoVerNetInferer`` with constant zero padding of ``(roi_size - out_size) // 2`` per side,
        without which the tile's border would get no prediction.
    """
    margin = (roi_size - out_size) // 2
    return _HoVerNetInferer(
        roi_size=roi_size,
        sw_batch_size=sw_batch_size,
        overlap=1.0 - out_size / roi_size if overlap is None else overlap,
        padding_mode="constant",
        cval=0.0,
        extra_input_padding=(margin,) * 4,
    )


def infer_tile(
    network: torch.nn.Module,
    image: np.ndarray | torch.Tensor,
    device: str | torch.device = "cpu",
    roi_size: int = 256,
    out_size: int = 164,
    sw_batch_size: int = 4,
    overlap: float | None = None,
) -> dict[str, torch.Tensor]:
    """Raw HoVer-Net outputs for one whole tile, by sliding window.

    Args:
        network: a network of :func:`monai_dafgan.segmentation.build_hovernet` (any encoder), a MONAI ``HoVerNet``,
            or anything returning their dict of branches; put in eval mode for the call and restored afterwards.
        image: (3, H, W) RGB, 0..255 (the data contract); scaled to 0..1 as in training.
        device: where the network runs; AMP is used on CUDA only.
        roi_size, out_size, sw_batch_size, overlap: see :func:`hovernet_inferer`.

    Returns:
        ``{"nucleus_prediction": (2, H, W), "horizontal_vertical": (2, H, W), "type_prediction": (C, H, W)}``
        float32 CPU tensors (logits; HV maps in network units).
    """
    device = torch.device(device)
    tile = torch.as_tensor(convert_to_numpy(image), dtype=torch.float32)
    if tile.ndim != 3 or tile.shape[0] != 3:
        raise ValueError(f"image must be (3, H, W), got {tuple(tile.shape)}.")
    tile = (tile / 255.0).clamp(0.0, 1.0)[None].to(device)
    inferer = hovernet_inferer(roi_size, out_size, sw_batch_size, overlap)
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad(), torch.autocast(device_type=device.type, enabled=device.type == "cuda"):
            outputs = inferer(tile, network)
    finally:
        network.train(was_training)
    return {str(getattr(k, "value", k)): v[0].detach().float().cpu() for k, v in outputs.items()}


class _KeepUnmarkedComponents:
    """Wraps a marker step: every connected component of the watershed mask that got no marker becomes a marker
    of its own (whole), so the watershed keeps it as one instance instead of dropping it."""

    def __init__(self, generate_markers: Callable):
        self.generate_markers = generate_markers

    def __call__(self, mask, instance_border):
        markers = convert_to_numpy(self.generate_markers(mask, instance_border))
        components = connected_components(convert_to_numpy(mask).reshape(markers.shape[-2:]) > 0, connectivity=1)
        components = components.reshape(markers.shape)
        marked = np.unique(components[markers > 0])
        unmarked = (components > 0) & ~np.isin(components, marked)
        if unmarked.any():
            _, new_ids = np.unique(components[unmarked], return_inverse=True)
            markers = markers.copy()
            markers[unmarked] = markers.max() + 1 + new_ids.reshape(-1)
        return markers


class _DropSlivers:
    """Wraps the watershed step: instances one pixel thick (bounding box of height or width 1) are removed. They are
    slivers, not nuclei, and MONAI's contour step (``skimage.measure.find_contours`` on the squeezed mask) raises an
    IndexError on them, which would stop a whole-tile evaluation."""

    def __init__(self, watershed: Callable):
        self.watershed = watershed

    def __call__(self, *args, **kwargs):
        instances = self.watershed(*args, **kwargs)
        plane = convert_to_numpy(instances).reshape(instances.shape[-2:])
        slivers = [
            index + 1
            for index, box in enumerate(ndimage.find_objects(plane))
            if box is not None and (box[0].stop - box[0].start == 1 or box[1].stop - box[1].start == 1)
        ]
        if not slivers:
            return instances
        plane = np.where(np.isin(plane, slivers), 0, plane)
        return convert_to_dst_type(plane.reshape(instances.shape), instances)[0]


def hovernet_postprocess(
    outputs: Mapping[str, torch.Tensor],
    sobel_kernel_size: int = 21,
    marker_threshold: float = 0.4,
    marker_radius: int = 2,
    min_object_size: int = 10,
    keep_unmarked: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Instance and type maps from HoVer-Net outputs of one image (MONAI's pathology post-processing).

    Args:
        outputs: ``nucleus_prediction`` (2, H, W), ``horizontal_vertical`` (2, H, W), ``type_prediction`` (C, H, W)
            logits of one image (no batch dimension).
        sobel_kernel_size, marker_threshold, marker_radius, min_object_size: of
            ``HoVerNetInstanceMapPostProcessing``; defaults are the bundle's inference settings.
        keep_unmarked: HoVer-Net's watershed drops every foreground component in which the marker step (HV-map
            energy below ``marker_threshold``) found no marker; with True each such component is kept as one
            instance. It changes nothing where every nucleus has a marker, and keeps the nuclei a network whose HV
            maps are still weak (short training) finds but cannot split. Default False: HoVer-Net's published rule.

    Returns:
        ``(inst_map, type_map)``: (H, W) int32 arrays, instance ids 1..K (0 background), types 0..C-1 per instance.
        An image where no pixel's nucleus logit wins gives two all-zero maps without running the watershed.
        Instances one pixel thick are dropped (MONAI's contour step cannot take them).
    """
    nuclear = torch.as_tensor(outputs[HoVerNetBranch.NP.value])
    if not bool((nuclear.argmax(0) > 0).any()):
        # MONAI's border step raises "Not a valid hover map" on the flat HV maps an empty prediction often has
        empty = np.zeros(nuclear.shape[-2:], np.int32)
        return empty, empty.copy()
    instance_post = HoVerNetInstanceMapPostProcessing(
        sobel_kernel_size=sobel_kernel_size,
        marker_threshold=marker_threshold,
        marker_radius=marker_radius,
        min_object_size=min_object_size,
    )
    if keep_unmarked:
        instance_post.generate_watershed_markers = _KeepUnmarkedComponents(instance_post.generate_watershed_markers)
    instance_post.watershed = _DropSlivers(instance_post.watershed)
    type_post = HoVerNetNuclearTypePostProcessing()
    with warnings.catch_warnings():
        # MONAI 1.6.1 calls skimage's remove_small_objects with its deprecated min_size; the result is unchanged
        warnings.filterwarnings("ignore", message="Parameter `min_size` is deprecated", category=FutureWarning)
        info, inst_map = instance_post(outputs[HoVerNetBranch.NP.value], outputs[HoVerNetBranch.HV.value])
    _, type_map = type_post(outputs[HoVerNetBranch.NC.value], info, inst_map)
    inst = convert_to_numpy(inst_map).reshape(inst_map.shape[-2:])
    types = convert_to_numpy(type_map).reshape(inst.shape)
    inst, _ = relabel_sequential(inst.astype(np.int64))
    return inst.astype(np.int32), np.rint(types).astype(np.int32)


def predict_tile(
    network: torch.nn.Module,
    image: np.ndarray | torch.Tensor,
    device: str | torch.device = "cpu",
    roi_size: int = 256,
    out_size: int = 164,
    sw_batch_size: int = 4,
    overlap: float | None = None,
    **postprocess_kwargs,
) -> tuple[np.ndarray, np.ndarray]:
    """Segment and classify the nuclei of one whole tile of any size: :func:`infer_tile` + :func:`hovernet_postprocess`.

    Args:
        network: a network of :func:`monai_dafgan.segmentation.build_hovernet` (any encoder) or a MONAI ``HoVerNet``.
        image: (3, H, W) RGB, 0..255.
        device, roi_size, out_size, sw_batch_size, overlap: see :func:`infer_tile`.
        postprocess_kwargs: passed to :func:`hovernet_postprocess`.

    Returns:
        ``(inst_map, type_map)``: (H, W) int32 arrays.
    """
    outputs = infer_tile(network, image, device, roi_size, out_size, sw_batch_size, overlap)
    return hovernet_postprocess(outputs, **postprocess_kwargs)


class HoVerNetNucleid(MapTransform):
    """Dictionary post-processing for an evaluator: the HoVer-Net outputs of one image (``pred``, a dict of branches
    without batch dimension) -> ``inst_map`` and ``type_map`` ((1, H, W) int32) by :func:`hovernet_postprocess`.

    Args:
        keys: the key of the outputs (default ``pred``; one key).
        postprocess_kwargs: passed to :func:`hovernet_postprocess`.
    """

    def __init__(self, keys="pred", allow_missing_keys: bool = False, **postprocess_kwargs):
        super().__init__(keys, allow_missing_keys)
        self.postprocess_kwargs = postprocess_kwargs

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            inst, types = hovernet_postprocess(d[key], **self.postprocess_kwargs)
            d["inst_map"], d["type_map"] = inst[None], types[None]
        return d


class SaveNucleiPredictions:
    """Evaluator handler writing each image's predicted nuclei in CoNSeP layout.

    For every output item (after :class:`HoVerNetNucleid`) writes ``<output_dir>/Labels/<name>.mat`` (``inst_map``,
    ``type_map``, ``inst_type``, ``inst_centroid``, as CoNSeP's files), the image as ``<output_dir>/Images/<name>.png``
    (so the folder is itself a dataset, e.g. of pseudo-labels) and, with ``overlays``,
    ``<output_dir>/overlays/<name>.png``. Names come from the batch's ``name``; images are read from the output's
    ``image`` with values 0..``image_max``.
    """

    def __init__(self, output_dir: str | os.PathLike, overlays: bool = True, image_max: float = 1.0):
        self.output_dir, self.overlays, self.image_max = Path(output_dir), overlays, float(image_max)

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine) -> None:
        from monai_dafgan.visualize import overlay_nuclei, save_png

        for index, (item, output) in enumerate(zip(engine.state.batch, engine.state.output)):
            name = item.get("name") or f"image_{engine.state.iteration}_{index}"
            image = convert_to_numpy(output["image"]).astype(np.float32) * (255.0 / self.image_max)
            types = convert_to_numpy(output["type_map"]).reshape(1, *image.shape[1:])
            _, inst = LabelsToPoints()(output["inst_map"], types)  # ids 1..K, as the written files have them
            sample = {"image": image, "label_inst": inst, "label_type": types}
            write_consep_sample(self.output_dir, sample, name=name)
            if self.overlays:
                save_png(overlay_nuclei(image, inst, types), self.output_dir / "overlays" / f"{name}.png")
