"""Array backend: which array library holds the data, the default dtype and the random generator.

Every op asks :func:`array_namespace` for the module that owns its operands (NumPy today, CuPy when
the arrays live on a GPU), so the same op code runs on either without change.
"""

from __future__ import annotations

import difflib

import numpy as np

_default_dtype = np.dtype(np.float32)
_rng = np.random.default_rng()


def array_namespace(*arrays):
    """The array module (``numpy`` or ``cupy``) that owns ``arrays``; NumPy for plain Python values."""
    for a in arrays:
        if type(a) is np.ndarray:
            continue
        mod = type(a).__module__
        if mod.startswith("cupy"):
            import cupy

            return cupy
    return np


def is_array(x) -> bool:
    """True for an ndarray of any supported backend."""
    return isinstance(x, np.ndarray) or type(x).__module__.startswith("cupy")


def to_numpy(x) -> np.ndarray:
    """A NumPy copy of ``x`` (moves CuPy arrays to the host)."""
    if type(x).__module__.startswith("cupy"):
        return x.get()
    return np.asarray(x)


def set_dtype(dtype) -> None:
    """Set the floating dtype knetpy uses for what it creates itself (initializers, Python lists)."""
    global _default_dtype
    try:
        dt = np.dtype(dtype)
    except TypeError:
        close = difflib.get_close_matches(str(dtype), ["float16", "float32", "float64"], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else "; use 'float32' or 'float64'"
        raise TypeError(f"set_dtype: unknown dtype {dtype!r}{hint}") from None
    if dt.kind != "f":
        raise TypeError(f"set_dtype: default dtype must be a floating type, got {dt}")
    _default_dtype = dt


def get_dtype() -> np.dtype:
    """The floating dtype knetpy uses for what it creates itself (float32 unless changed)."""
    return _default_dtype


def set_seed(seed: int) -> None:
    """Seed every random draw knetpy makes (initializers, dropout, shuffling)."""
    global _rng
    try:
        _rng = np.random.default_rng(seed)
    except (TypeError, ValueError) as e:
        raise type(e)(f"set_seed: seed must be a non-negative integer, got {seed!r}") from None


def rng() -> np.random.Generator:
    """The generator behind every random draw knetpy makes."""
    return _rng


def get_rng_state() -> dict:
    """The generator's state, JSON-serialisable, for checkpoints."""
    return _rng.bit_generator.state


def set_rng_state(state: dict) -> None:
    """Restore a state returned by :func:`get_rng_state`."""
    _rng.bit_generator.state = state


def as_array(x, dtype=None):
    """``x`` as an ndarray; Python floats and float lists take the default dtype, arrays keep theirs."""
    if is_array(x):
        if dtype is None:
            return x
        if x.dtype.kind == "c" and np.dtype(dtype).kind != "c":  # astype would drop the imaginary part
            raise TypeError(f"expected real numbers for dtype {np.dtype(dtype)}, got an array of dtype {x.dtype}")
        return x.astype(dtype, copy=False)
    a = np.asarray(x, dtype=dtype)
    if dtype is None and a.dtype == np.float64 and not isinstance(x, np.generic):
        a = a.astype(_default_dtype)
    if a.dtype == object or a.dtype.kind in "USV":
        raise TypeError(f"expected numeric data, got an array of dtype {a.dtype}")
    return a
