"""Shape primitives: reshape, transpose, broadcasting, joining, flipping and padding."""

from __future__ import annotations

import numpy as np

from ..autograd import Tensor, primitive
from ..backend import array_namespace


def _shape(x):
    return x.shape if hasattr(x, "shape") else np.shape(x)


def _ndim(x):
    return x.ndim if hasattr(x, "ndim") else np.ndim(x)


@primitive(reads=False)
def reshape(x, shape):
    """``x`` with a new shape (one entry may be -1)."""
    try:
        return x.reshape(shape)
    except (ValueError, AttributeError):
        xp = array_namespace(x)
        try:
            return xp.reshape(x, shape)
        except ValueError:
            raise ValueError(f"reshape: cannot reshape array of shape {_shape(x)} into {shape}") from None


reshape.defvjp(lambda g, ans, x, shape: reshape(g, _shape(x)))


def _perm(ndim, axes):
    if axes is None:
        return tuple(range(ndim - 1, -1, -1))
    axes = tuple(a % ndim if ndim else a for a in axes)
    if sorted(axes) != list(range(ndim)):
        raise ValueError(f"transpose: axes {axes} are not a permutation of the {ndim} axes")
    return axes


@primitive(reads=False)
def _transpose(x, axes):
    return x.transpose(axes)


_transpose.defvjp(lambda g, ans, x, axes: _transpose(g, tuple(np.argsort(axes))))


def transpose(x, axes=None):
    """Permute the axes (reverse them by default)."""
    return _transpose(x, _perm(_ndim(x), axes))


permute = transpose


def _check_axis(name, axis, ndim):
    """``axis`` as a non-negative index, or an error naming the op, the axis and the rank."""
    if not -ndim <= axis < ndim:
        raise np.exceptions.AxisError(axis, ndim, name)
    return axis % ndim


def swapaxes(x, a, b):
    n = _ndim(x)
    a, b = _check_axis("swapaxes", a, n), _check_axis("swapaxes", b, n)
    p = list(range(n))
    p[a], p[b] = p[b], p[a]
    return _transpose(x, tuple(p))


def moveaxis(x, source, destination):
    n = _ndim(x)
    source, destination = _check_axis("moveaxis", source, n), _check_axis("moveaxis", destination, n)
    p = [i for i in range(n) if i != source]
    p.insert(destination, source)
    return _transpose(x, tuple(p))


@primitive(reads=False)
def sum_to(x, shape):
    """Sum ``x`` down to ``shape`` (the reverse of broadcasting)."""
    xshape = _shape(x)
    if xshape == shape:
        return x
    lead = len(xshape) - len(shape)
    if lead < 0:
        raise ValueError(f"sum_to: cannot reduce shape {xshape} to larger shape {shape}")
    axes = tuple(range(lead)) + tuple(
        i + lead for i, s in enumerate(shape) if s == 1 and xshape[i + lead] != 1
    )
    out = _sum_to_inner_axis(x, axes) if axes else x
    if out is None:
        out = x.sum(axis=axes, keepdims=True)
    try:
        return out.reshape(shape)
    except ValueError:
        raise ValueError(f"sum_to: shape {xshape} does not broadcast from {shape}") from None


@primitive(reads=False)
def broadcast_to(x, shape):
    """``x`` broadcast to ``shape`` (a read-only view)."""
    xp = array_namespace(x)
    try:
        return xp.broadcast_to(x, shape)
    except ValueError:
        raise ValueError(f"broadcast_to: cannot broadcast shape {_shape(x)} to {shape}") from None


def wide_rows(rows, channels):
    """How many (rows, channels) rows to view as one, so row-wise loops run over >= ~512 elements.

    A bias add or a bias-gradient sum over a narrow matrix (20 channels) would otherwise run
    NumPy's inner loop once per row: many times slower than over a few long rows.
    """
    k = max(1, 512 // max(channels, 1))
    while rows % k:
        k -= 1
    return k


def sum_rows(m):
    """A (rows, C) matrix summed over its rows -> (C,), a few rows at a time (see :func:`wide_rows`)."""
    rows, channels = m.shape
    k = wide_rows(rows, channels)
    return m.reshape(-1, k * channels).sum(axis=0).reshape(k, channels).sum(axis=0)


def _sum_to_inner_axis(x, axes):
    """``x`` summed over ``axes`` as a 2-D (rows, C) reduction, or None where the layout forbids it.

    Works when the one axis left (of size C > 1) is innermost in memory and the array is dense: the
    bias gradient of a channels-last activation, an (N, C, H, W) view of (N, H, W, C) memory.
    NumPy reduces such a strided view about 8 times slower than it sums the (rows, C) view.
    """
    kept = [i for i in range(x.ndim) if i not in axes and x.shape[i] != 1]
    strides = getattr(x, "strides", None)
    if len(kept) != 1 or strides is None or x.size == 0 or strides[kept[0]] != x.itemsize:
        return None
    inner = kept[0]
    # every other axis outermost-first, the kept one last: a C-contiguous view iff the memory is dense
    order = sorted(range(x.ndim), key=lambda i: (i == inner, -strides[i]))
    xt = x.transpose(order)
    if not xt.flags.c_contiguous:
        return None
    return sum_rows(xt.reshape(-1, x.shape[inner]))


sum_to.defvjp(lambda g, ans, x, shape: broadcast_to(g, _shape(x)))
broadcast_to.defvjp(lambda g, ans, x, shape: sum_to(g, _shape(x)))


def unbroadcast(g, x):
    """The gradient ``g`` of a broadcast result, summed back to the shape of operand ``x``."""
    shape = _shape(x)
    return g if g.shape == shape else sum_to(g, shape)


def expand_dims(x, axis):
    """Insert a size-1 axis at ``axis`` (an int or a tuple of ints)."""
    shape = list(_shape(x))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    n = len(shape) + len(axes)
    new = sorted(_check_axis("expand_dims", a, n) for a in axes)
    if len(set(new)) != len(new):
        raise ValueError(f"expand_dims: repeated axis in {axis}")
    for a in new:
        shape.insert(a, 1)
    return reshape(x, tuple(shape))


unsqueeze = expand_dims


def squeeze(x, axis=None):
    """Remove size-1 axes (all of them, or those named by ``axis``)."""
    shape = _shape(x)
    if axis is None:
        new = tuple(s for s in shape if s != 1)
    else:
        axes = {_check_axis("squeeze", a, len(shape)) for a in ((axis,) if isinstance(axis, int) else axis)}
        for a in axes:
            if shape[a] != 1:
                raise ValueError(f"squeeze: axis {a} of shape {shape} has size {shape[a]}, not 1")
        new = tuple(s for i, s in enumerate(shape) if i not in axes)
    return reshape(x, new)


def flatten(x):
    return reshape(x, (-1,))


def mat(x):
    """Reshape to 2-D keeping the batch axis: (N, d1, d2, ...) -> (N, d1*d2*...). (Knet's ``mat``.)"""
    shape = _shape(x)
    return reshape(x, (shape[0] if shape else 1, -1))


@primitive(reads=False)
def _concatenate(*xs, axis=0):
    xp = array_namespace(*xs)
    try:
        return xp.concatenate(xs, axis=axis)
    except np.exceptions.AxisError:
        raise np.exceptions.AxisError(axis, _ndim(xs[0]), "concatenate") from None
    except ValueError:
        shapes = ", ".join(str(_shape(x)) for x in xs)
        raise ValueError(f"concatenate: shapes {shapes} do not match off axis {axis}") from None


@_concatenate.defvjp_argnum
def _concatenate_vjp(i, g, ans, *xs, axis=0):
    ax = axis % _ndim(ans)
    start = sum(_shape(x)[ax] for x in xs[:i])
    idx = [slice(None)] * _ndim(ans)
    idx[ax] = slice(start, start + _shape(xs[i])[ax])
    return g[tuple(idx)]


def concatenate(xs, axis=0):
    """Join a sequence of arrays along an existing axis."""
    if not len(xs):
        raise ValueError("concatenate: needs at least one array")
    return _concatenate(*xs, axis=axis)


def stack(xs, axis=0):
    """Join a sequence of same-shape arrays along a new axis."""
    xs = list(xs)
    if not xs:
        raise ValueError("stack: needs at least one array")
    shapes = {_shape(x) for x in xs}
    if len(shapes) > 1:
        raise ValueError(f"stack: all inputs must have the same shape, got {sorted(shapes)}")
    axis = _check_axis("stack", axis, _ndim(xs[0]) + 1)
    return _concatenate(*[expand_dims(x, axis) for x in xs], axis=axis)


def split(x, indices_or_sections, axis=0):
    """Split into a list of sub-arrays along ``axis`` (like ``numpy.split``)."""
    n = _shape(x)[_check_axis("split", axis, _ndim(x))]
    if isinstance(indices_or_sections, int):
        if n % indices_or_sections:
            raise ValueError(f"split: axis of length {n} does not divide into {indices_or_sections} parts")
        step = n // indices_or_sections
        bounds = list(range(0, n + 1, step))
    else:
        bounds = [0, *indices_or_sections, n]
    out = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        idx = [slice(None)] * _ndim(x)
        idx[axis] = slice(a, b)
        out.append(x[tuple(idx)])
    return out


@primitive(reads=False)
def flip(x, axis=None):
    """Reverse the order of elements along ``axis`` (all axes by default)."""
    return array_namespace(x).flip(x, axis=axis)


flip.defvjp(lambda g, ans, x, axis=None: flip(g, axis=axis))


def _pad_width(pad_width, ndim):
    try:
        pw = np.broadcast_to(np.asarray(pad_width, dtype=int), (ndim, 2))
    except ValueError:
        raise ValueError(
            f"pad: pad_width {pad_width!r} does not fit an array with {ndim} dimensions; give an int, "
            f"a (before, after) pair, or {ndim} such pairs"
        ) from None
    if (pw < 0).any():
        raise ValueError(f"pad: pad_width {pad_width!r} has negative widths")
    return tuple((int(a), int(b)) for a, b in pw)


@primitive(reads=False)
def _pad(x, pad_width, value):
    return array_namespace(x).pad(x, pad_width, mode="constant", constant_values=value)


_pad.defvjp(
    lambda g, ans, x, pad_width, value: g[
        tuple(slice(a, a + s) for (a, _), s in zip(pad_width, _shape(x)))
    ]
)


def pad(x, pad_width, mode="constant", constant_values=0):
    """Pad with a constant (``numpy.pad`` semantics for ``pad_width``)."""
    if mode != "constant":
        raise NotImplementedError(f"pad: only mode='constant' is differentiable, got mode={mode!r}")
    return _pad(x, _pad_width(pad_width, _ndim(x)), constant_values)


@primitive
def astype(x, dtype):
    """``x`` converted to ``dtype``. The gradient is converted back; a cast to an integer or bool
    dtype has none (its result is a constant, as every non-floating result is)."""
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"astype: {dtype!r} is not a dtype") from None
    return x.astype(dtype)


astype.defvjp(lambda g, ans, x, dtype: astype(g, x.dtype))


@primitive(reads=False)
def identity(x):
    return x


identity.defvjp(lambda g, ans, x: g)


def _transpose_method(self, *axes):
    if len(axes) == 1 and (axes[0] is None or not isinstance(axes[0], int)):
        axes = axes[0]
    return transpose(self, axes or None)


def _reshape_method(self, *shape):
    if len(shape) == 1 and not isinstance(shape[0], int):
        shape = shape[0]
    return reshape(self, tuple(shape))


Tensor.reshape = _reshape_method
Tensor.transpose = _transpose_method
Tensor.permute = _transpose_method
Tensor.T = property(lambda self: transpose(self))
Tensor.mT = property(lambda self: swapaxes(self, -1, -2))
Tensor.swapaxes = swapaxes
Tensor.flatten = flatten
Tensor.squeeze = squeeze
Tensor.expand_dims = expand_dims
Tensor.unsqueeze = expand_dims
Tensor.astype = astype
Tensor.flip = flip
