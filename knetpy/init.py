"""Parameter initializers: ``init(shape, dtype=None) -> ndarray``.

Each takes the shape and an optional dtype (default ``kp.get_dtype()``); distribution parameters
are keyword arguments, bound by name with ``get("uniform", low=-0.1, high=0.1)``. Random draws come
from ``knetpy.backend.rng()``, so ``kp.set_seed`` makes them reproducible. They are NumPy arrays: a
layer moves its parameters to a device once (on its first call with device data, or ``layer.to``),
so one seed gives the same initial weights on every device.

Fans follow the layouts knetpy uses: a dense weight is (n_in, n_out); a convolution kernel is
(C_out, C_in / groups, *kernel), whose fans are C_in/groups * prod(kernel) and C_out * prod(kernel).
Defaults match PyTorch's ``torch.nn.init`` (``normal``: std 1, ``uniform``: [0, 1), the He and
Glorot normals are untruncated).
"""

from __future__ import annotations

import math
import operator
import threading
from contextlib import contextmanager

import numpy as np

from . import backend
from ._names import Registry


def _dtype(dtype):
    dt = backend.get_dtype() if dtype is None else np.dtype(dtype)
    if dt.kind != "f":
        raise TypeError(f"initializers create floating arrays, got dtype {dt}")
    return dt


def _shape(shape):
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    try:
        if isinstance(shape, str):
            raise TypeError
        shape = tuple(operator.index(s) for s in shape)
    except TypeError:
        raise TypeError(f"shape must be an int or a tuple of ints, got {shape!r}") from None
    if any(s < 0 for s in shape):
        raise ValueError(f"shape {shape} has a negative dimension")
    return shape


# -- allocation budget ---------------------------------------------------------------------------------
_budget = threading.local()


class AllocationRefused(ValueError):
    """An initializer asked for more values than the active :func:`allocation_budget` leaves."""


@contextmanager
def allocation_budget(elements):
    """Inside the block (this thread only), initializers may create at most ``elements`` values in all.

    The checkpoint loader rebuilds layers from configs read from a file: their parameters must fit
    the arrays the file holds, so a config asking for a huge layer fails here, before allocating.
    """
    previous = getattr(_budget, "left", None)
    _budget.left = int(elements)
    try:
        yield
    finally:
        _budget.left = previous


def reserve(shape):
    """Count a new array of ``shape`` against the active :func:`allocation_budget` (no-op outside one)."""
    left = getattr(_budget, "left", None)
    if left is None:
        return
    n = math.prod(shape)
    if n > left:
        raise AllocationRefused(
            f"a parameter of shape {tuple(shape)} ({n} values) is more than the {left} values left to build"
        )
    _budget.left = left - n


def _new(shape):
    """The checked shape of an array about to be created, counted against the allocation budget."""
    shape = _shape(shape)
    reserve(shape)
    return shape


def _draw_dtype(dt):
    # The generator draws float32 or float64 natively; other floats are drawn in float32 and cast.
    return dt if dt in (np.float32, np.float64) else np.dtype(np.float32)


def compute_fans(shape):
    """``(fan_in, fan_out)`` for a weight of ``shape``.

    0-D: (1, 1); 1-D (a bias): (n, n); 2-D dense (n_in, n_out): (n_in, n_out);
    N-D convolution (C_out, C_in/groups, *kernel): (C_in/groups * k, C_out * k), k = prod(kernel).
    """
    shape = _shape(shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


# -- constants -----------------------------------------------------------------------------------------
def zeros(shape, dtype=None):
    """All zeros."""
    return np.zeros(_new(shape), dtype=_dtype(dtype))


def ones(shape, dtype=None):
    """All ones."""
    return np.ones(_new(shape), dtype=_dtype(dtype))


def constant(shape, dtype=None, value=0.0):
    """Every element equal to ``value``."""
    return np.full(_new(shape), value, dtype=_dtype(dtype))


# -- plain distributions ----------------------------------------------------------------------------------
def uniform(shape, dtype=None, low=0.0, high=1.0):
    """Uniform on [low, high)."""
    if not high >= low:
        raise ValueError(f"uniform: need low <= high, got low={low}, high={high}")
    dt = _dtype(dtype)
    u = backend.rng().random(_new(shape), dtype=_draw_dtype(dt))
    u *= high - low
    u += low
    return u.astype(dt, copy=False)


def normal(shape, dtype=None, mean=0.0, std=1.0):
    """Normal with the given mean and standard deviation."""
    if std < 0:
        raise ValueError(f"normal: std must be >= 0, got {std}")
    dt = _dtype(dtype)
    z = backend.rng().standard_normal(_new(shape), dtype=_draw_dtype(dt))
    z *= std
    z += mean
    return z.astype(dt, copy=False)


def truncated_normal(shape, dtype=None, mean=0.0, std=1.0, bound=2.0):
    """Normal(mean, std) restricted to mean +- bound*std (out-of-range draws are redrawn)."""
    if std < 0 or bound <= 0:
        raise ValueError(f"truncated_normal: need std >= 0 and bound > 0, got std={std}, bound={bound}")
    dt = _dtype(dtype)
    gen = backend.rng()
    z = gen.standard_normal(_new(shape), dtype=_draw_dtype(dt))
    outside = np.abs(z) > bound
    while outside.any():  # each pass redraws ~5% (bound=2) of what is left, so this ends fast
        z[outside] = gen.standard_normal(int(outside.sum()), dtype=z.dtype)
        outside = np.abs(z) > bound
    z *= std
    z += mean
    return z.astype(dt, copy=False)


def orthogonal(shape, dtype=None, gain=1.0):
    """A (semi-)orthogonal matrix times ``gain`` (Saxe et al.), from the QR of a Gaussian matrix.

    The weight is viewed as (shape[0], prod(shape[1:])); its rows are orthonormal when there are
    no more rows than columns, its columns otherwise.
    """
    shape = _new(shape)
    if len(shape) < 2:
        raise ValueError(f"orthogonal: needs a shape with at least 2 dimensions, got {shape}")
    rows, cols = shape[0], math.prod(shape[1:])
    a = backend.rng().standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    # Fix the signs so the result is uniformly distributed over orthogonal matrices.
    q *= np.where(np.diag(r) < 0, -1.0, 1.0)
    if rows < cols:
        q = q.T
    return (q * gain).reshape(shape).astype(_dtype(dtype))


# -- variance scaling -------------------------------------------------------------------------------------
def _uniform_limit(shape, dtype, variance):
    limit = math.sqrt(3.0 * variance)
    return uniform(shape, dtype, low=-limit, high=limit)


def glorot_uniform(shape, dtype=None, gain=1.0):
    """Xavier/Glorot uniform: U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = compute_fans(shape)
    return _uniform_limit(shape, dtype, gain**2 * 2.0 / max(fan_in + fan_out, 1))


def glorot_normal(shape, dtype=None, gain=1.0):
    """Xavier/Glorot normal: N(0, std), std = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = compute_fans(shape)
    return normal(shape, dtype, std=gain * math.sqrt(2.0 / max(fan_in + fan_out, 1)))


def he_uniform(shape, dtype=None):
    """He/Kaiming uniform for ReLU layers: U(-a, a), a = sqrt(6 / fan_in)."""
    fan_in, _ = compute_fans(shape)
    return _uniform_limit(shape, dtype, 2.0 / max(fan_in, 1))


def he_normal(shape, dtype=None):
    """He/Kaiming normal for ReLU layers: N(0, std), std = sqrt(2 / fan_in)."""
    fan_in, _ = compute_fans(shape)
    return normal(shape, dtype, std=math.sqrt(2.0 / max(fan_in, 1)))


def lecun_uniform(shape, dtype=None):
    """LeCun uniform: U(-a, a), a = sqrt(3 / fan_in)."""
    fan_in, _ = compute_fans(shape)
    return _uniform_limit(shape, dtype, 1.0 / max(fan_in, 1))


def lecun_normal(shape, dtype=None):
    """LeCun normal (for SELU networks): N(0, std), std = sqrt(1 / fan_in)."""
    fan_in, _ = compute_fans(shape)
    return normal(shape, dtype, std=math.sqrt(1.0 / max(fan_in, 1)))


xavier_uniform = glorot_uniform
xavier_normal = glorot_normal
kaiming_uniform = he_uniform
kaiming_normal = he_normal

_REGISTRY = Registry(
    "initializer",
    "kp.init",
    {
        "zeros": zeros,
        "ones": ones,
        "constant": constant,
        "uniform": uniform,
        "normal": normal,
        "truncated_normal": truncated_normal,
        "orthogonal": orthogonal,
        "glorot_uniform": glorot_uniform,
        "glorot_normal": glorot_normal,
        "xavier_uniform": glorot_uniform,
        "xavier_normal": glorot_normal,
        "he_uniform": he_uniform,
        "he_normal": he_normal,
        "kaiming_uniform": he_uniform,
        "kaiming_normal": he_normal,
        "lecun_uniform": lecun_uniform,
        "lecun_normal": lecun_normal,
    },
)


def names():
    """All names :func:`get` accepts."""
    return _REGISTRY.names()


def get(identifier, **params):
    """An initializer from a name, a ``{"name": ..., **params}`` dict or a callable.

    ``get("uniform", low=-0.1, high=0.1)`` binds the parameters; an unknown name raises ValueError
    suggesting the closest known one.
    """
    return _REGISTRY.get(identifier, params)


def serialize(fn):
    """A JSON-serialisable spec (a name or a dict) that :func:`get` turns back into ``fn``."""
    return _REGISTRY.serialize(fn)
