"""DAFF-GAN generators: pix2pixHD's global generator and local enhancer, plus criss-cross attention and a long skip.

``DAFFGenerator`` is the single generator class. With ``attention=False, long_skip=False`` it is exactly pix2pixHD
(``local_enhancer=False``: ``--netG global``; ``local_enhancer=True``: ``--netG local`` with one enhancer), which is
the baseline of the DAFF-GAN paper.

Width scheme: ``ngf`` is always the width of the global generator (its first layer's channels), with or without
the local enhancer; the local enhancer's width ``ngf_local`` must be ``ngf // 2`` (its features, 2 * ngf_local
channels at half resolution, are summed with the global generator's ngf output channels). pix2pixHD's
``--netG local --ngf 32`` is therefore ``DAFFGenerator(ngf=64, local_enhancer=True)``, and a global-only generator of
the same ``ngf`` can initialise the global part (:meth:`DAFFGenerator.load_global_from`, pix2pixHD's
``--load_pretrain``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from .attention import CrissCrossAttention
from .blocks import ResnetBlock, conv7_block, down_block, init_weights, output_head, up_block

__all__ = ["GENERATOR_PRESETS", "DAFFGenerator", "GlobalGenerator", "LocalEnhancer"]

#: Constructor arguments of :class:`DAFFGenerator` by preset name (attention, long skip, norm and activation keep
#: their defaults). "paper": pix2pixHD's local-enhancer sizes. "small": trains in minutes on 2 CPU cores at
#: 128-256 px (see benchmarks/bench_generator_step.py).
GENERATOR_PRESETS: dict[str, dict[str, Any]] = {
    "paper": dict(ngf=64, n_downsampling=4, n_blocks=9, local_enhancer=True, ngf_local=32, n_blocks_local=3),
    "small": dict(ngf=32, n_downsampling=3, n_blocks=4, local_enhancer=True, ngf_local=16, n_blocks_local=2),
}


def _attention_or_identity(enabled: bool, channels: int, recurrence: int) -> nn.Module:
    return CrissCrossAttention(channels, recurrence=recurrence) if enabled else nn.Identity()


class GlobalGenerator(nn.Module):
    """pix2pixHD global generator, optionally with criss-cross attention and a long skip (DAFF-GAN).

    Layout (``stem``, ``down``, ``attention``, ``blocks``, ``up``, ``head``)::

        stem:  ReflPad3 - Conv7 (in -> ngf) - norm - ReLU                          full resolution, ngf ch
        down:  n_downsampling x [Conv3 s2 (x2 channels) - norm - ReLU]
        attention: CrissCrossAttention(ngf * 2**n_downsampling), or Identity       bottleneck
        blocks: n_blocks x ResnetBlock(ngf * 2**n_downsampling)
        up:    n_downsampling x [ConvTranspose3 s2 p1 op1 (/2 channels) - norm - ReLU]
        long skip: up_output + stem_output (both ngf channels, full resolution; no parameters)
        head:  ReflPad3 - Conv7 (ngf -> out) - Tanh/None                           or Identity if out_channels is None

    Args:
        in_channels: input channels.
        out_channels: output channels; ``None`` drops the head (pix2pixHD's global part of a local enhancer, "last 3
            layers dropped") and the module returns its ``ngf`` feature channels.
        ngf: width of the first layer; the bottleneck has ``ngf * 2**n_downsampling`` channels.
        n_downsampling: number of stride-2 stages.
        n_blocks: residual blocks at the bottleneck.
        norm: ``"instance"``, ``"batch"`` or ``"none"``.
        attention: criss-cross attention right before the first residual block.
        long_skip: add the stem output to the last upsampled features.
        recurrence: passes of the criss-cross attention.
        output_activation: ``"tanh"`` or ``None``.

    Shapes: ``(B, in_channels, H, W) -> (B, out_channels or ngf, H, W)``; H and W must be multiples of
    ``2**n_downsampling`` with a bottleneck of at least 2x2 (checked by :class:`DAFFGenerator`, not here).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None,
        ngf: int = 64,
        n_downsampling: int = 4,
        n_blocks: int = 9,
        norm: str = "instance",
        attention: bool = False,
        long_skip: bool = False,
        recurrence: int = 2,
        output_activation: str | None = "tanh",
    ) -> None:
        super().__init__()
        bottleneck = ngf * 2**n_downsampling
        self.stem = conv7_block(in_channels, ngf, norm)
        self.down = nn.Sequential(*[down_block(ngf * 2**i, ngf * 2 ** (i + 1), norm) for i in range(n_downsampling)])
        self.attention = _attention_or_identity(attention, bottleneck, recurrence)
        self.blocks = nn.Sequential(*[ResnetBlock(bottleneck, norm) for _ in range(n_blocks)])
        self.up = nn.Sequential(
            *[up_block(ngf * 2 ** (i + 1), ngf * 2**i, norm) for i in reversed(range(n_downsampling))]
        )
        self.head = nn.Identity() if out_channels is None else output_head(ngf, out_channels, output_activation)
        self.long_skip = long_skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.long_skip:
            # nothing may hold the stem's output here: freed right after the first downsampling, its full-resolution
            # memory is reused by the up path instead of mapped afresh (glibc), which no-grad synthesis pays for
            return self.head(self.up(self.blocks(self.attention(self.down(self.stem(x))))))
        skip = self.stem(x)
        return self.head(self.up(self.blocks(self.attention(self.down(skip)))) + skip)


class LocalEnhancer(nn.Module):
    """The local branch of pix2pixHD's LocalEnhancer (one enhancer), optionally with attention and a long skip.

    It runs on the full-resolution input and merges, by element-wise sum at half resolution, the features of a
    global generator that ran on the 2x average-pooled input (:class:`DAFFGenerator` wires the two)::

        stem:  ReflPad3 - Conv7 (in -> g) - norm - ReLU                full resolution, g = ngf_local channels
        down:  Conv3 s2 (g -> 2g) - norm - ReLU                        half resolution
        sum:   down_output + global_features                           (2g channels)
        attention: CrissCrossAttention(2g), or Identity
        blocks: n_blocks x ResnetBlock(2g)
        up:    ConvTranspose3 s2 p1 op1 (2g -> g) - norm - ReLU         full resolution
        long skip: up_output + stem_output (g channels; no parameters)
        head:  ReflPad3 - Conv7 (g -> out) - Tanh/None

    Shapes: ``x`` ``(B, in_channels, H, W)``, ``global_features`` ``(B, 2 * ngf_local, H / 2, W / 2)`` ->
    ``(B, out_channels, H, W)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        ngf_local: int = 32,
        n_blocks: int = 3,
        norm: str = "instance",
        attention: bool = False,
        long_skip: bool = False,
        recurrence: int = 2,
        output_activation: str | None = "tanh",
    ) -> None:
        super().__init__()
        self.stem = conv7_block(in_channels, ngf_local, norm)
        self.down = down_block(ngf_local, 2 * ngf_local, norm)
        self.attention = _attention_or_identity(attention, 2 * ngf_local, recurrence)
        self.blocks = nn.Sequential(*[ResnetBlock(2 * ngf_local, norm) for _ in range(n_blocks)])
        self.up = up_block(2 * ngf_local, ngf_local, norm)
        self.head = output_head(ngf_local, out_channels, output_activation)
        self.long_skip = long_skip

    def forward(self, x: torch.Tensor, global_features: torch.Tensor) -> torch.Tensor:
        skip = self.stem(x)
        y = self.up(self.blocks(self.attention(self.down(skip) + global_features)))
        if self.long_skip:
            y = y + skip
        return self.head(y)


class DAFFGenerator(nn.Module):
    """DAFF-GAN generator: pix2pixHD (global generator [+ local enhancer]) + criss-cross attention + long skip.

    Attributes (for pix2pixHD's two-phase training and for checkpoints):

    - ``global_net`` (:class:`GlobalGenerator`, parameter names ``global_net.*``): with ``local_enhancer=True`` it
      runs on the input average-pooled once (``AvgPool2d(3, 2, 1, count_include_pad=False)``) and has no head.
    - ``local_net`` (:class:`LocalEnhancer`, names ``local_net.*``), ``None`` when ``local_enhancer=False``.
    - :meth:`global_parameters` / :meth:`local_parameters` partition :meth:`parameters`. pix2pixHD's schedule:
      train a global-only generator; build the local one and call :meth:`load_global_from` with the global one's
      state dict; optimise ``local_parameters()`` only for ``niter_fix_global`` epochs, then all parameters
      (pix2pixHD re-creates Adam at that point).
    - ``config``: the constructor arguments; ``DAFFGenerator(**config)`` rebuilds the architecture (save it with
      the weights, so that inference cannot use other sizes than training).
    - ``size_divisor``: ``2**(n_downsampling + local_enhancer)``, see Sizes.

    Attention (``attention=True``): a :class:`CrissCrossAttention` (``recurrence`` passes, shared weights, gamma = 0
    at init) right before the first residual block of the global generator (``ngf * 2**n_downsampling`` channels)
    and, with the local enhancer, right after the global + local sum, before the local residual blocks
    (``2 * ngf_local`` channels). Long skip (``long_skip=True``): in each of the two generators, the output of its
    first 7x7 block is added to its last upsampled features, right before the final 7x7 conv (for the global part of
    a local enhancer, before the features go to the sum). The channel counts match, so the skip has no parameters.
    Both off: pix2pixHD.

    Sizes: the network needs H and W to be multiples of ``size_divisor = 2**(n_downsampling + local_enhancer)``
    with a bottleneck of at least 2x2. Other sizes are reflect-padded (split evenly between the two sides) to the
    next multiple and the output is cropped back, so the output always has the input's H and W. Inputs whose
    padded size gives a bottleneck under 2x2 (i.e. H or W <= size_divisor), with the wrong channel count or not
    4-D raise ``ValueError`` before any computation.

    Args:
        in_channels: channels of the condition (e.g. one-hot label map [+ instance edges]).
        out_channels: output channels.
        ngf: width of the global generator (64 in pix2pixHD, both for ``--netG global`` and inside the enhancer).
        n_downsampling: stride-2 stages of the global generator (pix2pixHD's ``--n_downsample_global``).
        n_blocks: residual blocks of the global generator.
        local_enhancer: add pix2pixHD's local enhancer (output at 2x the global generator's resolution).
        ngf_local: width of the local enhancer; must be ``ngf // 2`` (``None``: ``ngf // 2``).
        n_blocks_local: residual blocks of the local enhancer.
        attention: criss-cross attention (see above).
        long_skip: long skips (see above).
        recurrence: passes of each criss-cross attention module.
        norm: ``"instance"`` (``InstanceNorm2d(affine=False)``), ``"batch"`` or ``"none"``.
        output_activation: ``"tanh"`` (images in [-1, 1], G2) or ``None`` (logits, G1).

    Shapes: ``(B, in_channels, H, W) -> (B, out_channels, H, W)``, values in [-1, 1] with ``"tanh"``.
    Conv weights are initialised N(0, 0.02) (pix2pixHD); seed with ``torch.manual_seed`` for reproducible weights.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        ngf: int = 64,
        n_downsampling: int = 4,
        n_blocks: int = 9,
        local_enhancer: bool = True,
        ngf_local: int | None = None,
        n_blocks_local: int = 3,
        attention: bool = True,
        long_skip: bool = True,
        recurrence: int = 2,
        norm: str = "instance",
        output_activation: str | None = "tanh",
    ) -> None:
        super().__init__()
        if local_enhancer:
            if ngf_local is None:
                ngf_local = ngf // 2
            if ngf != 2 * ngf_local:
                raise ValueError(
                    "the local enhancer sums its 2 * ngf_local feature channels with the ngf output channels of the "
                    f"global generator, so ngf must be 2 * ngf_local; got ngf={ngf}, ngf_local={ngf_local}."
                )
        if n_downsampling < 0:
            raise ValueError(f"n_downsampling must be >= 0, got {n_downsampling}.")
        self.config = dict(
            in_channels=in_channels, out_channels=out_channels, ngf=ngf, n_downsampling=n_downsampling,
            n_blocks=n_blocks, local_enhancer=local_enhancer, ngf_local=ngf_local if local_enhancer else None,
            n_blocks_local=n_blocks_local, attention=attention, long_skip=long_skip, recurrence=recurrence,
            norm=norm, output_activation=output_activation,
        )  # fmt: skip
        self.in_channels = in_channels
        self.size_divisor = 2 ** (n_downsampling + int(local_enhancer))
        common = dict(norm=norm, attention=attention, long_skip=long_skip, recurrence=recurrence)
        self.global_net = GlobalGenerator(
            in_channels,
            None if local_enhancer else out_channels,
            ngf=ngf,
            n_downsampling=n_downsampling,
            n_blocks=n_blocks,
            output_activation=output_activation,
            **common,
        )
        self.local_net = None
        if local_enhancer:
            assert ngf_local is not None
            self.local_net = LocalEnhancer(
                in_channels,
                out_channels,
                ngf_local=ngf_local,
                n_blocks=n_blocks_local,
                output_activation=output_activation,
                **common,
            )
        self.apply(init_weights)

    @classmethod
    def from_preset(
        cls, name: str, in_channels: int, out_channels: int, baseline: bool = False, **overrides: Any
    ) -> DAFFGenerator:
        """Generator of preset ``name`` (a key of :data:`GENERATOR_PRESETS`); ``baseline=True`` switches attention
        and long skip off (pix2pixHD); ``overrides`` replace any constructor argument."""
        if name not in GENERATOR_PRESETS:
            raise ValueError(f"unknown generator preset {name!r}; available: {sorted(GENERATOR_PRESETS)}.")
        kwargs: dict[str, Any] = dict(GENERATOR_PRESETS[name])
        if baseline:
            kwargs.update(attention=False, long_skip=False)
        kwargs.update(overrides)
        return cls(in_channels, out_channels, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"DAFFGenerator expects a (B, {self.in_channels}, H, W) input, got shape {list(x.shape)}."
            )
        height, width = x.shape[2], x.shape[3]
        divisor = self.size_divisor
        pad_h, pad_w = (divisor - height % divisor) % divisor, (divisor - width % divisor) % divisor
        if (height + pad_h) // divisor < 2 or (width + pad_w) // divisor < 2:
            raise ValueError(
                f"DAFFGenerator input of {height}x{width} is too small: H and W are padded to multiples of "
                f"size_divisor={divisor} (2**(n_downsampling + local_enhancer)) and must give a bottleneck of at least "
                f"2x2, so both must be > {divisor}."
            )
        top, left = pad_h // 2, pad_w // 2
        if pad_h > 0 or pad_w > 0:
            x = F.pad(x, [left, pad_w - left, top, pad_h - top], mode="reflect")
        out = self._forward_padded(x)
        if pad_h > 0 or pad_w > 0:
            out = out[:, :, top : top + height, left : left + width]
        return out

    def _forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        if self.local_net is None:
            return self.global_net(x)
        # pix2pixHD's input pyramid: AvgPool2d(3, 2, 1, count_include_pad=False)
        coarse = F.avg_pool2d(x, kernel_size=3, stride=2, padding=1, count_include_pad=False)
        return self.local_net(x, self.global_net(coarse))

    def global_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of ``global_net`` (fixed during pix2pixHD's first ``niter_fix_global`` local epochs)."""
        return self.global_net.parameters()

    def local_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of ``local_net`` (empty without a local enhancer)."""
        return iter(()) if self.local_net is None else self.local_net.parameters()

    def load_global_from(self, state_dict: Mapping[str, torch.Tensor], strict: bool = True):
        """Initialise ``global_net`` from a trained generator of the same ``ngf`` (pix2pixHD's ``--load_pretrain``).

        ``state_dict`` is the state dict of a :class:`DAFFGenerator` (global-only or with local enhancer; only its
        ``global_net.*`` entries are read) or of a bare :class:`GlobalGenerator`, optionally with the ``module.``
        prefix of (Distributed)DataParallel. The source's output head is ignored when this generator's global part
        has none.

        Returns:
            ``torch.nn.modules.module._IncompatibleKeys`` of the load (empty lists when ``strict``).
        """
        state_dict = dict(state_dict)
        consume_prefix_in_state_dict_if_present(state_dict, "module.")
        prefix = "global_net."
        if any(key.startswith(prefix) for key in state_dict):
            state_dict = {key[len(prefix) :]: value for key, value in state_dict.items() if key.startswith(prefix)}
        if isinstance(self.global_net.head, nn.Identity):
            state_dict = {key: value for key, value in state_dict.items() if not key.startswith("head.")}
        return self.global_net.load_state_dict(state_dict, strict=strict)
