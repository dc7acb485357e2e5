"""H&E stain augmentation as a MONAI array/dict transform pair (MONAI 1.6 has stain normalisation, no augmentation).

:class:`RandHEDJitter` perturbs each stain of an RGB image in optical-density space (Tellez et al., "Whole-slide
mitosis detection in H&E breast histology using PHH3 as a reference to train distilled stain-invariant convolutional
networks", IEEE TMI 2018): ``od = -log(rgb)``, stain amounts ``s = od @ hed_from_rgb`` (skimage's Ruifrok-Johnston
haematoxylin / eosin / DAB vectors), ``s' = alpha * s + beta`` with ``alpha ~ U(1 - a, 1 + a)`` and
``beta ~ U(-b, b)`` per stain, and back ``rgb' = exp(-s' @ rgb_from_hed)``. Images are RGB 0..255 (the data
contract); the result is clipped to 0..255.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform
from skimage.color import hed_from_rgb, rgb_from_hed

__all__ = ["RandHEDJitter", "RandHEDJitterd"]

_MIN_INTENSITY = 1.0  # of 255: keeps -log finite for black pixels


class RandHEDJitter(RandomizableTransform):
    """Random haematoxylin / eosin / DAB jitter of a (3, H, W) RGB image with values 0..255.

    Args:
        prob: probability of applying it.
        scale_range: ``a``: each stain's amount is scaled by a factor drawn from ``[1 - a, 1 + a]``.
        shift_range: ``b``: and shifted by an optical density drawn from ``[-b, b]``.
    """

    def __init__(self, prob: float = 1.0, scale_range: float = 0.05, shift_range: float = 0.05):
        RandomizableTransform.__init__(self, prob)
        if scale_range < 0 or shift_range < 0:
            raise ValueError(f"ranges must be >= 0, got {scale_range=}, {shift_range=}.")
        self.scale_range, self.shift_range = float(scale_range), float(shift_range)
        self.scale, self.shift = np.ones(3), np.zeros(3)

    def randomize(self, data=None) -> None:
        super().randomize(None)
        if self._do_transform:
            self.scale = self.R.uniform(1 - self.scale_range, 1 + self.scale_range, 3)
            self.shift = self.R.uniform(-self.shift_range, self.shift_range, 3)

    def __call__(self, img, randomize: bool = True):
        if randomize:
            self.randomize()
        if not self._do_transform:
            return img
        image = torch.as_tensor(img)
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"RandHEDJitter needs a (3, H, W) RGB image, got {tuple(image.shape)}.")
        work = image.to(torch.float64)
        od = -torch.log(work.clamp(_MIN_INTENSITY, 255.0) / 255.0).reshape(3, -1)
        to_hed = torch.as_tensor(hed_from_rgb, dtype=torch.float64, device=work.device)
        to_rgb = torch.as_tensor(rgb_from_hed, dtype=torch.float64, device=work.device)
        stains = to_hed.T @ od  # (3 stains, pixels)
        scale = torch.as_tensor(self.scale, dtype=torch.float64, device=work.device)[:, None]
        shift = torch.as_tensor(self.shift, dtype=torch.float64, device=work.device)[:, None]
        jittered = to_rgb.T @ (stains * scale + shift)
        out = (255.0 * torch.exp(-jittered)).clamp(0.0, 255.0).reshape(image.shape).to(image.dtype)
        return out if isinstance(img, torch.Tensor) else out.numpy()


class RandHEDJitterd(RandomizableTransform, MapTransform):
    """Dictionary version of :class:`RandHEDJitter` (the same draw for every key)."""

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 1.0,
        scale_range: float = 0.05,
        shift_range: float = 0.05,
        allow_missing_keys: bool = False,
    ):
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.jitter = RandHEDJitter(1.0, scale_range, shift_range)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> RandHEDJitterd:
        super().set_random_state(seed, state)
        self.jitter.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        self.jitter.randomize()
        for key in self.key_iterator(d):
            d[key] = self.jitter(d[key], randomize=False)
        return d
