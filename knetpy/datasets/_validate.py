"""Argument checks for the dataset functions: clear errors naming the argument and its valid values."""

from __future__ import annotations

import difflib
import numbers


def check_choice(value, choices, name: str, who: str):
    """``value`` if it is one of ``choices``; otherwise a ValueError that suggests the closest choice."""
    if isinstance(value, str) and value in choices:
        return value
    listed = ", ".join(repr(c) for c in choices)
    hint = ""
    if isinstance(value, str):
        close = difflib.get_close_matches(value.lower(), list(choices), n=1)
        if close:
            hint = f"; did you mean {close[0]!r}?"
    raise ValueError(f"{who}: unknown {name} {value!r}{hint} (choose one of {listed})")


def check_int(value, name: str, who: str, minimum: int = 1) -> int:
    """``value`` as an int no smaller than ``minimum``; a TypeError or ValueError naming it otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{who}: {name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{who}: {name} must be at least {minimum}, got {value}")
    return int(value)
