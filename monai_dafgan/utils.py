"""Small helpers shared by bundle configs and the command line."""

from __future__ import annotations

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
