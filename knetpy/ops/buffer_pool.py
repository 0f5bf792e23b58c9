"""Reusable scratch arrays for kernels that allocate the same large buffers on every call.

A large fresh ndarray is a fresh memory mapping, and the operating system zero-fills each of its
pages on first touch. For the recurrent kernels, which allocate a few hundred megabytes of gate
buffers per training step, that page-fault time is a sizeable share of the step. Kernels therefore
``take`` their large buffers here and give them back when the backward pass is done with them.

Free memory is kept as flat byte buffers and handed out by size, viewed to the shape and dtype
asked for: the smallest free buffer that is large enough, unless it is over ``MAX_SLACK`` times the
size asked for (a small array should not pin a large buffer). So the scratch memory of one layer is
reused by the next even when their shapes differ. Each size keeps at most ``MAX_PER_SIZE`` free
buffers and the pool at most ``MAX_BYTES`` in all (idle memory counts toward a process's peak);
:func:`clear` empties it. Only NumPy arrays are pooled (CuPy keeps its own memory pool).
"""

from __future__ import annotations

import bisect
import math
import threading
import weakref

import numpy as np

MAX_PER_SIZE = 4
MAX_PER_SHAPE = MAX_PER_SIZE  # the former name
MAX_BYTES = 256 << 20
MAX_SLACK = 4

_sizes: list = []  # nbytes of the free buffers, ascending
_bufs: list = []  # the free buffers (arrays owning their memory), in the same order
_free_ids: set = set()  # id() of the free buffers: a buffer given back twice is pooled once
_ours: dict = {}  # id(buffer) -> weakref, for every buffer handed out: views of them may come back
_held = 0
_lock = threading.RLock()  # re-entrant: a finalizer may hand back a buffer while it is held


def _register(flat):
    key = id(flat)
    _ours[key] = weakref.ref(flat, lambda _, key=key: _ours.pop(key, None))


def take(xp, shape, dtype):
    """An uninitialised array of ``shape`` and ``dtype``, reused from the pool when a buffer fits."""
    if xp is not np:
        return xp.empty(shape, dtype=dtype)
    global _held
    dtype = np.dtype(dtype)
    shape = tuple(shape)
    nbytes = math.prod(shape) * dtype.itemsize
    owner = None
    with _lock:
        i = bisect.bisect_left(_sizes, nbytes)
        if i < len(_sizes) and _sizes[i] <= max(nbytes, 1) * MAX_SLACK:
            _held -= _sizes.pop(i)
            owner = _bufs.pop(i)
            _free_ids.discard(id(owner))
    if owner is None:
        owner = np.empty(nbytes, dtype=np.uint8)
        _register(owner)
    # a view of the owner (NumPy points its base at the owner): give() finds the buffer from it
    return owner.reshape(-1).view(np.uint8)[:nbytes].view(dtype).reshape(shape)


def _owner_of(a):
    """The array owning the memory behind ``a`` when the pool may keep it: ``a`` itself when it owns
    its (contiguous) memory, the buffer of a view that :func:`take` handed out; else None."""
    if type(a) is not np.ndarray:
        return None
    if a.flags.owndata:
        if not a.flags.c_contiguous:
            return None
        ref = _ours.get(id(a))
        if ref is None or ref() is not a:  # an array made elsewhere: track it from now on
            _register(a)
        return a
    base = a.base
    ref = _ours.get(id(base))
    return base if ref is not None and ref() is base else None


def give(*arrays):
    """Return arrays obtained from :func:`take` (or views of them); nothing may use them afterwards."""
    global _held
    for a in arrays:
        with _lock:
            owner = _owner_of(a)
            if owner is None or id(owner) in _free_ids:
                continue
            n = owner.nbytes
            lo, hi = bisect.bisect_left(_sizes, n), bisect.bisect_right(_sizes, n)
            if hi - lo < MAX_PER_SIZE and _held + n <= MAX_BYTES:
                _sizes.insert(hi, n)
                _bufs.insert(hi, owner)
                _free_ids.add(id(owner))
                _held += n


def clear():
    """Drop every pooled array (their memory goes back to the system)."""
    global _held
    with _lock:
        _sizes.clear()
        _bufs.clear()
        _free_ids.clear()
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
