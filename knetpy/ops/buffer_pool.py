"""Reusable scratch arrays for kernels that allocate the same large buffers on every call.

A large fresh ndarray is a fresh memory mapping, and the operating system zero-fills each of its
pages on first touch. For the recurrent kernels, which allocate a few hundred megabytes of gate
buffers per training step, that page-fault time is a sizeable share of the step. Kernels therefore
``take`` their large buffers here and give them back when the backward pass is done with them.

Only NumPy arrays are pooled (CuPy keeps its own memory pool). Each (shape, dtype) keeps at most
a few free arrays and the pool at most ``MAX_BYTES`` in all; :func:`clear` empties it.
"""

from __future__ import annotations

import threading

import numpy as np

MAX_PER_SHAPE = 4
MAX_BYTES = 1 << 30

_free: dict = {}
_held = 0
_lock = threading.RLock()  # re-entrant: a finalizer may hand back a buffer while it is held


def take(xp, shape, dtype):
    """An uninitialised array of ``shape`` and ``dtype``, reused from the pool when one is free."""
    if xp is not np:
        return xp.empty(shape, dtype=dtype)
    global _held
    key = (tuple(shape), np.dtype(dtype))
    with _lock:
        stack = _free.get(key)
        if stack:
            a = stack.pop()
            _held -= a.nbytes
            return a
    return np.empty(shape, dtype=dtype)


def give(*arrays):
    """Return arrays obtained from :func:`take`; nothing may use them afterwards."""
    global _held
    for a in arrays:
        if type(a) is not np.ndarray or not a.flags.owndata:
            continue
        key = (a.shape, a.dtype)
        with _lock:
            stack = _free.setdefault(key, [])
            if len(stack) < MAX_PER_SHAPE and _held + a.nbytes <= MAX_BYTES:
                stack.append(a)
                _held += a.nbytes


def clear():
    """Drop every pooled array (their memory goes back to the system)."""
    global _held
    with _lock:
        _free.clear()
        _held = 0


def held_bytes():
    """Bytes currently kept in the pool."""
    return _held


class Lease:
    """Pooled arrays that go back to the pool when this object is garbage collected.

    Kept among the values a primitive saves for its backward pass, so the arrays return when the
    tape lets go of them (after the backward pass, or at once when nothing was recorded).
    """

    __slots__ = ("arrays",)

    def __init__(self, *arrays):
        self.arrays = arrays

    def __del__(self):
        try:
            give(*self.arrays)
        except Exception:  # interpreter shutdown: module globals may already be gone
            pass
