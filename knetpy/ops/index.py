"""Indexing: slices, integer arrays and boolean masks, with a scatter-add backward."""

from __future__ import annotations

import numpy as np

from .. import parallel
from ..autograd import Tensor, primitive
from ..backend import array_namespace, is_array


def _value(x):
    return x.value if isinstance(x, Tensor) else x


def _unwrap_index(idx, like=None):
    """The raw index; for data ``like`` on a device, host index arrays and lists are copied there (as
    CuPy's own indexing does), so that the backward pass scatters with an index of the same library."""
    if isinstance(idx, Tensor):
        idx = idx.value
    if like is not None and type(like) is not np.ndarray and is_array(like):
        xp = array_namespace(like)

        def move(i):
            i = i.value if isinstance(i, Tensor) else i
            return xp.asarray(i) if isinstance(i, (np.ndarray, list)) else i

        return tuple(move(i) for i in idx) if isinstance(idx, tuple) else move(idx)
    if isinstance(idx, tuple):
        return tuple(i.value if isinstance(i, Tensor) else i for i in idx)
    if isinstance(idx, list):
        return np.asarray(idx)
    return idx


def _is_basic(idx):
    items = idx if isinstance(idx, tuple) else (idx,)
    return all(i is None or i is Ellipsis or isinstance(i, (int, slice, np.integer)) for i in items)


@primitive(reads=False)
def getitem(x, index=None):
    """``x[index]`` for slices, integers, integer arrays and boolean masks."""
    try:
        return x[index]
    except IndexError as e:
        raise IndexError(f"index {index!r} is invalid for an array of shape {x.shape}: {e}") from None


@primitive(reads=False)
def scatter_add(g, index=None, shape=None):
    """Zeros of ``shape`` with ``g`` added at ``index`` (repeated indices accumulate)."""
    xp = array_namespace(g)
    out = xp.zeros(shape, dtype=g.dtype)
    if _is_basic(index):
        out[index] = g
    elif getattr(getattr(index, "dtype", None), "kind", None) == "b":  # a mask (any library): each place once
        out[index] = g
    elif xp is np and isinstance(index, np.ndarray) and index.ndim >= 1 and len(shape) == 2:
        _add_rows(out, index.reshape(-1) % shape[0], g.reshape(-1, shape[1]))
    else:
        xp.add.at(out, index, g)
    return out


def _add_rows(out, rows_at, rows):
    """``out[rows_at[i]] += rows[i]`` for every i, repeated targets accumulating (embedding backward).

    Small vocabularies: one GEMM with a one-hot matrix. Large ones: sort so equal targets are
    adjacent, then one ``add.reduceat`` (``add.at`` is far slower for either).
    """
    n_rows = out.shape[0]
    if rows_at.size == 0:
        return
    if n_rows * rows_at.size <= 1 << 22:
        onehot = np.zeros((n_rows, rows_at.size), dtype=rows.dtype)  # set ones only: no compare pass
        onehot[rows_at, np.arange(rows_at.size)] = 1
        parallel.matmul(onehot, rows, out=out)
        return
    order = np.argsort(rows_at, kind="stable")
    at = rows_at[order]
    starts = np.flatnonzero(np.r_[True, at[1:] != at[:-1]])
    out[at[starts]] = np.add.reduceat(rows[order], starts, axis=0)


getitem.defvjp(lambda g, ans, x, index=None: scatter_add(g, index=index, shape=x.shape))
scatter_add.defvjp(lambda g, ans, gg, index=None, shape=None: getitem(g, index=index))


def take(x, indices, axis=None):
    """Elements of ``x`` at integer ``indices`` along ``axis`` (flattened when axis is None)."""
    if axis is None:
        from .shape import flatten

        return getitem(flatten(x), index=_unwrap_index(indices, _value(x)))
    idx = [slice(None)] * x.ndim
    idx[axis] = _unwrap_index(indices, _value(x))
    return getitem(x, index=tuple(idx))


Tensor.__getitem__ = lambda self, idx: getitem(self, index=_unwrap_index(idx, self.value))
