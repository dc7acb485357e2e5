"""What the mask-to-image generator (G2) is given and what it returns, in one place for its training pairs
(:mod:`monai_dafgan.data.pairs`) and for synthesis (:mod:`monai_dafgan.synthesis.synthesizer`): any drift between
the two would silently degrade every synthetic image made with trained weights.

- :func:`mask_condition`: (1, H, W) instance and type maps -> (T + 2, H, W) float32, the one-hot type mask
  (channel 0 background) followed by the instance-edge map (1 on both sides of every instance boundary).
- :func:`image_to_unit_range` / :func:`unit_range_to_image`: RGB 0..255 <-> -1..1, G2's tanh range.

G1's input, the point map, has its one home in :func:`monai_dafgan.points.encoding.points_to_maps` (both the
training pairs and the synthesizer call it).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
from monai.transforms import MapTransform
from monai.utils import convert_to_numpy

from .transforms import InstanceEdges, TypeOneHot
from .types import NUM_TYPES

__all__ = ["MaskConditiond", "image_to_unit_range", "mask_condition", "unit_range_to_image"]


def mask_condition(label_inst, label_type, num_types: int = NUM_TYPES) -> np.ndarray:
    """G2's input: (1, H, W) or (H, W) instance and type maps -> (T + 2, H, W) float32 one-hot types + edges."""
    inst = convert_to_numpy(label_inst)
    types = convert_to_numpy(label_type)
    inst, types = inst.reshape(1, *inst.shape[-2:]), types.reshape(1, *types.shape[-2:])
    return np.concatenate([TypeOneHot(num_types)(types), InstanceEdges()(inst)], axis=0).astype(np.float32)


class MaskConditiond(MapTransform):
    """Dict transform: writes :func:`mask_condition` of ``keys`` = (instance key, type key) to ``output_key``."""

    def __init__(
        self,
        keys: tuple[Hashable, Hashable] = ("label_inst", "label_type"),
        output_key: Hashable = "condition",
        num_types: int = NUM_TYPES,
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 2:
            raise ValueError(f"keys must be (instance key, type key), got {keys!r}.")
        self.output_key, self.num_types = output_key, num_types

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        inst_key, type_key = self.keys
        if inst_key in d and type_key in d:
            d[self.output_key] = mask_condition(d[inst_key], d[type_key], self.num_types)
        elif not self.allow_missing_keys:
            raise KeyError(f"MaskConditiond needs both {inst_key!r} and {type_key!r}; the data has {sorted(map(str, d))}.")
        return d


def image_to_unit_range(image):
    """RGB 0..255 -> -1..1, the generators' image range (their output is a tanh)."""
    return image / 127.5 - 1.0


def unit_range_to_image(image):
    """-1..1 -> RGB 0..255 (inverse of :func:`image_to_unit_range`), clipped."""
    return ((image + 1.0) * 127.5).clip(0, 255)
