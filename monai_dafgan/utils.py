"""Small helpers shared by the package, its bundle configs and the command line: flags, config files, atomic writes."""

from __future__ import annotations

import glob
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0", "none", ""}


def to_bool(value) -> bool:
    """Read a flag given as a bool, a number or a string such as ``true``/``False``/``yes``/``0``.

    Bundle overrides on the command line (``--baseline false``) arrive as strings, and a non-empty string is
    truthy in Python: configs read their flags through this function.

    Raises:
        ValueError: a string that is not a recognised flag value.
    """
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise ValueError(f"not a true/false flag: {value!r} (use true or false).")
    return bool(value)


def require(condition: Any, message: str) -> None:
    """Raise ``ValueError(message)`` unless ``condition``: a config's way to refuse settings that cannot work
    together (a bundle expression cannot ``raise``)."""
    if not condition:
        raise ValueError(message)


def set_config_values(path: str | os.PathLike, values: Mapping[str, Any]) -> None:
    """Set top-level keys of a bundle's YAML config in place, keeping its comments and layout (a value is one line).

    Raises:
        KeyError: a key that is not a top-level key of the file.
    """
    path = Path(path)
    text = path.read_text()
    for key, value in values.items():
        pattern = re.compile(rf"^{re.escape(key)}:[^#\n]*?(?P<comment>\s+#.*)?$", re.MULTILINE)
        if not pattern.search(text):
            raise KeyError(f"{path} has no top-level key {key!r}.")
        dumped = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
        dumped = dumped.removesuffix("...").strip()
        text = pattern.sub(lambda m: f"{key}: {dumped}{m.group('comment') or ''}", text, count=1)
    path.write_text(text)


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Call ``write(binary_file)`` on a temporary file in ``path``'s folder, then rename it to ``path``: a reader
    never sees half a file, and a failed write leaves no file. Parent folders are created; the file gets the
    usual permissions (``mkstemp`` would leave it owner-only).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes owner-only files; data files are for everyone
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that :func:`atomic_write` calls for ``path`` left behind when their process was
    killed mid-write (``.<name>.<random>.tmp`` beside it); returns the removed paths. Only for a path that no other
    process is writing at the same time."""
    path = Path(path)
    stale = sorted(path.parent.glob(f".{glob.escape(path.name)}.*.tmp")) if path.parent.is_dir() else []
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale


def size_pair(value: int | Sequence[int], name: str = "spatial_size") -> tuple[int, int]:
    """An int or an (H, W) pair as (H, W) ints.

    Raises:
        ValueError: not an int nor a pair.
    """
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value), int(value)
    try:
        pair = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        pair = ()
    if len(pair) != 2:
        raise ValueError(f"{name} must be an int or (H, W), got {value!r}.")
    return pair


def unwrap(network):
    """The module inside a ``DistributedDataParallel``/``DataParallel`` wrapper (checkpoints hold plain keys)."""
    import torch

    wrappers = (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)
    return network.module if isinstance(network, wrappers) else network


def require_file(path: str | os.PathLike, hint: str = "") -> Path:
    """``path`` if it is a file, else ``FileNotFoundError`` with ``hint`` (used to check bundle weights early)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found. {hint}".strip())
    return path
