"""Small helpers shared by bundle configs and the command line."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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
