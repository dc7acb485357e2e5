"""HoVer-Net weights from local files, with errors that say what does not fit.

Pretrained encoders cannot be downloaded everywhere (this package's tests and many clusters have no network), so
:func:`load_pretrained_encoder` reads a local file instead of MONAI's ``pretrained_url``. It takes

- a torchvision-layout ResNet-50 state dict (``conv1.weight``, ``layer1.0.conv1.weight``, ...; e.g.
  ``resnet50-11ad3fa6.pth``), adapted to HoVer-Net's pre-activation encoder as MONAI's
  ``HoVerNet(adapt_standard_resnet=True)`` adapts it (each bottleneck's ``bn3`` becomes the next unit's pre-activation
  norm; the last unit's ``bn3`` has no counterpart and is dropped);
- a state dict in HoVer-Net's own keys (a HoVer-Net checkpoint, or weights already remapped by MONAI); only the
  encoder (``conv0.*``, ``res_blocks.*``) is taken.

For a ResNet encoder (:class:`monai_dafgan.segmentation.ResNetHoVerNet`) it takes a torchvision-layout ResNet state
dict of the same depth (``conv1.weight``, ``layer1.0.conv1.weight``, ...; ``fc.*`` is ignored), or the ``encoder.*``
tensors of a ResNet HoVer-Net checkpoint, and all of the encoder's tensors must fit.

Checkpoints record the architecture they were trained as (:mod:`monai_dafgan.segmentation.networks`);
:func:`load_hovernet_weights` refuses weights of another encoder with a message naming both, and still loads plain
state dicts written before the record existed.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from monai_dafgan.segmentation.networks import MONAIHoVerNet, ResNetHoVerNet, architecture_mismatch, network_architecture

__all__ = [
    "hovernet_from_checkpoint",
    "ENCODER_PREFIXES",
    "EXTRA_STATE_KEY",
    "checkpoint_architecture",
    "load_hovernet_weights",
    "load_pretrained_encoder",
    "read_state_dict",
]

logger = logging.getLogger(__name__)

#: Key prefixes of HoVer-Net's encoder (what ``freeze_encoder`` and a pretrained encoder concern).
ENCODER_PREFIXES = ("conv0.", "res_blocks.")
_WRAPPER_KEYS = ("state_dict", "model", "network", "desc")
_TYPE_HEAD = "type_prediction"
#: Where a network built by :func:`monai_dafgan.segmentation.build_hovernet` keeps its architecture record.
EXTRA_STATE_KEY = "_extra_state"


def read_state_dict(path: str | os.PathLike) -> dict[str, Any]:
    """The tensors of a weights file: a plain state dict, or one wrapped under ``state_dict``/``model``/``network``.

    A ``module.`` prefix (DataParallel/DDP) is removed. The architecture record of a network built by
    :func:`monai_dafgan.segmentation.build_hovernet` (key ``_extra_state``, not a tensor) is kept when present.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file holds no state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weights file.")
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in _WRAPPER_KEYS:
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
            break
    if isinstance(state, Mapping):
        state = {re.sub(r"^module\.", "", str(k)): v for k, v in state.items()}
    tensors = [v for k, v in state.items() if k != EXTRA_STATE_KEY] if isinstance(state, Mapping) else []
    if not tensors or not all(torch.is_tensor(v) for v in tensors):
        raise ValueError(f"{path} holds no state dict (a mapping of names to tensors).")
    return state


def checkpoint_architecture(state: Mapping) -> dict | None:
    """The architecture a state dict (from :func:`read_state_dict`) was trained as: its record when it has one,
    ``{"encoder": "hovernet"}`` for an unrecorded state dict in MONAI ``HoVerNet``'s keys, else None."""
    extra = state.get(EXTRA_STATE_KEY)
    if isinstance(extra, Mapping) and isinstance(extra.get("architecture"), Mapping):
        return dict(extra["architecture"])
    if any(str(k).startswith("res_blocks.") for k in state):
        return {"encoder": "hovernet"}
    return None


def _examples(items: list, count: int = 3) -> str:
    shown = ", ".join(str(item) for item in items[:count])
    return shown + (f" and {len(items) - count} more" if len(items) > count else "")


def _fit_problems(state: Mapping, own: Mapping, reshaped: list, missing: list, unexpected: list, target: str) -> list[str]:
    """What keeps a state dict from loading into ``target``, one phrase per kind of problem."""
    problems = []
    if reshaped:
        shapes = [f"{k}: file {tuple(state[k].shape)} vs {target} {tuple(own[k].shape)}" for k in reshaped]
        problems.append(f"{len(reshaped)} tensors of another shape ({_examples(shapes)})")
    if missing:
        problems.append(f"{len(missing)} tensors missing ({_examples(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} tensors {target} does not have ({_examples(unexpected)})")
    return problems


def load_hovernet_weights(network: torch.nn.Module, path: str | os.PathLike) -> torch.nn.Module:
    """Load a whole HoVer-Net checkpoint into ``network``, strictly, explaining any mismatch.

    The checkpoint's architecture record (see :func:`checkpoint_architecture`) is compared with the network's first:
    another encoder is refused with both named. Other recorded arguments that differ are named in the error when the
    tensors do not fit, and logged as a warning when they do (e.g. another ``output_crop``, which changes no weight).
    A plain state dict without a record (written before records existed, or from a plain MONAI ``HoVerNet``) loads
    when its tensors fit.

    Args:
        network: the (unwrapped) network the weights are for.
        path: a state dict file (see :func:`read_state_dict`), e.g. ``models/model.pt`` of the HoVer-Net bundle.

    Returns:
        ``network``, loaded (its own architecture record is kept).

    Raises:
        FileNotFoundError: no such file.
        ValueError: another encoder ("checkpoint models/model.pt was trained with encoder resnet34, this network is
            resnet18 (--encoder)"); keys missing or unexpected, or tensors of another shape; a type head of another
            width is named as a class-count mismatch (``out_classes``).
    """
    state = read_state_dict(path)
    recorded, architecture = checkpoint_architecture(state), network_architecture(network)
    message = architecture_mismatch(recorded, architecture, source=f"checkpoint {path}")
    if message:
        raise ValueError(message)
    state = {k: v for k, v in state.items() if k != EXTRA_STATE_KEY}
    own = {k: v for k, v in network.state_dict().items() if torch.is_tensor(v)}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    reshaped = [k for k in own if k in state and state[k].shape != own[k].shape]
    differing = [
        f"{key}={recorded.get(key)!r} in the checkpoint, {architecture.get(key)!r} here"
        for key in sorted(set(recorded or {}) & set(architecture or {}))
        if recorded[key] != architecture[key]
    ]
    if not (missing or unexpected or reshaped):
        if differing:
            logger.warning(f"{path}: the weights fit, but the network is built differently ({'; '.join(differing)}).")
        network.load_state_dict(state)
        return network
    problems = [f"it was trained as another network ({'; '.join(differing)})"] if differing else []
    head = [k for k in reshaped if k.startswith(_TYPE_HEAD) and k.endswith("weight") and own[k].ndim == 4]
    if head:
        key = head[-1]
        problems.append(
            f"its type head has {state[key].shape[0]} classes, this network {own[key].shape[0]} (out_classes; "
            f"background + nucleus types)"
        )
    problems += _fit_problems(state, own, reshaped, missing, unexpected, "this network")
    raise ValueError(f"{path} does not fit this network: " + "; ".join(problems) + ".")


_TORCHVISION_RULES = (
    (re.compile(r"^conv1\.(.+)$"), r"conv0.conv.\1"),
    (re.compile(r"^bn1\.(.+)$"), r"conv0.bn.\1"),
    (re.compile(r"^layer(\d)\.(\d+)\.conv(\d)\.(.+)$"), "res_blocks.d{b}.layers.denselayer_{u}.layers.conv{c}.{rest}"),
    (re.compile(r"^layer(\d)\.(\d+)\.bn([12])\.(.+)$"), "res_blocks.d{b}.layers.denselayer_{u}.layers.conv{c}/bn.{rest}"),
    (re.compile(r"^layer(\d)\.(\d+)\.bn3\.(.+)$"), "res_blocks.d{b}.layers.denselayer_{next}.layers.preact/bn.{rest}"),
    (re.compile(r"^layer(\d)\.0\.downsample\.0\.(.+)$"), "res_blocks.d{b}.shortcut.{rest}"),
    (re.compile(r"^layer(\d)\.0\.downsample\.1\.(.+)$"), "res_blocks.d{b}.bna_block.bn.{rest}"),
)


def _from_torchvision(key: str) -> str | None:
    """HoVer-Net's name for a torchvision ResNet-50 tensor, or None when it has none (``fc.*``)."""
    for pattern, template in _TORCHVISION_RULES:
        match = pattern.match(key)
        if not match:
            continue
        if not template.startswith("res_blocks"):
            return pattern.sub(template, key)
        groups = match.groups()
        block = int(groups[0]) - 1
        if "downsample" in pattern.pattern:
            return template.format(b=block, rest=groups[1])
        unit = int(groups[1])
        if "bn3" in pattern.pattern:
            return template.format(b=block, next=unit + 1, rest=groups[2])
        return template.format(b=block, u=unit, c=groups[2], rest=groups[3])
    return None


def _load_resnet_encoder(network: ResNetHoVerNet, path: str | os.PathLike) -> int:
    state = read_state_dict(path)
    name = network.architecture["encoder"]
    message = architecture_mismatch(checkpoint_architecture(state), network.architecture, source=f"checkpoint {path}")
    if message:
        raise ValueError(message)
    if any(key.startswith("encoder.") for key in state):
        state = {key[len("encoder."):]: value for key, value in state.items() if key.startswith("encoder.")}
    state = {k: v for k, v in state.items() if k != EXTRA_STATE_KEY and not k.startswith("fc.")}
    own = network.encoder.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    reshaped = [k for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or reshaped:
        problems = _fit_problems(state, own, reshaped, missing, unexpected, "the encoder")
        raise ValueError(
            f"{path} does not fit the {name} encoder (expected a torchvision-layout {name} state dict, keys such as "
            f"conv1.weight and layer1.0.conv1.weight): " + "; ".join(problems) + "."
        )
    network.encoder.load_state_dict(state)
    logger.info(f"initialised {len(own)} of the {name} encoder's {len(own)} tensors from {path}")
    return len(own)


def load_pretrained_encoder(network: torch.nn.Module, path: str | os.PathLike) -> int:
    """Initialise HoVer-Net's encoder from a local file (layouts in the module docstring); the rest is untouched.

    Args:
        network: a MONAI ``HoVerNet`` or a :class:`ResNetHoVerNet` (DataParallel/DDP wrappers are looked through).
        path: the weights file.

    Returns:
        the number of encoder tensors loaded (logged, with how many of the encoder's tensors that is).

    Raises:
        FileNotFoundError: no such file.
        ValueError: MONAI ``HoVerNet``: no tensor of the file fits the encoder (another architecture, or an unknown
            layout); ResNet encoders: any encoder tensor missing, unexpected or of another shape (e.g. a ResNet-50
            file for a ResNet-18 encoder), or a checkpoint recorded with another encoder.
    """
    network = getattr(network, "module", network)
    if isinstance(network, ResNetHoVerNet):
        return _load_resnet_encoder(network, path)
    state = read_state_dict(path)
    message = architecture_mismatch(checkpoint_architecture(state), network_architecture(network), f"checkpoint {path}")
    if message:
        raise ValueError(message)
    state = {k: v for k, v in state.items() if k != EXTRA_STATE_KEY}
    if any(key.startswith("layer1.") for key in state):
        state = {new: value for key, value in state.items() if (new := _from_torchvision(key)) is not None}
    own = network.state_dict()
    encoder = [k for k in own if k.startswith(ENCODER_PREFIXES)]
    usable = {k: v for k, v in state.items() if k in own and k.startswith(ENCODER_PREFIXES) and v.shape == own[k].shape}
    if not usable:
        raise ValueError(
            f"{path}: no tensor fits HoVer-Net's encoder (expected a torchvision-layout ResNet-50 or HoVer-Net keys "
            f"such as {encoder[0]!r}; the file has e.g. {_examples(list(state))})."
        )
    network.load_state_dict(usable, strict=False)
    logger.info(f"initialised {len(usable)} of HoVer-Net's {len(encoder)} encoder tensors from {path}")
    return len(usable)


def hovernet_from_checkpoint(path: str | os.PathLike) -> torch.nn.Module:
    """The network a HoVer-Net checkpoint was trained as (from its architecture record; a plain state dict of MONAI
    ``HoVerNet`` keys gives fast mode with 5 classes), with the checkpoint's weights loaded, on the CPU."""
    architecture = dict(checkpoint_architecture(read_state_dict(path)) or {"encoder": "hovernet"})
    encoder = architecture.pop("encoder")
    network = MONAIHoVerNet(**architecture) if encoder == "hovernet" else ResNetHoVerNet(encoder, **architecture)
    return load_hovernet_weights(network, path)
