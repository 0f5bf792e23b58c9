"""Pooling (Knet's ``pool``), max-unpooling and global pooling, for 1-D, 2-D and 3-D inputs.

x is (N, C, *spatial). ``mode`` follows Knet (and cuDNN): 0 max, 1 average counting padded
positions, 2 average over the real positions only. Padded positions never win a max.

Pooling is per channel, so it runs in whatever memory layout ``x`` has and returns the same layout
(channels-last activations from :func:`conv4` stay channels-last). The windows are visited offset
by offset, as strided slices of the (padded) input, so every step is one vectorised NumPy call:

- max pooling keeps a running maximum and, per window, the number of the offset that won (a small
  integer), so the backward pass is one multiply per offset; windows that tile the input (stride
  == window, no padding) write their gradients straight into place, overlapping ones accumulate;
- average pooling sums the slices (tiling windows: a reshape of the input) and divides by the
  window size, or by the number of real positions in it (mode 2).

Max pooling's gradient sends each output's gradient to the first maximal input of its window (in
row-major window order), as PyTorch does.

With numba installed (the ``[fast]`` extra), 2-D max pooling of channels-last NumPy arrays (what
convolutions produce) runs compiled, forward and backward, in one pass each
(:mod:`knetpy.ops.fast.pool`), with the same results; the NumPy code here is its tested reference.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .. import parallel
from ..autograd import Tensor, is_grad_enabled, primitive
from ..backend import array_namespace
from . import fast
from .conv import per_axis
from .im2col import empty_like_layout, kernel_offsets, same_layout, to_channels_last, window_slices


class PoolGeometry(NamedTuple):
    window: tuple
    padding: tuple
    stride: tuple

    def output_size(self, in_spatial):
        return tuple(
            1 + (x + 2 * p - w) // s for x, w, p, s in zip(in_spatial, self.window, self.padding, self.stride)
        )

    @property
    def tiles(self):
        """True when the windows tile the input: the reshape algorithm applies."""
        return self.stride == self.window and not any(self.padding)


def _value(x):
    return x.value if isinstance(x, Tensor) else x


_MODES = {0: "max", 1: "average counting padding", 2: "average excluding padding"}


def pool_geometry(fn, x, window, padding, stride):
    """Check ``x`` and the options of a pooling call; returns a :class:`PoolGeometry`."""
    shape = _value(x).shape
    if len(shape) not in (3, 4, 5):
        raise ValueError(
            f"{fn}: x must be (N, C, *spatial) with 1 to 3 spatial dimensions, got shape {shape}"
        )
    dt = _value(x).dtype
    if dt.kind != "f":
        raise TypeError(f"{fn}: x must be a floating array, got dtype {dt}")
    nd = len(shape) - 2
    window = per_axis(window, nd, "window", fn, 1)
    padding = per_axis(padding, nd, "padding", fn, 0)
    stride = window if stride is None else per_axis(stride, nd, "stride", fn, 1)
    for axis, (size, w, p) in enumerate(zip(shape[2:], window, padding)):
        if p >= w:
            raise ValueError(
                f"{fn}: padding {p} along spatial axis {axis} must be smaller than the window {w} "
                "(otherwise a window could hold padding only)"
            )
        if size + 2 * p < w:
            raise ValueError(
                f"{fn}: window {w} along spatial axis {axis} is larger than the padded input "
                f"({size} + 2 x padding {p} = {size + 2 * p})"
            )
    return PoolGeometry(window, padding, stride)


# -- shared helpers ------------------------------------------------------------------------------------------
def _blocks(x, geom, out):
    """The covered part of x seen as (N, C, O1, W1, O2, W2, ...) (a view); for tiling windows."""
    covered = x[(slice(None), slice(None)) + tuple(slice(0, o * w) for o, w in zip(out, geom.window))]
    return covered.reshape(x.shape[:2] + tuple(v for ow in zip(out, geom.window) for v in ow))


def _block_at(blocks, offset):
    """The (N, C, *O) view of ``blocks`` at window position ``offset``."""
    return blocks[(slice(None), slice(None)) + tuple(v for k in offset for v in (slice(None), k))]


def _padded(x, geom, fill):
    """x with ``fill`` in a border of geom.padding, in x's memory layout (x itself without padding)."""
    if not any(geom.padding):
        return x
    shape = x.shape[:2] + tuple(s + 2 * p for s, p in zip(x.shape[2:], geom.padding))
    out = empty_like_layout(x, shape, fill=fill)
    out[_interior(geom, x.shape[2:])] = x
    return out


def _interior(geom, in_spatial):
    return (slice(None), slice(None)) + tuple(slice(p, p + s) for p, s in zip(geom.padding, in_spatial))


def _zeros_like_layout(x, shape, dtype=None):
    return empty_like_layout(x, shape, dtype, fill=0)


# -- compiled 2-D max pooling (numba), with the NumPy code below as the reference --------------------------


def _fast_ok(*arrays):
    """Whether the compiled kernels take these arrays: on, NumPy, (N, C, H, W), float32 or float64."""
    return fast.enabled() and all(
        type(a) is np.ndarray and a.ndim == 4 and a.dtype in fast.FLOATS for a in arrays
    )


# The kernels loop over channels innermost: with fewer channels than this, NumPy's strided passes win.
FAST_MIN_CHANNELS = 4


def _nhwc(a):
    """(N, C, H, W) channels-last memory as the C-contiguous (N, H, W, C) array the kernels take; None
    for any other layout, or too few channels."""
    v = a.transpose(0, 2, 3, 1)
    return v if v.flags.c_contiguous and v.shape[-1] >= FAST_MIN_CHANNELS else None


def _fast_max_pool(x, geom, out):
    """Max pooling by the compiled kernel, or None when the layouts do not suit it."""
    from .fast.pool import max_pool2d

    shape = x.shape[:2] + tuple(out)
    y = empty_like_layout(x, shape)
    code = empty_like_layout(x, shape, np.uint8 if math.prod(geom.window) < 256 else np.int32)
    xv, yv, cv = _nhwc(x), _nhwc(y), _nhwc(code)
    if xv is None or yv is None or cv is None or xv.shape[::3] != yv.shape[::3] or yv.shape != cv.shape:
        return None
    (kh, kw), (sh, sw), (ph, pw) = geom.window, geom.stride, geom.padding
    parallel.for_rows(
        lambda lo, hi: max_pool2d(xv[lo:hi], yv[lo:hi], cv[lo:hi], kh, kw, sh, sw, ph, pw), xv.shape[0], x.size
    )
    return y, _Switches(code, geom, x.shape, x)


def _fast_scatter(g, switches, relu_of=None):
    """Max pooling's backward pass by the compiled kernel, or None when the layouts do not suit it.
    ``relu_of``: the pooled output of a relu, whose slope multiplies g first (``g * (relu_of > 0)``)."""
    made = _fast_scatter_parts(g, switches, relu_of)
    if made is None:
        return None
    dx, part = made
    parallel.for_rows(part, dx.shape[0], dx.size)
    return dx


def _fast_scatter_parts(g, switches, relu_of=None):
    """(dx, part) for :func:`_fast_scatter`, or None: ``part(lo, hi)`` writes samples lo..hi-1 of dx
    (uninitialised until then), so that another op's parts can run it first on their own samples."""
    from .fast.pool import max_pool2d_backward

    geom, cv = switches.geom, _nhwc(switches.code)
    if cv is None:
        return None
    g = to_channels_last(g).transpose(0, 3, 1, 2)  # in the code's layout
    dx = empty_like_layout(switches.like, switches.in_shape, g.dtype)
    gv, dv = _nhwc(g), _nhwc(dx)
    if dv is None or gv.shape != cv.shape or dv.shape[::3] != cv.shape[::3]:
        return None
    av = gv
    if relu_of is not None:
        av = _nhwc(to_channels_last(relu_of).transpose(0, 3, 1, 2))
        if av is None or av.shape != gv.shape:
            return None
    (kh, kw), (sh, sw), (ph, pw) = geom.window, geom.stride, geom.padding
    tiles, relu = geom.tiles, relu_of is not None

    def part(lo, hi):
        max_pool2d_backward(gv[lo:hi], cv[lo:hi], dv[lo:hi], kh, kw, sh, sw, ph, pw, tiles, av[lo:hi], relu)

    return dx, part


def _offset_slices(geom, out):
    """(offset, slices into the padded input) for every window position."""
    ones = (1,) * len(out)
    for offset in kernel_offsets(geom.window):
        yield offset, (slice(None), slice(None)) + window_slices(offset, geom.stride, ones, out)


def _flat_plane_index(code, geom, in_spatial):
    """Window-offset numbers (N, C, *O) -> flat indices into each (n, c) plane of the unpadded input."""
    xp = array_namespace(code)
    out = code.shape[2:]
    nd = len(out)
    flat = xp.zeros(code.shape, dtype=np.int64)
    offsets = xp.unravel_index(code.astype(np.int64), geom.window)
    for d in range(nd):
        grid = xp.arange(out[d], dtype=np.int64) * geom.stride[d] - geom.padding[d]
        pos = offsets[d] + grid.reshape((-1,) + (1,) * (nd - 1 - d))
        flat = flat * in_spatial[d] + pos
    return flat


# -- max pooling: the forward pass records "switches", which know how to route gradients ------------------
class _Switches:
    """Which window offset won each window: a small integer per output (row-major offset number).

    ``like`` is an array laid out as the pooled input, so gradients come back in that layout.
    """

    __slots__ = ("code", "geom", "in_shape", "like")

    def __init__(self, code, geom, in_shape, like):
        self.code, self.geom, self.in_shape, self.like = code, geom, in_shape, like

    def scatter_relu(self, g, pooled):
        """``scatter(g * (pooled > 0))``: the gradient of max pooling after a relu (``pooled``, the
        pooled relu output), with the relu's mask applied inside the compiled scatter when it runs."""
        if _fast_ok(g, self.like, pooled) and pooled.dtype == g.dtype:
            dx = _fast_scatter(g, self, relu_of=pooled)
            if dx is not None:
                return dx
        return self.scatter(g * (pooled > 0))

    def scatter_relu_parts(self, g, pooled):
        """:meth:`scatter_relu` as (dx, part), where ``part(lo, hi)`` writes samples lo..hi-1 of dx (left
        uninitialised until then) by the compiled scatter; None where that does not apply."""
        if _fast_ok(g, self.like, pooled) and pooled.dtype == g.dtype:
            return _fast_scatter_parts(g, self, relu_of=pooled)
        return None

    def scatter(self, g):
        """Each output gradient to its window's winner (zeros elsewhere), shaped like the input."""
        if _fast_ok(g, self.like):
            dx = _fast_scatter(g, self)
            if dx is not None:
                return dx
        xp = array_namespace(g)
        g = same_layout(g, self.like)
        out, geom = g.shape[2:], self.geom
        if geom.tiles:  # windows do not overlap: each input position is written at most once
            covers_all = all(o * w == s for o, w, s in zip(out, geom.window, self.in_shape[2:]))
            dx = (empty_like_layout if covers_all else _zeros_like_layout)(self.like, self.in_shape, g.dtype)
            slices = [sl for _, sl in _offset_slices(geom, out)]
            code = self.code

            def part(lo, hi):  # samples lo..hi-1
                for k, sl in enumerate(slices):
                    xp.multiply(g[lo:hi], code[lo:hi] == k, out=dx[lo:hi][sl])

            parallel.for_rows(part, g.shape[0], dx.size, xp)
            return dx
        padded = self.in_shape[:2] + tuple(s + 2 * p for s, p in zip(self.in_shape[2:], geom.padding))
        dx = _zeros_like_layout(self.like, padded, g.dtype)
        for k, (_, sl) in enumerate(_offset_slices(geom, out)):
            dx[sl] += g * (self.code == k)
        return dx[_interior(geom, self.in_shape[2:])]

    def gather(self, x):
        """Each window's recorded winner read from ``x`` (the adjoint of :meth:`scatter`)."""
        xpad = _padded(x, self.geom, 0)
        y = None
        for k, (_, sl) in enumerate(_offset_slices(self.geom, self.code.shape[2:])):
            term = xpad[sl] * (self.code == k)
            y = term if y is None else y + term
        return y

    def indices(self):
        return _flat_plane_index(self.code, self.geom, self.in_shape[2:])


def _max_windows(x, geom, out):
    """Window maxima and, per window, the first offset (row-major) holding the maximum."""
    if _fast_ok(x):
        done = _fast_max_pool(x, geom, out)
        if done is not None:
            return done
    xp = array_namespace(x)
    xpad = _padded(x, geom, -np.inf)
    slices = [sl for _, sl in _offset_slices(geom, out)]
    shape = x.shape[:2] + tuple(out)
    y = empty_like_layout(x, shape)
    code = empty_like_layout(x, shape, np.uint8 if len(slices) < 256 else np.int32)

    def part(lo, hi):  # samples lo..hi-1
        xs, ys, cs = xpad[lo:hi], y[lo:hi], code[lo:hi]
        ys[...] = xs[slices[0]]
        cs.fill(0)
        for k, sl in enumerate(slices[1:], start=1):
            v = xs[sl]
            better = v > ys  # strictly: an earlier offset keeps a tie
            xp.maximum(ys, v, out=ys)
            cs += better * (k - cs)  # branch-free "code = k where better"

    parallel.for_rows(part, x.shape[0], x.size, xp)
    return y, _Switches(code, geom, x.shape, x)


@primitive(saves=True)
def _max_pool(x, geom=None):
    return _max_windows(x, geom, geom.output_size(x.shape[2:]))


@primitive
def _switch_scatter(g, switches=None):
    """Route each output gradient to its window's winner (max pooling's backward pass)."""
    return switches.scatter(g)


@primitive
def _switch_gather(x, switches=None):
    """Pick each window's recorded winner from ``x`` (the adjoint of :func:`_switch_scatter`)."""
    return switches.gather(x)


_max_pool.defvjp(lambda g, ans, switches, x, geom=None: _switch_scatter(g, switches=switches))
_switch_scatter.defvjp(lambda g, ans, gy, switches=None: _switch_gather(g, switches=switches))
_switch_gather.defvjp(lambda g, ans, x, switches=None: _switch_scatter(g, switches=switches))


# -- average pooling: a fixed linear map and its transpose ----------------------------------------------------
def _divisor(geom, in_spatial, out, count_padding, dtype, xp=np):
    """How many positions each window averages: a scalar, or an (1, 1, *O) array of ``xp`` without padding
    (counted on the host: the geometry alone decides it)."""
    if count_padding or not any(geom.padding):
        return math.prod(geom.window)
    counts = 1
    for d, (x, w, p, s, o) in enumerate(zip(in_spatial, geom.window, geom.padding, geom.stride, out)):
        start = np.arange(o) * s - p
        real = np.minimum(start + w, x) - np.maximum(start, 0)
        counts = counts * real.reshape((-1,) + (1,) * (len(out) - 1 - d))
    return xp.asarray(counts.astype(dtype).reshape((1, 1) + tuple(out)))


@primitive
def _avg_pool(x, geom=None, count_padding=True):
    xp = array_namespace(x)
    out = geom.output_size(x.shape[2:])
    if geom.tiles:
        blocks = _blocks(x, geom, out)
        views = [_block_at(blocks, offset) for offset in kernel_offsets(geom.window)]
    else:
        xpad = _padded(x, geom, 0)
        views = [xpad[sl] for _, sl in _offset_slices(geom, out)]
    y = empty_like_layout(x, x.shape[:2] + tuple(out))
    if len(views) == 1:
        y[...] = views[0]
    else:
        xp.add(views[0], views[1], out=y)
    for v in views[2:]:
        xp.add(y, v, out=y)
    y /= _divisor(geom, x.shape[2:], out, count_padding, x.dtype, xp)
    return y


@primitive
def _avg_pool_transpose(g, geom=None, count_padding=True, in_spatial=None):
    """Spread each output gradient evenly over its window (the adjoint of average pooling)."""
    out = g.shape[2:]
    share = g / _divisor(geom, in_spatial, out, count_padding, g.dtype, array_namespace(g))
    if geom.tiles:
        shape = g.shape[:2] + tuple(in_spatial)
        covers_all = all(o * w == s for o, w, s in zip(out, geom.window, in_spatial))
        dx = (empty_like_layout if covers_all else _zeros_like_layout)(g, shape)
        blocks = _blocks(dx, geom, out)
        blocks[...] = share.reshape(g.shape[:2] + tuple(v for o in out for v in (o, 1)))
        return dx
    padded = g.shape[:2] + tuple(s + 2 * p for s, p in zip(in_spatial, geom.padding))
    dx = _zeros_like_layout(g, padded)
    for _, sl in _offset_slices(geom, out):
        dx[sl] += share
    return dx[_interior(geom, in_spatial)]


_avg_pool.defvjp(
    lambda g, ans, x, geom=None, count_padding=True: _avg_pool_transpose(
        g, geom=geom, count_padding=count_padding, in_spatial=x.shape[2:]
    )
)
_avg_pool_transpose.defvjp(
    lambda g, ans, gy, geom=None, count_padding=True, in_spatial=None: _avg_pool(
        g, geom=geom, count_padding=count_padding
    )
)


# -- public functions -----------------------------------------------------------------------------------------
def pool(x, window=2, padding=0, stride=None, mode=0, return_indices=False):
    """Pool ``x`` (N, C, *spatial) over windows: Knet's ``pool``.

    ``window``, ``padding`` and ``stride`` (default: the window) are ints or per-dimension tuples;
    the output size is 1 + floor((X + 2P - W) / S). ``mode``: 0 max, 1 average with padded
    positions counted as zeros, 2 average over the real positions only.
    With ``return_indices=True`` (max only) also returns, as an int64 array shaped like the
    output, the flat index of each winner within its (n, c) input plane, for :func:`max_unpool`.
    """
    fn = "pool"
    if mode not in _MODES or isinstance(mode, bool):
        raise ValueError(
            f"{fn}: mode must be 0 (max), 1 (average counting padding) or 2 (average excluding "
            f"padding), got {mode!r}"
        )
    geom = pool_geometry(fn, x, window, padding, stride)
    if return_indices and mode != 0:
        raise ValueError(f"{fn}: return_indices needs max pooling (mode=0), got mode={mode}")
    if mode != 0:
        return _avg_pool(x, geom=geom, count_padding=mode == 1)
    if not return_indices:
        return _max_pool(x, geom=geom)
    if isinstance(x, Tensor) and x.requires_grad and is_grad_enabled():
        y = _max_pool(x, geom=geom)
        switches = y._saved  # the switches the backward pass will use
    else:
        out, switches = _max_pool.__wrapped__(_value(x), geom=geom)
        y = Tensor(out) if isinstance(x, Tensor) else out
    return y, switches.indices()


@primitive
def _plane_put(x, indices=None, plane=None):
    """Zeros of (N, C, *plane) with x written at the flat per-plane ``indices``."""
    xp = array_namespace(x)
    n, c = x.shape[:2]
    out = xp.zeros((n, c, math.prod(plane)), dtype=x.dtype)
    xp.put_along_axis(out, indices.reshape(n, c, -1), x.reshape(n, c, -1), axis=2)
    return out.reshape((n, c) + tuple(plane))


@primitive
def _plane_take(x, indices=None):
    """x (N, C, *plane) read at the flat per-plane ``indices`` (N, C, *O)."""
    xp = array_namespace(x)
    n, c = x.shape[:2]
    got = xp.take_along_axis(x.reshape(n, c, -1), indices.reshape(n, c, -1), axis=2)
    return got.reshape(indices.shape)


@primitive
def _plane_add(x, indices=None, plane=None):
    """Zeros of (N, C, *plane) with x added at ``indices`` (repeats accumulate; bincount, not add.at)."""
    xp = array_namespace(x)
    n, c = x.shape[:2]
    size = math.prod(plane)
    base = (xp.arange(n * c, dtype=np.int64) * size).reshape(n, c, 1)
    flat = (indices.reshape(n, c, -1) + base).reshape(-1)
    total = xp.bincount(flat, weights=x.reshape(-1), minlength=n * c * size)
    return total.astype(x.dtype).reshape((n, c) + tuple(plane))


# Writing keeps the last of repeated indices; the gradient is the read-back at every index (as in
# PyTorch). Repeats arise only from overlapping windows.
_plane_put.defvjp(lambda g, ans, x, indices=None, plane=None: _plane_take(g, indices=indices))
_plane_take.defvjp(lambda g, ans, x, indices=None: _plane_add(g, indices=indices, plane=x.shape[2:]))
_plane_add.defvjp(lambda g, ans, x, indices=None, plane=None: _plane_take(g, indices=indices))


def max_unpool(x, indices, window=2, stride=None, padding=0, output_size=None):
    """Place each value of ``x`` at its recorded position, zeros elsewhere: the inverse of max pooling.

    ``indices`` come from ``pool(..., return_indices=True)``; ``window``, ``stride`` and
    ``padding`` are those of that pool call. The output spatial size is (O - 1) S - 2P + W unless
    ``output_size`` (spatial sizes, or a full shape) says otherwise — needed when the pooled input
    had a size the windows did not cover exactly. As ``torch.nn.functional.max_unpool2d``.
    """
    fn = "max_unpool"
    shape = _value(x).shape
    if len(shape) not in (3, 4, 5):
        raise ValueError(
            f"{fn}: x must be (N, C, *spatial) with 1 to 3 spatial dimensions, got shape {shape}"
        )
    nd = len(shape) - 2
    window = per_axis(window, nd, "window", fn, 1)
    stride = window if stride is None else per_axis(stride, nd, "stride", fn, 1)
    padding = per_axis(padding, nd, "padding", fn, 0)
    if output_size is None:
        plane = tuple((o - 1) * s - 2 * p + w for o, s, p, w in zip(shape[2:], stride, padding, window))
    else:
        plane = tuple(int(s) for s in output_size)[-nd:]
        if len(tuple(output_size)) not in (nd, nd + 2):
            raise ValueError(f"{fn}: output_size {tuple(output_size)} must give {nd} spatial sizes")
    idx = _value(indices)
    idx = np.asarray(idx) if not hasattr(idx, "dtype") else idx
    if idx.shape != shape:
        raise ValueError(f"{fn}: indices of shape {idx.shape} do not match x of shape {shape}")
    if idx.dtype.kind not in "iu":
        raise TypeError(f"{fn}: indices must be integers, got dtype {idx.dtype}")
    size = math.prod(plane)
    # (device indices are not range-checked: reading their min and max back would stop the device)
    if idx.size and type(idx) is np.ndarray and (int(idx.min()) < 0 or int(idx.max()) >= size):
        bad = int(idx.min()) if int(idx.min()) < 0 else int(idx.max())
        raise ValueError(
            f"{fn}: index {bad} is outside an output plane of size {plane} ({size} positions); "
            "pass output_size= if the pooled input was larger"
        )
    return _plane_put(x, indices=idx, plane=plane)


def global_avg_pool(x, keepdims=False):
    """Mean over all spatial positions: (N, C, *spatial) -> (N, C) (or (N, C, 1, ...) with keepdims)."""
    from .reduce import mean

    shape = _value(x).shape
    if len(shape) < 3:
        raise ValueError(f"global_avg_pool: x must be (N, C, *spatial), got shape {shape}")
    return mean(x, axis=tuple(range(2, len(shape))), keepdims=keepdims)


def global_max_pool(x, keepdims=False):
    """Maximum over all spatial positions: (N, C, *spatial) -> (N, C) (or (N, C, 1, ...) with keepdims).

    The gradient goes to the first maximal position, as with :func:`pool`.
    """
    from .shape import reshape

    shape = _value(x).shape
    if len(shape) not in (3, 4, 5):
        raise ValueError(f"global_max_pool: x must be (N, C, *spatial), got shape {shape}")
    y = pool(x, window=tuple(shape[2:]))
    return y if keepdims else reshape(y, tuple(shape[:2]))


def lp_pool(x, p, window=2, stride=None):
    """Power-average (LP) pooling: ``(sum of x^p over each window)^(1/p)``, PyTorch's ``lp_pool1d/2d/3d``.

    ``p = 1`` is sum pooling (average pooling times the window size), ``p = 2`` the window's L2
    norm, and as ``p`` grows it tends to max pooling (of ``|x|`` for even ``p``). ``x`` is (N, C,
    *spatial); ``window`` and ``stride`` (default: the window) as in :func:`pool`, no padding. As in
    PyTorch, a non-integer ``p`` needs non-negative inputs (a negative base is NaN), and a window of
    zeros has an infinite gradient for ``p > 1``. Built from differentiable ops (power, average
    pooling), which give its gradient.
    """
    from .elementwise import mul, pow

    fn = "lp_pool"
    if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)) or not (
        0 < p < math.inf
    ):
        raise ValueError(f"{fn}: p must be a finite number > 0, got {p!r}")
    geom = pool_geometry(fn, x, window, 0, stride)
    p = float(p)
    powered = x if p == 1 else pow(x, p)
    sums = mul(_avg_pool(powered, geom=geom, count_padding=True), float(math.prod(geom.window)))
    return sums if p == 1 else pow(sums, 1.0 / p)
