"""pix2pixHD multi-scale PatchGAN discriminator, returning every layer's output for feature matching.

MONAI's ``PatchDiscriminator`` / ``MultiScalePatchDiscriminator`` are not reused because they differ from
pix2pixHD in ways that change the model: the final conv's padding is ``(k - 1) // 2 = 1`` instead of 2 (a 256x256
input gives 33x33 or 34x34 logits instead of pix2pixHD's 35x35), channel doubling is not capped at 512, normed convs
have no bias, and the multi-scale version gives discriminator i more layers on the same full-resolution input
instead of the same layers on the input average-pooled i times (and returns ``(logits, features)`` rather than one
list per scale).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import get_norm_layer, init_weights

__all__ = ["DISCRIMINATOR_PRESETS", "MultiScaleDiscriminator", "NLayerDiscriminator"]

#: Constructor arguments of :class:`MultiScaleDiscriminator` by preset name. "paper": pix2pixHD's defaults
#: (``--num_D 2 --n_layers_D 3 --ndf 64``; its 1024p scripts use 3 scales). "small": for 128-256 px on CPU.
DISCRIMINATOR_PRESETS: dict[str, dict[str, Any]] = {
    "paper": dict(ndf=64, n_layers=3, num_d=2),
    "small": dict(ndf=32, n_layers=3, num_d=2),
}

_KERNEL = 4
_PADDING = 2  # pix2pixHD: ceil((kernel - 1) / 2)


class NLayerDiscriminator(nn.Module):
    """pix2pixHD PatchGAN: ``n_layers + 2`` conv layers, kernel 4, padding 2.

    Layers: Conv s2 (in -> ndf) - LeakyReLU(0.2) (no norm); ``n_layers - 1`` x [Conv s2 - norm - LeakyReLU];
    Conv s1 - norm - LeakyReLU; Conv s1 (-> 1 logit channel). Channels double per layer, capped at 512.

    Args:
        in_channels: input channels (condition + image, concatenated by the caller).
        ndf: channels of the first layer.
        n_layers: number of stride-2 convs (>= 1).
        norm: ``"instance"``, ``"batch"`` or ``"none"``.

    Shapes: ``(B, in_channels, H, W)`` -> list of ``n_layers + 2`` tensors, the last being the raw logits
    ``(B, 1, H', W')`` (35x35 for a 256x256 input and ``n_layers=3``).
    """

    def __init__(self, in_channels: int, ndf: int = 64, n_layers: int = 3, norm: str = "instance") -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}.")
        channels = [in_channels] + [min(ndf * 2**i, 512) for i in range(n_layers + 1)]
        strides = [2] * n_layers + [1]
        layers = []
        for i, stride in enumerate(strides):
            layers.append(
                nn.Sequential(
                    nn.Conv2d(channels[i], channels[i + 1], _KERNEL, stride=stride, padding=_PADDING),
                    get_norm_layer("none" if i == 0 else norm, channels[i + 1]),
                    nn.LeakyReLU(0.2),
                )
            )
        layers.append(nn.Sequential(nn.Conv2d(channels[-1], 1, _KERNEL, stride=1, padding=_PADDING)))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features: list[torch.Tensor] = []
        for layer in self.layers:
            x = layer(x)
            features.append(x)
        return features


class MultiScaleDiscriminator(nn.Module):
    """pix2pixHD multi-scale discriminator: ``num_d`` :class:`NLayerDiscriminator` s (separate weights); scale i sees
    the input average-pooled i times (``AvgPool2d(3, 2, 1, count_include_pad=False)``).

    Args:
        in_channels: channels of ``concat(condition, image)`` (the caller concatenates).
        ndf: first-layer width of each scale.
        n_layers: stride-2 convs per scale.
        num_d: number of scales.
        norm: ``"instance"`` (pix2pixHD's default), ``"batch"`` or ``"none"``.

    Shapes: ``(B, in_channels, H, W)`` -> ``outputs[i][j]``: scale i (0 = full resolution), layer j; each
    ``outputs[i]`` has ``n_layers + 2`` entries, ``outputs[i][-1]`` are the raw logits ``(B, 1, H_i', W_i')``
    (no sigmoid: the losses take logits). Conv weights are initialised N(0, 0.02) (pix2pixHD).
    """

    def __init__(
        self, in_channels: int, ndf: int = 64, n_layers: int = 3, num_d: int = 2, norm: str = "instance"
    ) -> None:
        super().__init__()
        if num_d < 1:
            raise ValueError(f"num_d must be >= 1, got {num_d}.")
        self.config = dict(in_channels=in_channels, ndf=ndf, n_layers=n_layers, num_d=num_d, norm=norm)
        self.in_channels = in_channels
        self.scales = nn.ModuleList([NLayerDiscriminator(in_channels, ndf, n_layers, norm) for _ in range(num_d)])
        self.apply(init_weights)

    @classmethod
    def from_preset(cls, name: str, in_channels: int, **overrides: Any) -> MultiScaleDiscriminator:
        """Discriminator of preset ``name`` (a key of :data:`DISCRIMINATOR_PRESETS`); ``overrides`` replace any
        constructor argument."""
        if name not in DISCRIMINATOR_PRESETS:
            raise ValueError(f"unknown discriminator preset {name!r}; available: {sorted(DISCRIMINATOR_PRESETS)}.")
        return cls(in_channels, **{**DISCRIMINATOR_PRESETS[name], **overrides})

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"MultiScaleDiscriminator expects a (B, {self.in_channels}, H, W) input (condition and image "
                f"concatenated along channels), got shape {list(x.shape)}."
            )
        outputs: list[list[torch.Tensor]] = []
        for i, scale in enumerate(self.scales):
            if i > 0:
                x = F.avg_pool2d(x, kernel_size=3, stride=2, padding=1, count_include_pad=False)
            outputs.append(scale(x))
        return outputs
