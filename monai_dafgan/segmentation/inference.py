"""HoVer-Net whole-tile inference (sliding window over the network's input size), post-processing of its three
branches into instance and type maps (also as an evaluator transform), and writing predictions in CoNSeP layout."""

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
from monai.transforms import MapTransform
from monai.utils import HoVerNetBranch, convert_to_dst_type, convert_to_numpy
from scipy import ndimage
from skimage.measure import label as connected_components

from monai_dafgan.data.instances import as_plane, relabel_sequential
from monai_dafgan.data.io import write_consep_sample
from monai_dafgan.data.transforms import LabelsToPoints
from monai_dafgan.segmentation.transforms import scale_image

__all__ = ["HoVerNetNucleid", "SaveNucleiPredictions", "hovernet_inferer", "hovernet_postprocess", "infer_tile",
           "predict_tile"]


class _HoVerNetInferer(SlidingWindowHoVerNetInferer):
    def __call__(self, *args, **kwargs):
        with warnings.catch_warnings():
            # MONAI 1.6.1's HoVer-Net inferer indexes with a list of slices; torch still reads it as a tuple
            # (tests/test_segmentation_inference.py checks the stitching), so the deprecation is noise here
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
    tile = scale_image(image)
    if tile.ndim != 3 or tile.shape[0] != 3:
        raise ValueError(f"image must be (3, H, W), got {tuple(tile.shape)}.")
    tile = tile[None].to(device)
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
        components = connected_components(as_plane(mask) > 0, connectivity=1)
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
        plane = as_plane(instances)
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
    inst = as_plane(inst_map)
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
