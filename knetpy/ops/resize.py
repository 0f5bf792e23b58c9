"""Growing feature maps: Knet's ``unpool`` and ``upsample`` (nearest or (bi)linear), 1-D to 3-D.

x is (N, C, *spatial). Integer nearest-neighbour scaling is a broadcast-and-reshape; any other
scaling multiplies each spatial axis by a small interpolation matrix (out x in), so gradients of
every order come from ``matmul`` and no scatter is needed.
"""

from __future__ import annotations

import difflib
import math

import numpy as np

from ..autograd import Tensor
from ..backend import array_namespace
from .linalg import matmul
from .shape import broadcast_to, moveaxis, reshape

_MODES = ("nearest", "bilinear", "linear", "trilinear")


def _value(x):
    return x.value if isinstance(x, Tensor) else x


def _check_input(fn, x):
    shape = _value(x).shape
    if len(shape) not in (3, 4, 5):
        raise ValueError(
            f"{fn}: x must be (N, C, *spatial) with 1 to 3 spatial dimensions, got shape {shape}"
        )
    if _value(x).dtype.kind != "f":
        raise TypeError(f"{fn}: x must be a floating array, got dtype {_value(x).dtype}")
    return shape


def _repeat(x, factors):
    """Each element repeated ``factors[d]`` times along spatial axis d."""
    shape = _value(x).shape
    lead = tuple(shape[:2])
    spread = reshape(x, lead + tuple(v for s in shape[2:] for v in (s, 1)))
    spread = broadcast_to(spread, lead + tuple(v for s, f in zip(shape[2:], factors) for v in (s, f)))
    return reshape(spread, lead + tuple(s * f for s, f in zip(shape[2:], factors)))


def unpool(x, window=2):
    """Repeat every value over a ``window`` (int or per-dimension tuple): Knet's ``unpool``.

    The inverse of average pooling: ``pool(unpool(x, w), w, mode=1) == x``.
    """
    from .conv import per_axis

    shape = _check_input("unpool", x)
    return _repeat(x, per_axis(window, len(shape) - 2, "window", "unpool", 1))


def _interpolation_matrix(n_in, n_out, scale, mode, dtype):
    """(n_out, n_in) weights of the inputs each output reads, as torch.nn.functional.interpolate.

    Coordinates map with 1/scale (``align_corners=False``); linear reads two neighbours, with the
    source clamped at the first and last input.
    """
    dst = np.arange(n_out)
    m = np.zeros((n_out, n_in), dtype=np.float64)
    if mode == "nearest":
        # PyTorch computes this index in single precision; matching it keeps ties identical.
        src = np.floor(dst.astype(np.float32) * np.float32(1.0 / scale)).astype(np.int64)
        m[dst, np.minimum(src, n_in - 1)] = 1.0
    else:
        src = np.maximum((dst + 0.5) / scale - 0.5, 0.0)
        lo = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
        hi = np.minimum(lo + 1, n_in - 1)
        frac = src - lo
        m[dst, lo] = 1.0 - frac
        m[dst, hi] += frac  # each row once per statement, so += accumulates where hi == lo

    return m.astype(dtype)


def check_options(fn, scale, mode, nd):
    """Validate ``mode`` and ``scale`` for ``nd`` spatial dimensions; returns one scale per dimension."""
    if mode not in _MODES:
        close = difflib.get_close_matches(str(mode), _MODES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"{fn}: unknown mode {mode!r}{hint} (choose from {', '.join(_MODES)})")
    scales = tuple(scale) if isinstance(scale, (list, tuple)) else (scale,) * nd
    if len(scales) != nd:
        raise ValueError(f"{fn}: scale has {len(scales)} entries for {nd} spatial dimensions: {scale}")
    for s in scales:
        if isinstance(s, bool) or not isinstance(s, (int, float, np.integer, np.floating)) or not s > 0:
            raise ValueError(f"{fn}: scale must be a positive number per spatial dimension, got {scale!r}")
    return scales


def upsample(x, scale=2, mode="nearest"):
    """Resize ``x`` (N, C, *spatial) by ``scale`` (a number or one per spatial dimension).

    The output size is floor(X * scale). ``mode='nearest'`` copies the nearest input;
    ``'bilinear'`` interpolates linearly along every spatial axis ('linear' and 'trilinear' are the
    same thing by their 1-D and 3-D names), as ``torch.nn.functional.interpolate`` with
    ``align_corners=False``.
    """
    fn = "upsample"
    shape = _check_input(fn, x)
    scales = check_options(fn, scale, mode, len(shape) - 2)
    if mode == "nearest" and all(float(s).is_integer() for s in scales):
        return _repeat(x, tuple(int(s) for s in scales))
    dtype = _value(x).dtype
    out = x
    for d, s in enumerate(scales):
        n_in = shape[2 + d]
        n_out = math.floor(n_in * float(s))
        if n_out < 1:
            raise ValueError(f"{fn}: scale {s} shrinks spatial axis {d} of size {n_in} to nothing")
        if n_out == n_in and float(s) == 1.0:
            continue
        # built on the host (a few integers decide it), then one small copy to x's device
        m = array_namespace(_value(x)).asarray(_interpolation_matrix(n_in, n_out, float(s), mode, dtype))
        out = moveaxis(matmul(moveaxis(out, 2 + d, -1), m.T), -1, 2 + d)
    return out
