"""pix2pixHD building blocks: the norm factory, conv blocks, the residual block and the weight initialisation.

All blocks take and return ``(B, C, H, W)`` float tensors. Padding follows pix2pixHD: reflection padding around
the 7x7 and residual 3x3 convolutions, zero padding in the strided (transposed) convolutions.
"""

from __future__ import annotations

import torch
from torch import nn

NORMS = ("instance", "batch", "none")


def get_norm_layer(norm: str, channels: int) -> nn.Module:
    """Norm layer of pix2pixHD's ``--norm`` option for ``channels`` feature maps.

    Args:
        norm: ``"instance"`` (``InstanceNorm2d(affine=False)``, pix2pixHD's default), ``"batch"``
            (``BatchNorm2d(affine=True)``) or ``"none"`` (identity).
        channels: number of channels to normalise.
    """
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=False)
    if norm == "batch":
        return nn.BatchNorm2d(channels, affine=True)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"norm must be one of {NORMS}, got {norm!r}.")


def conv7_block(in_channels: int, out_channels: int, norm: str) -> nn.Sequential:
    """ReflectionPad(3) - Conv7x7 - norm - ReLU at constant resolution: the first block of a pix2pixHD generator."""
    return nn.Sequential(
        nn.ReflectionPad2d(3),
        nn.Conv2d(in_channels, out_channels, kernel_size=7),
        get_norm_layer(norm, out_channels),
        nn.ReLU(inplace=True),
    )


def down_block(in_channels: int, out_channels: int, norm: str) -> nn.Sequential:
    """Conv3x3 stride 2 padding 1 - norm - ReLU: halves H and W."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=2, padding=1),
        get_norm_layer(norm, out_channels),
        nn.ReLU(inplace=True),
    )


def up_block(in_channels: int, out_channels: int, norm: str) -> nn.Sequential:
    """ConvTranspose3x3 stride 2 padding 1 output_padding 1 - norm - ReLU: doubles H and W exactly."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_channels, out_channels, kernel_size=3, stride=2, padding=1, output_padding=1),
        get_norm_layer(norm, out_channels),
        nn.ReLU(inplace=True),
    )


def output_head(in_channels: int, out_channels: int, activation: str | None) -> nn.Sequential:
    """ReflectionPad(3) - Conv7x7 - activation: the last layers of a pix2pixHD generator.

    Args:
        activation: ``"tanh"`` (images in [-1, 1]) or ``None`` (raw logits).
    """
    layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, out_channels, kernel_size=7)]
    if activation == "tanh":
        layers.append(nn.Tanh())
    elif activation is not None:
        raise ValueError(f"output_activation must be 'tanh' or None, got {activation!r}.")
    return nn.Sequential(*layers)


class ResnetBlock(nn.Module):
    """pix2pixHD residual block: ``x + [pad1-conv3-norm-ReLU-pad1-conv3-norm](x)``, no activation after the sum.

    Args:
        channels: C of the ``(B, C, H, W)`` input and output; H, W >= 2 (reflection padding).
        norm: see :func:`get_norm_layer`.
    """

    def __init__(self, channels: int, norm: str = "instance") -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, kernel_size=3),
            get_norm_layer(norm, channels),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, kernel_size=3),
            get_norm_layer(norm, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


def init_weights(module: nn.Module) -> None:
    """pix2pixHD ``weights_init``, for ``net.apply``: conv and transposed-conv weights ~ N(0, 0.02) (biases keep
    PyTorch's default), BatchNorm weight ~ N(1, 0.02) and bias 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
