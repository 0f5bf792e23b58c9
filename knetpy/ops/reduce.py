"""Reductions with ``axis`` (int, tuple or None) and ``keepdims``."""

from __future__ import annotations

import functools

import numpy as np

from ..autograd import Tensor, primitive
from ..autograd import nondiff as _nondiff_wrap
from ..backend import array_namespace
from .elementwise import sqrt, where
from .shape import broadcast_to, reshape


def _axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (int, np.integer)):
        axis = (axis,)
    out = []
    for a in axis:
        if not -ndim <= a < (ndim or 1):  # (the builtin max is shadowed in this module)
            raise ValueError(f"axis {a} is out of bounds for an array with {ndim} dimensions")
        out.append(a % ndim if ndim else 0)
    return tuple(out)


def _kept_shape(shape, axis):
    axes = _axes(axis, len(shape))
    return tuple(1 if i in axes else s for i, s in enumerate(shape))


def _count(shape, axis):
    n = 1
    for a in _axes(axis, len(shape)):
        n *= shape[a] if shape else 1
    return n


def _expand(g, shape, axis, keepdims):
    """Broadcast the gradient of a reduction back over the reduced axes."""
    if axis is None and not isinstance(g, Tensor):
        return array_namespace(g).full(shape, g, dtype=g.dtype)
    if not keepdims:
        g = reshape(g, _kept_shape(shape, axis))
    return broadcast_to(g, shape)


def _shape(x):
    return x.shape if hasattr(x, "shape") else np.shape(x)


def _is_half(x):
    """float16 arrays: their reductions accumulate in float32 and round once at the end."""
    return getattr(x, "dtype", None) == np.float16


def _names_axis(fwd):
    """``fwd`` with NumPy's bare out-of-range-axis error reworded to name the op and the shape
    (still an AxisError, so a ValueError and an IndexError as well)."""

    @functools.wraps(fwd)
    def checked(x, axis=None, *args, **kw):
        try:
            return fwd(x, axis, *args, **kw)
        except np.exceptions.AxisError:
            shape = tuple(_shape(x))
            raise np.exceptions.AxisError(
                f"{fwd.__name__}: axis {axis!r} is out of bounds for an array of shape {shape} "
                f"(valid axes: {-len(shape)} to {len(shape) - 1})"
            ) from None

    return checked


@primitive
@_names_axis
def sum(x, axis=None, keepdims=False):
    """Sum over ``axis`` (float16 accumulates in float32, as in NumPy's mean and PyTorch)."""
    if _is_half(x):
        return x.astype(np.float32).sum(axis=axis, keepdims=keepdims).astype(x.dtype)
    if hasattr(x, "sum"):
        return x.sum(axis=axis, keepdims=keepdims)
    return array_namespace(x).sum(x, axis=axis, keepdims=keepdims)


sum.defvjp(lambda g, ans, x, axis=None, keepdims=False: _expand(g, _shape(x), axis, keepdims))
sum.prim.reads = False  # the VJP uses x's shape only: in-place edits after the op are harmless


@primitive
@_names_axis
def mean(x, axis=None, keepdims=False):
    """Mean over ``axis``."""
    xp = array_namespace(x)
    if getattr(x, "dtype", None) is None or x.dtype.kind not in "fc":
        return xp.mean(x, axis=axis, keepdims=keepdims)
    if _is_half(x):
        # the sum of many float16 values overflows (or stalls at 2048) long before their mean does
        return (x.astype(np.float32).sum(axis=axis, keepdims=keepdims) / _count(x.shape, axis)).astype(x.dtype)
    # sum / n directly: the same arithmetic as xp.mean without its Python-level overhead
    return x.sum(axis=axis, keepdims=keepdims) / _count(x.shape, axis)


mean.defvjp(
    lambda g, ans, x, axis=None, keepdims=False: _expand(
        g / _count(_shape(x), axis), _shape(x), axis, keepdims
    )
)


def _extreme_vjp(g, ans, x, axis=None, keepdims=False):
    # Ties share the gradient equally (like torch.amax / amin).
    shape = _shape(x)
    hit = x == _expand(ans, shape, axis, keepdims)
    count = sum(hit, axis=axis, keepdims=True)
    return where(hit, _expand(g, shape, axis, keepdims) / count, 0)


@primitive
@_names_axis
def max(x, axis=None, keepdims=False):
    """Maximum over ``axis``."""
    return array_namespace(x).max(x, axis=axis, keepdims=keepdims)


@primitive
@_names_axis
def min(x, axis=None, keepdims=False):
    """Minimum over ``axis``."""
    return array_namespace(x).min(x, axis=axis, keepdims=keepdims)


max.defvjp(_extreme_vjp)
min.defvjp(_extreme_vjp)
amax, amin = max, min


@primitive
@_names_axis
def var(x, axis=None, ddof=0, keepdims=False):
    """Variance over ``axis`` (``ddof=1`` for the unbiased estimate)."""
    if _is_half(x):
        return array_namespace(x).var(x.astype(np.float32), axis=axis, ddof=ddof, keepdims=keepdims).astype(x.dtype)
    return array_namespace(x).var(x, axis=axis, ddof=ddof, keepdims=keepdims)


def _var_vjp(g, ans, x, axis=None, ddof=0, keepdims=False):
    shape = _shape(x)
    centred = x - mean(x, axis=axis, keepdims=True)
    return _expand(g, shape, axis, keepdims) * centred * (2.0 / (_count(shape, axis) - ddof))


var.defvjp(_var_vjp)


def std(x, axis=None, ddof=0, keepdims=False):
    """Standard deviation over ``axis``."""
    try:
        v = var(x, axis=axis, ddof=ddof, keepdims=keepdims)
    except np.exceptions.AxisError as e:
        raise np.exceptions.AxisError(str(e).replace("var:", "std:", 1)) from None
    return sqrt(v)


@primitive
@_names_axis
def prod(x, axis=None, keepdims=False):
    """Product over ``axis``."""
    if _is_half(x):
        return x.astype(np.float32).prod(axis=axis, keepdims=keepdims).astype(x.dtype)
    return array_namespace(x).prod(x, axis=axis, keepdims=keepdims)


def _prod_vjp(g, ans, x, axis=None, keepdims=False):
    shape = _shape(x)
    gx = _expand(g, shape, axis, keepdims)
    raw = x.value if isinstance(x, Tensor) else x
    # Looking for zeros reads the data back: a device array (first order) skips the look and always
    # takes the exclusive products below, which are right with or without zeros.
    if (array_namespace(raw) is np or isinstance(x, Tensor)) and not (raw == 0).any():
        return gx * _expand(ans, shape, axis, keepdims) / x
    if isinstance(x, Tensor):
        raise NotImplementedError("prod: second derivatives at inputs containing zeros")
    # With zeros, use the product of all *other* elements: exclusive cumulative products.
    xp = array_namespace(raw)
    axes = _axes(axis, raw.ndim)
    rest = [i for i in range(raw.ndim) if i not in axes]
    moved = xp.transpose(raw, rest + list(axes)).reshape([raw.shape[i] for i in rest] + [-1])
    ones = xp.ones(moved.shape[:-1] + (1,), dtype=raw.dtype)
    left = xp.cumprod(xp.concatenate([ones, moved[..., :-1]], axis=-1), axis=-1)
    right = xp.cumprod(xp.concatenate([ones, moved[..., :0:-1]], axis=-1), axis=-1)[..., ::-1]
    others = (left * right).reshape([raw.shape[i] for i in rest] + [raw.shape[i] for i in axes])
    order = rest + list(axes)
    others = xp.transpose(others, sorted(range(len(order)), key=order.__getitem__))  # the inverse permutation
    return gx * others


prod.defvjp(_prod_vjp)

@_names_axis
def argmax(x, axis=None, keepdims=False):
    return x.argmax(axis=axis, keepdims=keepdims)


@_names_axis
def argmin(x, axis=None, keepdims=False):
    return x.argmin(axis=axis, keepdims=keepdims)


argmax = _nondiff_wrap("argmax", argmax)
argmin = _nondiff_wrap("argmin", argmin)


def _reduce_method(op):
    def method(self, axis=None, keepdims=False, **kw):
        # NumPy's np.sum(t) / np.mean(t) call this method with out=None, dtype=None.
        if kw.get("out") is not None or kw.get("dtype") is not None:
            raise TypeError(f"{op.__name__}: out= and dtype= are not supported on tensors")
        return op(self, axis=axis, keepdims=keepdims)

    return method


def _stat_method(op):
    def method(self, axis=None, ddof=0, keepdims=False, **kw):
        return op(self, axis=axis, ddof=ddof, keepdims=keepdims)

    return method


Tensor.sum = _reduce_method(sum)
Tensor.mean = _reduce_method(mean)
Tensor.max = _reduce_method(max)
Tensor.min = _reduce_method(min)
Tensor.prod = _reduce_method(prod)
Tensor.var = _stat_method(var)
Tensor.std = _stat_method(std)
Tensor.argmax = lambda self, axis=None, keepdims=False: argmax(self, axis=axis, keepdims=keepdims)
Tensor.argmin = lambda self, axis=None, keepdims=False: argmin(self, axis=axis, keepdims=keepdims)
