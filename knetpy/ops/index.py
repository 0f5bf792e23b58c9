"""Indexing: slices, integer arrays and boolean masks, with a scatter-add backward."""

from __future__ import annotations

import numpy as np

from ..autograd import Tensor, primitive
from ..backend import array_namespace


def _unwrap_index(idx):
    if isinstance(idx, Tensor):
        return idx.value
    if isinstance(idx, tuple):
        return tuple(i.value if isinstance(i, Tensor) else i for i in idx)
    if isinstance(idx, list):
        return np.asarray(idx)
    return idx


def _is_basic(idx):
    items = idx if isinstance(idx, tuple) else (idx,)
    return all(i is None or i is Ellipsis or isinstance(i, (int, slice, np.integer)) for i in items)


@primitive
def getitem(x, index=None):
    """``x[index]`` for slices, integers, integer arrays and boolean masks."""
    try:
        return x[index]
    except IndexError as e:
        raise IndexError(f"index {index!r} is invalid for an array of shape {x.shape}: {e}") from None


@primitive
def scatter_add(g, index=None, shape=None):
    """Zeros of ``shape`` with ``g`` added at ``index`` (repeated indices accumulate)."""
    xp = array_namespace(g)
    out = xp.zeros(shape, dtype=g.dtype)
    if _is_basic(index):
        out[index] = g
    elif isinstance(index, np.ndarray) and index.dtype == bool:
        out[index] = g
    elif xp is np and isinstance(index, np.ndarray) and index.ndim >= 1 and len(shape) == 2:
        # A row gather (embedding lookup): accumulate rows with one sparse-free matmul-free pass.
        flat = index.reshape(-1) % shape[0]
        rows = g.reshape(-1, shape[1])
        order = np.argsort(flat, kind="stable")
        uniq, starts = np.unique(flat[order], return_index=True)
        out[uniq] = np.add.reduceat(rows[order], starts, axis=0)
    else:
        xp.add.at(out, index, g)
    return out


getitem.defvjp(lambda g, ans, x, index=None: scatter_add(g, index=index, shape=x.shape))
scatter_add.defvjp(lambda g, ans, gg, index=None, shape=None: getitem(g, index=index))


def take(x, indices, axis=None):
    """Elements of ``x`` at integer ``indices`` along ``axis`` (flattened when axis is None)."""
    if axis is None:
        from .shape import flatten

        return getitem(flatten(x), index=_unwrap_index(indices))
    idx = [slice(None)] * x.ndim
    idx[axis] = _unwrap_index(indices)
    return getitem(x, index=tuple(idx))


Tensor.__getitem__ = lambda self, idx: getitem(self, index=_unwrap_index(idx))
