"""Large result arrays whose memory goes back to the buffer pool when their last view is gone.

Activations and gradients of a training step live for one step. Allocated fresh, each large one is
a new memory mapping that the operating system page-faults and zero-fills on first touch, every
step; for a small CNN that costs as much as a GEMM. An array made here is a view of a buffer from
:mod:`knetpy.ops.buffer_pool` whose ``base`` is a small owner object; NumPy keeps the owner alive
as long as any view of the array exists, and the owner gives the buffer back when it dies. So the
memory is reused only once nothing can see it any more.

Small arrays (under ``MIN_BYTES``) come from NumPy directly: malloc recycles those well by itself.
"""

from __future__ import annotations

import math

import numpy as np

from .. import autograd
from .buffer_pool import give, take

MIN_BYTES = 1 << 20


# Buffers whose last user is gone, handed to the pool at the next allocation. A finalizer may run
# anywhere (the garbage collector can start inside the pool's own locked code), so finalizers only
# append here, which takes no lock.
_released = []


def release(buffer):
    """Give ``buffer`` back to the pool soon; safe to call from ``__del__``."""
    _released.append(buffer)


def _flush():
    while _released:
        try:
            buffer = _released.pop()
        except IndexError:  # another thread took the last one between the test and the pop
            return
        give(buffer)


class _Owner:
    """Holds a pooled buffer for the arrays viewing it; releases it when collected."""

    __slots__ = ("buffer",)

    def __init__(self, buffer):
        self.buffer = buffer

    @property
    def __array_interface__(self):
        return self.buffer.__array_interface__

    def __del__(self):
        try:
            release(self.buffer)
        except Exception:  # interpreter shutdown: module globals may already be gone
            pass


autograd.OWN_MEMORY.add(_Owner)  # an array made here views no other array: a leaf may keep it


def take_buffer(xp, shape, dtype):
    """A pooled, uninitialised array to use and :func:`release` (or ``buffer_pool.give``) later."""
    _flush()
    return take(xp, shape, dtype)


def empty(xp, shape, dtype):
    """An uninitialised array, recycled through the buffer pool when large (NumPy only)."""
    dtype = np.dtype(dtype)
    if xp is not np or math.prod(shape) * dtype.itemsize < MIN_BYTES:
        return xp.empty(shape, dtype=dtype)
    return np.asarray(_Owner(take_buffer(np, shape, dtype)))


def zeros(xp, shape, dtype):
    """Zeros, recycled like :func:`empty`."""
    out = empty(xp, shape, dtype)
    out.fill(0)
    return out
