"""HoVer-Net on an encoder chosen by name: MONAI's own ``HoVerNet``, or HoVer-Net's three branches on a ResNet U-Net.

:func:`build_hovernet` is the one place that builds the network. Every encoder gives what MONAI's ``HoVerNet`` gives,
so ``HoVerNetLoss``, ``PrepareBatchHoVerNet``, the sliding-window inferer and the post-processing take either
unchanged: a dict ``{"nucleus_prediction": (B, 2, h, w), "horizontal_vertical": (B, 2, h, w), "type_prediction":
(B, out_classes, h, w)}`` of logits (HV maps in network units).

Encoders:

- ``hovernet``: MONAI's ``HoVerNet`` (pre-activation ResNet-50 encoder, three dense decoders), as the model zoo trains
  it; 37.6 M parameters, 4-5 s per 256x256 sample in a CPU training step.
- ``resnet18``, ``resnet34``, ``resnet50``: MONAI's ``ResNet`` in torchvision's layout (7x7 stride-2 stem, max-pool,
  1x1-convolution shortcuts without bias; nothing is downloaded) under a U-Net decoder shared by the three branches
  (MONAI's ``FlexibleUNet`` decoder: five upsampling stages, 256-128-64-32-16 channels, the stem's and every stage's
  features as skips) and one small head per branch (3x3 convolution, batch norm, ReLU, 1x1 convolution); 15-30x
  cheaper per sample on CPU than ``hovernet``. ``resnet34`` stands in for the DAFF-GAN paper's second segmenter
  (HoVer-Net with a ResNet34 backbone; the paper does not describe its decoder).

Output size, one mechanism for all encoders: **the output is the centre of the input**, ``patch_size`` in,
``out_size`` out, a margin of ``(patch_size - out_size) / 2`` per side, exactly as ``HoVerNet`` fast mode (256 ->
164) works. Training targets are centre-cropped to ``out_size`` (:func:`hovernet_train_transforms`) and the whole-tile
inferer steps by ``out_size`` (:func:`hovernet_inferer`), so the same ``(patch_size, out_size)`` pair goes to the
network, the transforms and the inferer. ``HoVerNet``'s sizes are fixed by its mode (256 -> 164 fast, 256 -> 256 fast
with ``decoder_padding``, 270 -> 80 original); a ResNet U-Net computes a same-size output and cuts the margin off
(``output_crop``), so any even margin works (0 included): the margin drops the border pixels that saw zero padding
instead of tissue. Input sides need not be multiples of 32: a ResNet U-Net zero-pads its input to the next multiple
and cuts the padding off with the margin.

Every network built here records its architecture in its state dict (key ``_extra_state``: ``{"architecture":
{"encoder": ..., constructor arguments}}``), so every checkpoint written from its ``state_dict()`` (the bundle's
``model.pt``, ``best_model.pt`` and resumable checkpoints) says what it was trained as, and loading it into another
encoder fails with a message naming both (:func:`monai_dafgan.segmentation.load_hovernet_weights`, or
``load_state_dict`` itself).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from monai.networks.blocks import Convolution
from monai.networks.nets import HoVerNet, ResNet
from monai.networks.nets.flexible_unet import UNetDecoder
from monai.networks.nets.resnet import get_inplanes
from monai.utils import HoVerNetBranch
from torch import nn

__all__ = [
    "HOVERNET_ENCODERS",
    "MONAIHoVerNet",
    "ResNetFeatures2d",
    "ResNetHoVerNet",
    "architecture_mismatch",
    "build_hovernet",
    "network_architecture",
]

#: Encoder names :func:`build_hovernet` takes (the bundle's ``--encoder``).
HOVERNET_ENCODERS = ("hovernet", "resnet18", "resnet34", "resnet50")

#: ResNet name -> (block, units per stage), as torchvision's and MONAI's ResNets.
_RESNET_LAYOUTS: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
}

#: (patch_size, out_size) -> HoVerNet arguments giving them.
_HOVERNET_SIZES: dict[tuple[int, int], dict[str, Any]] = {
    (256, 164): {"mode": "fast"},
    (256, 256): {"mode": "fast", "decoder_padding": True},
    (270, 80): {"mode": "original"},
}


class _RecordsArchitecture:
    """Mixin (before ``nn.Module`` in the bases) storing ``self.architecture`` in the state dict as extra state."""

    architecture: dict[str, Any]

    def get_extra_state(self) -> dict[str, Any]:
        return {"architecture": dict(self.architecture)}

    def set_extra_state(self, state: Any) -> None:
        recorded = state.get("architecture") if isinstance(state, Mapping) else None
        message = architecture_mismatch(recorded, self.architecture)
        if message:
            raise ValueError(message)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # the record is optional: state dicts written before networks recorded their architecture (e.g. resumable
        # checkpoints of a plain HoVerNet) still load strictly; ``state_dict`` is load_state_dict's own copy
        state_dict.setdefault(prefix + "_extra_state", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def network_architecture(network: nn.Module) -> dict[str, Any] | None:
    """The architecture a network records (``{"encoder": ..., constructor arguments}``); ``{"encoder": "hovernet"}``
    for a plain MONAI ``HoVerNet``; None for anything else. DataParallel/DDP wrappers are looked through."""
    network = getattr(network, "module", network)
    recorded = getattr(network, "architecture", None)
    if isinstance(recorded, Mapping):
        return dict(recorded)
    return {"encoder": "hovernet"} if isinstance(network, HoVerNet) else None


def architecture_mismatch(
    recorded: Mapping | None, own: Mapping | None, source: str = "the checkpoint"
) -> str | None:
    """The error message when weights trained as ``recorded`` cannot go into a network built as ``own``, else None.

    Only the encoder decides here (other arguments are judged by whether the tensors fit); either side unknown is no
    mismatch.
    """
    if not recorded or not own or "encoder" not in recorded or "encoder" not in own:
        return None
    if recorded["encoder"] == own["encoder"]:
        return None
    return (
        f"{source} was trained with encoder {recorded['encoder']}, this network is {own['encoder']} (--encoder); "
        f"build the network with encoder={recorded['encoder']!r}."
    )


class MONAIHoVerNet(_RecordsArchitecture, HoVerNet):
    """MONAI's ``HoVerNet``, unchanged, whose state dict also records its architecture (``encoder="hovernet"``, mode,
    channels and classes). Arguments are ``HoVerNet``'s; checkpoints of a plain ``HoVerNet`` load into it with
    :func:`monai_dafgan.segmentation.load_hovernet_weights`."""

    def __init__(self, mode: str = "fast", in_channels: int = 3, out_classes: int = 5, **kwargs):
        super().__init__(mode=mode, in_channels=in_channels, out_classes=out_classes, **kwargs)
        self.architecture = {
            "encoder": "hovernet",
            "mode": str(mode).lower(),
            "in_channels": int(in_channels),
            "np_out_channels": int(kwargs.get("np_out_channels", 2)),
            "out_classes": int(out_classes),
            "decoder_padding": bool(kwargs.get("decoder_padding", False)),
        }


class ResNetFeatures2d(ResNet):
    """MONAI's 2D ``ResNet`` in torchvision's layout (7x7 stride-2 stem, max-pool, 1x1-convolution shortcuts without
    bias, no classifier), returning the feature maps a U-Net decoder takes.

    Its state dict keys are torchvision's (``conv1.weight``, ``layer1.0.conv1.weight``,
    ``layer2.0.downsample.0.weight``, ...) without ``fc.*``, so a torchvision ResNet state dict of the same depth
    loads into it unchanged.

    Args:
        block: ``"basic"`` (ResNet-18/34) or ``"bottleneck"`` (ResNet-50 and deeper).
        layers: residual units per stage, e.g. (2, 2, 2, 2) for ResNet-18.
        in_channels: input channels.

    Forward: (B, in_channels, H, W) -> [stem (B, 64, H/2, W/2), stage 1 (H/4), stage 2 (H/8), stage 3 (H/16),
    stage 4 (H/32)]; stage widths 64, 128, 256, 512 (times 4 for bottleneck blocks).
    """

    def __init__(self, block: str, layers: Sequence[int], in_channels: int = 3):
        super().__init__(
            block=block,
            layers=list(layers),
            block_inplanes=get_inplanes(),
            spatial_dims=2,
            n_input_channels=in_channels,
            conv1_t_size=7,
            conv1_t_stride=2,
            shortcut_type="B",
            feed_forward=False,
            bias_downsample=False,
        )
        expansion = 4 if block == "bottleneck" else 1
        self.out_channels = (64,) + tuple(width * expansion for width in get_inplanes())

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # type: ignore[override]
        stem = self.act(self.bn1(self.conv1(x)))
        features = [stem]
        x = stem if self.no_max_pool else self.maxpool(stem)
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
            features.append(x)
        return features


def _branch_head(channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        Convolution(2, channels, channels, kernel_size=3, act=("relu", {"inplace": True}), norm="batch"),
        nn.Conv2d(channels, out_channels, kernel_size=1),
    )


class ResNetHoVerNet(_RecordsArchitecture, nn.Module):
    """HoVer-Net's three branches on a ResNet U-Net: a :class:`ResNetFeatures2d` encoder, MONAI's ``FlexibleUNet``
    decoder shared by the branches, one head per branch, and the output cut to the centre of the input.

    Args:
        encoder: ``resnet18``, ``resnet34`` or ``resnet50``.
        in_channels: input channels (3 for RGB).
        out_classes: type classes including background (5 for CoNSeP's merged types); 0 leaves out the type branch,
            as ``HoVerNet(out_classes=0)``.
        np_out_channels: channels of the nucleus branch (2: background, nucleus).
        decoder_channels: channels of the five decoder stages, coarse to fine.
        output_crop: pixels cut from each side of the output (``(patch_size - out_size) / 2``; 46 gives HoVerNet fast
            mode's 256 -> 164).
        freeze_encoder: fix the encoder's parameters (``requires_grad=False``), as ``HoVerNet(freeze_encoder=True)``
            does its own; batch-norm statistics still update in training mode, as there.

    Forward: (B, in_channels, H, W) with H, W > 2 * output_crop, values as in training (0..1 RGB) ->
    ``{"nucleus_prediction": (B, np_out_channels, h, w), "horizontal_vertical": (B, 2, h, w), "type_prediction":
    (B, out_classes, h, w)}``, h = H - 2 * output_crop, w = W - 2 * output_crop.
    """

    def __init__(
        self,
        encoder: str = "resnet18",
        in_channels: int = 3,
        out_classes: int = 5,
        np_out_channels: int = 2,
        decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
        output_crop: int = 0,
        freeze_encoder: bool = False,
    ):
        super().__init__()
        if encoder not in _RESNET_LAYOUTS:
            raise ValueError(f"unknown ResNet encoder {encoder!r}; choose one of {tuple(_RESNET_LAYOUTS)}.")
        if len(decoder_channels) != 5:
            raise ValueError(f"decoder_channels needs 5 values (one per decoder stage), got {tuple(decoder_channels)}.")
        if out_classes == 1 or out_classes < 0 or output_crop < 0:
            raise ValueError(f"need out_classes 0 or > 1 and output_crop >= 0, got {out_classes=}, {output_crop=}.")
        self.architecture = {
            "encoder": encoder,
            "in_channels": int(in_channels),
            "np_out_channels": int(np_out_channels),
            "out_classes": int(out_classes),
            "decoder_channels": [int(c) for c in decoder_channels],
            "output_crop": int(output_crop),
        }
        self.output_crop = int(output_crop)
        block, layers = _RESNET_LAYOUTS[encoder]
        self.encoder = ResNetFeatures2d(block, layers, in_channels)
        self.decoder = UNetDecoder(
            spatial_dims=2,
            encoder_channels=(in_channels,) + self.encoder.out_channels,
            decoder_channels=tuple(decoder_channels),
            act=("relu", {"inplace": True}),
            norm=("batch", {"eps": 1e-3, "momentum": 0.1}),
            dropout=0.0,
            bias=False,
            upsample="nontrainable",
            pre_conv="default",
            interp_mode="nearest",
            align_corners=None,
            is_pad=True,
        )
        width = int(decoder_channels[-1])
        self.nucleus_prediction = _branch_head(width, np_out_channels)
        self.horizontal_vertical = _branch_head(width, 2)
        self.type_prediction = _branch_head(width, out_classes) if out_classes > 0 else None
        if freeze_encoder:
            self.encoder.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        crop = self.output_crop
        if x.ndim != 4 or min(x.shape[-2:]) <= 2 * crop:
            raise ValueError(
                f"{self.architecture['encoder']} HoVer-Net takes (B, C, H, W) with H, W > 2 * output_crop = "
                f"{2 * crop}, got {tuple(x.shape)}."
            )
        height, width = x.shape[-2:]
        # the encoder halves the size five times: pad to a multiple of 32, cut the padding off with the margin
        pad_h, pad_w = -height % 32, -width % 32
        if pad_h or pad_w:
            x = nn.functional.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        top, left = crop + pad_h // 2, crop + pad_w // 2
        rows, cols = slice(top, top + height - 2 * crop), slice(left, left + width - 2 * crop)
        features = self.decoder(self.encoder(x), skip_connect=4)
        heads = {HoVerNetBranch.NP.value: self.nucleus_prediction, HoVerNetBranch.HV.value: self.horizontal_vertical}
        if self.type_prediction is not None:
            heads[HoVerNetBranch.NC.value] = self.type_prediction
        return {name: head(features)[..., rows, cols] for name, head in heads.items()}


def build_hovernet(
    encoder: str = "hovernet",
    out_classes: int = 5,
    in_channels: int = 3,
    patch_size: int = 256,
    out_size: int = 164,
    freeze_encoder: bool = False,
    **kwargs,
) -> MONAIHoVerNet | ResNetHoVerNet:
    """A HoVer-Net on the named encoder, taking ``patch_size`` x ``patch_size`` patches and returning the centre
    ``out_size`` x ``out_size`` (see the module docstring).

    Args:
        encoder: one of :data:`HOVERNET_ENCODERS`: ``hovernet`` (MONAI's ``HoVerNet``), ``resnet18``, ``resnet34``,
            ``resnet50`` (:class:`ResNetHoVerNet`).
        out_classes: type classes including background (5: background + the 4 merged CoNSeP types).
        in_channels: input channels.
        patch_size: the network's input side in training and sliding-window inference.
        out_size: its output side: ``hovernet`` takes (256, 164) fast, (256, 256) fast with decoder padding,
            (270, 80) original; the ResNet encoders take any ``out_size <= patch_size`` with an even difference.
        freeze_encoder: start with the encoder fixed (both kinds; see :func:`hovernet_encoder_parameters` for the
            parameters concerned).
        kwargs: further constructor arguments (``HoVerNet``'s, e.g. ``dropout_prob``; or :class:`ResNetHoVerNet`'s,
            e.g. ``decoder_channels``).

    Raises:
        ValueError: an unknown encoder, or sizes the encoder cannot give, with what it can.
    """
    if encoder not in HOVERNET_ENCODERS:
        raise ValueError(f"unknown encoder {encoder!r} (--encoder); choose one of {', '.join(HOVERNET_ENCODERS)}.")
    patch_size, out_size = int(patch_size), int(out_size)
    if encoder == "hovernet":
        sizes = _HOVERNET_SIZES.get((patch_size, out_size))
        if sizes is None:
            known = ", ".join(f"{p} -> {o}" for p, o in _HOVERNET_SIZES)
            raise ValueError(
                f"encoder hovernet (MONAI's HoVerNet) takes {known} (patch_size -> out_size), got {patch_size} -> "
                f"{out_size}; the ResNet encoders take any sizes."
            )
        return MONAIHoVerNet(
            in_channels=in_channels, out_classes=out_classes, freeze_encoder=freeze_encoder, **sizes, **kwargs
        )
    if out_size < 1 or out_size > patch_size or (patch_size - out_size) % 2:
        raise ValueError(f"need 1 <= out_size <= patch_size with an even difference, got {patch_size=}, {out_size=}.")
    return ResNetHoVerNet(
        encoder,
        in_channels=in_channels,
        out_classes=out_classes,
        output_crop=(patch_size - out_size) // 2,
        freeze_encoder=freeze_encoder,
        **kwargs,
    )


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
