"""Gradient clipping by global norm and by value.

Both return new arrays and never write into their inputs: a gradient array may be shared (a
parameter's ``.grad`` can alias another buffer), so changing it in place would be a silent bug.
"""

from __future__ import annotations

import math

import numpy as np

from ..autograd import Tensor
from ..backend import array_namespace
from ..tree import flatten, unflatten
from .validate import check_number

# Added to the norm before dividing, as torch.nn.utils.clip_grad_norm_ does, so that clipping a
# zero gradient gives a factor of max_norm / 1e-6 (clamped to 1) instead of a division by zero.
NORM_EPS = 1e-6


def _raw(g):
    return g.value if isinstance(g, Tensor) else g


def squared_norm(g) -> float:
    """Sum of squares of one array, as a Python float (float64 where float32 would overflow)."""
    xp = array_namespace(g)
    flat = g.reshape(-1)
    with np.errstate(over="ignore"):  # an overflow is caught below and redone in float64
        total = float(xp.dot(flat, flat))
    if not math.isfinite(total) and flat.dtype.itemsize < 8:
        wide = flat.astype("float64")
        total = float(xp.dot(wide, wide))
    return total


def device_squared_norm(g):
    """Sum of squares of one array as a float64 0-d array on its device, not read back.

    Summed in the array's dtype: unlike :func:`squared_norm` it cannot look at the result to redo an
    overflowing float32 sum in float64, so a gradient of norm above ~1e19 clips to zero.
    """
    flat = g.reshape(-1)
    if flat.dtype.itemsize < 4:
        flat = flat.astype("float32")
    return array_namespace(g).dot(flat, flat).astype("float64")


def global_norm(grads) -> float:
    """The L2 norm of all arrays in ``grads`` (an array or a pytree of arrays) taken together."""
    leaves, _ = flatten(grads)
    return math.sqrt(sum(squared_norm(_raw(g)) for g in leaves if g is not None))


def clip_factor(norm: float, max_norm: float) -> float:
    """The factor that brings a gradient of ``norm`` down to at most ``max_norm`` (1.0 if within)."""
    return min(1.0, max_norm / (norm + NORM_EPS))


def clip_by_global_norm(grads, max_norm):
    """Scale every array so that their global L2 norm is at most ``max_norm``.

    Returns ``(clipped, norm)``: new arrays of the same structure and the norm before clipping.
    A zero gradient stays zero (no NaN).
    """
    max_norm = check_number("clip_by_global_norm", "max_norm", max_norm, low=0.0, low_open=True)
    norm = global_norm(grads)
    factor = clip_factor(norm, max_norm)
    leaves, treedef = flatten(grads)
    clipped = [None if g is None else _raw(g) * factor for g in leaves]
    return unflatten(treedef, clipped), norm


def clip_by_value(grads, limit):
    """Clamp every element of every array into ``[-limit, limit]``; new arrays, same structure."""
    limit = check_number("clip_by_value", "limit", limit, low=0.0, low_open=True)
    leaves, treedef = flatten(grads)
    clipped = [None if g is None else array_namespace(_raw(g)).clip(_raw(g), -limit, limit) for g in leaves]
    return unflatten(treedef, clipped)
