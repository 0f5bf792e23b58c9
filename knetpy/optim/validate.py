"""Argument checks shared by optimizers and schedules, with messages that name the culprit."""

from __future__ import annotations

import difflib
import math
import numbers


def check_lr(owner: str, lr, allow_zero: bool = False) -> float:
    """``lr`` as a Python float; a ValueError naming the value unless it is finite and > 0."""
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real):
        raise ValueError(f"{owner}: lr must be a positive finite number, got {lr!r} ({type(lr).__name__})")
    value = float(lr)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{owner}: lr must be finite and {bound}, got {lr!r}")
    return value


def check_number(owner: str, name: str, value, low=None, high=None, low_open=False, high_open=False) -> float:
    """``value`` as a Python float inside [low, high] (ends open where asked), else a ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ValueError(f"{owner}: {name} must be a finite number, got {value!r}")
    v = float(value)
    too_low = low is not None and (v <= low if low_open else v < low)
    too_high = high is not None and (v >= high if high_open else v > high)
    if too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ValueError(f"{owner}: {name} must be in {left}{lo}, {hi}{right}, got {value!r}")
    return v


def check_optional_positive(owner: str, name: str, value):
    """None, or a finite number > 0 (clipping thresholds)."""
    if value is None:
        return None
    return check_number(owner, name, value, low=0.0, low_open=True)


def check_int(owner: str, name: str, value, low: int = 1) -> int:
    """An integer >= ``low``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{owner}: {name} must be an integer >= {low}, got {value!r}")
    return int(value)


def check_choice(owner: str, name: str, value, choices) -> str:
    """``value`` if it is one of ``choices``, else a ValueError suggesting the closest one."""
    if value in choices:
        return value
    hint = ""
    if isinstance(value, str):
        close = difflib.get_close_matches(value, [c for c in choices if isinstance(c, str)], n=1)
        if close:
            hint = f"; did you mean {close[0]!r}?"
    options = ", ".join(repr(c) for c in choices)
    raise ValueError(f"{owner}: unknown {name} {value!r} (choose from {options}){hint}")
