"""Label encodings the generators consume, as MONAI array/dict transform pairs.

- :class:`TypeOneHot`: a (1, H, W) type map 0..T -> (T + 1, H, W) float32 one-hot (channel 0 background).
- :class:`InstanceEdges`: a (1, H, W) instance map -> (1, H, W) float32, 1 where a 4-neighbour has another id, on
  both sides of every boundary (pix2pixHD's edge map), so touching nuclei stay apart in the mask-to-image
  generator's input.
- :class:`LabelsToPoints`: (label_inst, label_type) -> (K, 3) points, recomputed after spatial augmentation so
  that points always match the labels they came with; its dict twin is how a sample gets ``points`` (they are not
  a key of the data contract, see :mod:`monai_dafgan.data.io`).
- :class:`InstanceEllipsesd`: (label_inst) -> (K, 3) moment ellipses of its instances, row for row with the points
  (the shapes of the shape-aware point encoding).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import AsDiscrete, MapTransform, Transform
from monai.utils import convert_to_numpy

from .instances import as_plane, instance_ellipses, instance_points, label_boundaries, relabel_sequential
from .types import NUM_TYPES, require_type_range


def _like(result: np.ndarray, reference):
    """Return ``result`` as the same kind of container (tensor on its device, or numpy) as ``reference``."""
    if isinstance(reference, torch.Tensor):
        return torch.as_tensor(result, device=reference.device)
    return result


class TypeOneHot(Transform):
    """(1, H, W) integer type map 0..``num_types`` -> (``num_types`` + 1, H, W) float32 one-hot: MONAI's
    ``AsDiscrete(to_onehot=num_types + 1)``, after checking the ids (an id out of range would otherwise fail inside
    it without naming the range)."""

    def __init__(self, num_types: int = NUM_TYPES):
        self.num_types = num_types
        self.one_hot = AsDiscrete(to_onehot=num_types + 1, dtype=torch.float32)

    def __call__(self, label_type):
        types = as_plane(label_type).astype(np.int64)[None]
        require_type_range(types, self.num_types, "label_type")
        return _like(convert_to_numpy(self.one_hot(types), dtype=np.float32), label_type)


class InstanceEdges(Transform):
    """(1, H, W) instance map -> (1, H, W) float32 edge map (1 where a 4-neighbour has a different id)."""

    def __call__(self, label_inst):
        inst = as_plane(label_inst)
        return _like(label_boundaries(inst)[None].astype(np.float32), label_inst)


class LabelsToPoints(Transform):
    """(label_inst, label_type) -> (K, 3) float32 (row, col, type) of the pixel-mean centroid of each instance.

    Instance ids are renumbered 1..K first (spatial transforms can remove ids); the relabelled map is returned
    too, so that row k - 1 of the points stays instance k.
    """

    def __call__(self, label_inst, label_type) -> tuple[np.ndarray, np.ndarray]:
        inst, _ = relabel_sequential(as_plane(label_inst).astype(np.int64))
        types = as_plane(label_type).astype(np.int64)
        return instance_points(inst, types), inst[None].astype(np.int32)


class TypeOneHotd(MapTransform):
    """Dict twin of :class:`TypeOneHot`: writes the one-hot of ``keys`` to ``output_key``."""

    def __init__(
        self,
        keys: KeysCollection = "label_type",
        output_key: Hashable = "type_onehot",
        num_types: int = NUM_TYPES,
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, allow_missing_keys)
        self.output_key, self.converter = output_key, TypeOneHot(num_types)

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.output_key] = self.converter(d[key])
        return d


class InstanceEdgesd(MapTransform):
    """Dict twin of :class:`InstanceEdges`: writes the edge map of ``keys`` to ``output_key``."""

    def __init__(
        self, keys: KeysCollection = "label_inst", output_key: Hashable = "inst_edges", allow_missing_keys: bool = False
    ):
        super().__init__(keys, allow_missing_keys)
        self.output_key, self.converter = output_key, InstanceEdges()

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.output_key] = self.converter(d[key])
        return d


class LabelsToPointsd(MapTransform):
    """Dict twin of :class:`LabelsToPoints`: rewrites ``points`` and renumbers the instance map from the labels.

    ``keys`` are the instance and the type map, in this order. Samples with ``points`` hold (K, 3) rows with a K of
    their own, which MONAI's default collate cannot stack (nor its suggested ``pad_list_data_collate``): batch them
    with ``collate_fn=monai_dafgan.data.nuclei_collate``."""

    def __init__(
        self,
        keys: KeysCollection = ("label_inst", "label_type"),
        points_key: Hashable = "points",
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 2:
            raise ValueError(f"keys must name the instance map and the type map, got {self.keys}.")
        self.points_key, self.converter = points_key, LabelsToPoints()

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        inst_key, type_key = self.keys
        if self.allow_missing_keys and (inst_key not in d or type_key not in d):
            return d
        points, inst = self.converter(d[inst_key], d[type_key])
        d[self.points_key], d[inst_key] = points, _like(inst, d[inst_key])
        return d


class InstanceEllipsesd(MapTransform):
    """Writes the (K, 3) float32 moment ellipses ``(major, minor, orientation)`` of instances 1..K of ``keys`` (a
    (1, H, W) or (H, W) map numbered 1..K, e.g. after :class:`LabelsToPointsd`) to ``output_key``; see
    :func:`monai_dafgan.data.instances.instance_ellipses`."""

    def __init__(self, keys: KeysCollection = "label_inst", output_key: Hashable = "point_shapes", allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.output_key = output_key

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.output_key] = instance_ellipses(as_plane(d[key])).astype(np.float32)
        return d
