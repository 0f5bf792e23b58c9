"""Convolution (Knet's ``conv4``) and its transpose (``deconv4``) for 1-D, 2-D and 3-D inputs.

Layout is batch-first, channels-second: x is (N, C_in, *spatial), the filter w is
(C_out, C_in / groups, *kernel), as in PyTorch. ``mode=0`` (Knet's default) is true convolution,
the kernel flipped along every spatial axis; ``mode=1`` is cross-correlation (what PyTorch and
Keras call convolution). Bias is not part of the op: add it, ``conv4(w, x) + b`` with b shaped
(1, C_out, 1, 1).

Three primitives carry the computation, and each one's VJPs are the other two, so gradients of
any order stay fast:

- ``_conv(w, x)``: the convolution y = C_w(x);
- ``_conv_transpose(w, y)``: its adjoint in x, C_w^T(y) (also ``deconv4``);
- ``_conv_filter_grad(x, gy)``: its adjoint in w, the filter gradient.

They compute with large GEMMs over windows gathered channels-last (see :mod:`knetpy.ops.im2col`);
results come back as (N, C, *spatial) views of channels-last memory. ``conv4_bias`` fuses the bias
(and optionally relu) into the convolution, for the layers. :mod:`knetpy.ops.conv_reference` holds
the direct, slow definitions all of these are tested against.

With numba installed (the ``[fast]`` extra), 2-D NumPy convolutions run part of their glue compiled
(:mod:`knetpy.ops.fast.conv`: col2im for the input gradient, bias + relu, relu's gradient); the NumPy
code here stays the reference they are tested against, and the path taken with ``KNETPY_FAST=0``.

Float32 2-D convolutions with 3x3 or 5x5 kernels and stride 1 take Winograd's algorithm instead
(:mod:`knetpy.ops.winograd`, where :func:`winograd.plan` says which: with its compiled transforms at any
thread count, without them with knetpy's threads off), all three primitives alike; a convolution's
backward pass then makes both gradients in one pass (:func:`_winograd_filter_grad`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .. import parallel
from ..autograd import Tensor, primitive
from ..backend import array_namespace
from . import fast, recycle, winograd
from .buffer_pool import give
from .im2col import (
    WindowGather,
    col2im_into,
    from_channels_last,
    pad_channels_last,
    to_channels_last,
    weight_by_offset,
    weight_from_matrix,
    weight_matrix,
)
from .reduce import sum as _sum
from .shape import sum_rows, wide_rows


class ConvGeometry(NamedTuple):
    """Everything about a convolution except the arrays: per-axis tuples, ``groups`` and ``flip``."""

    padding: tuple
    stride: tuple
    dilation: tuple
    groups: int
    flip: bool  # True for mode 0 (true convolution)

    def output_size(self, in_spatial, kernel):
        """1 + floor((X + 2P - D(W-1) - 1) / S) per axis."""
        return tuple(
            1 + (x + 2 * p - d * (k - 1) - 1) // s
            for x, k, p, s, d in zip(in_spatial, kernel, self.padding, self.stride, self.dilation)
        )

    def transpose_size(self, in_spatial, kernel, output_padding):
        """(X - 1) S - 2P + D(W - 1) + output_padding + 1 per axis: the size deconv4 produces."""
        return tuple(
            (x - 1) * s - 2 * p + d * (k - 1) + op + 1
            for x, k, p, s, d, op in zip(
                in_spatial, kernel, self.padding, self.stride, self.dilation, output_padding
            )
        )


# -- argument checking (done once, at the public functions) ---------------------------------------------
def _value(x):
    return x.value if isinstance(x, Tensor) else x


def per_axis(value, nd, name, fn, minimum):
    """An int or a length-``nd`` sequence of ints -> a tuple of ``nd`` ints, each >= ``minimum``."""
    if isinstance(value, (list, tuple)):
        if len(value) != nd:
            raise ValueError(f"{fn}: {name} has {len(value)} entries for {nd} spatial dimensions: {value}")
        out = tuple(value)
    else:
        out = (value,) * nd
    for v in out:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{fn}: {name} must be an int or a tuple of ints, got {value!r}")
        if int(v) < minimum:
            raise ValueError(f"{fn}: {name} must be >= {minimum} in every dimension, got {value!r}")
    return tuple(int(v) for v in out)


def _check_mode(mode, fn):
    if mode not in (0, 1) or isinstance(mode, bool):
        raise ValueError(
            f"{fn}: mode must be 0 (convolution, kernel flipped) or 1 (cross-correlation), got {mode!r}"
        )


def _check_floating(fn, w, x):
    wd, xd = _value(w).dtype, _value(x).dtype
    for name, dt in (("w", wd), ("x", xd)):
        if dt.kind != "f":
            raise TypeError(f"{fn}: {name} must be a floating array, got dtype {dt}")
    if wd != xd:
        raise TypeError(
            f"{fn}: w has dtype {wd} but x has dtype {xd}; convert one (e.g. x.astype({str(wd)!r}))"
        )


def _geometry(fn, w, x, padding, stride, dilation, mode, groups):
    """Check shapes and options of conv4/deconv4; returns (geometry, number of spatial dims)."""
    ws, xs = _value(w).shape, _value(x).shape
    if len(ws) not in (3, 4, 5):
        raise ValueError(
            f"{fn}: w must be (C_out, C_in/groups, *kernel) with 1 to 3 kernel dimensions, got shape {ws}"
        )
    nd = len(ws) - 2
    if len(xs) != nd + 2:
        raise ValueError(
            f"{fn}: a {nd}-D kernel (w of shape {ws}) needs x of shape (N, C, {', '.join('XYZ'[:nd])}), "
            f"got x of shape {xs}"
        )
    _check_floating(fn, w, x)
    _check_mode(mode, fn)
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"{fn}: groups must be a positive int, got {groups!r}")
    if ws[0] % groups:
        raise ValueError(f"{fn}: w has {ws[0]} output channels (axis 0), not divisible by groups={groups}")
    if any(k < 1 for k in ws[2:]):
        raise ValueError(f"{fn}: w has an empty kernel, shape {ws}")
    geom = ConvGeometry(
        per_axis(padding, nd, "padding", fn, 0),
        per_axis(stride, nd, "stride", fn, 1),
        per_axis(dilation, nd, "dilation", fn, 1),
        groups,
        mode == 0,
    )
    return geom, nd


def _conv_geometry_checked(fn, w, x, padding, stride, dilation, mode, groups):
    """The geometry of a conv4 call, after checking channels and sizes."""
    geom, _ = _geometry(fn, w, x, padding, stride, dilation, mode, groups)
    ws, xs = _value(w).shape, _value(x).shape
    if xs[1] != ws[1] * groups:
        need = ws[1] * groups
        extra = f" ({ws[1]} per group x groups={groups})" if groups > 1 else ""
        raise ValueError(f"{fn}: x has {xs[1]} channels (axis 1) but w of shape {ws} expects {need}{extra}")
    for axis, (size, k, p, d) in enumerate(zip(xs[2:], ws[2:], geom.padding, geom.dilation)):
        reach = d * (k - 1) + 1
        if size + 2 * p < reach:
            raise ValueError(
                f"{fn}: the kernel spans {reach} along spatial axis {axis} (size {k}, dilation {d}) but "
                f"the padded input has only {size + 2 * p} (size {size} + 2 x padding {p})"
            )
    return geom


# -- the three primitives ---------------------------------------------------------------------------------
class _Saved:
    """What a forward convolution keeps for its backward pass: the gathered windows (whose pooled
    buffer goes back when the tape drops this object) or Winograd's input tiles, for the fused op
    the gradient before the activation once computed, and the input gradient that the filter
    gradient's Winograd pass made beside it (:func:`_winograd_filter_grad`), for the input's VJP."""

    __slots__ = ("cols", "buffer", "grad_source", "pre_grad", "tiles", "input_grad")

    def __init__(self, cols, buffer, tiles=None):
        self.cols = cols
        self.buffer = buffer
        self.grad_source = None
        self.pre_grad = None
        self.tiles = tiles
        self.input_grad = None

    def __del__(self):
        try:
            if self.buffer is not None:
                recycle.release(self.buffer)
        except Exception:  # interpreter shutdown: module globals may already be gone
            pass


def _conv_matrix(w, x, geom, out_spatial, epilogue=None):
    """The convolution as a contiguous (N*L, C_out) matrix, what to save, and the output size.

    Per part of the batch (one per knetpy thread): gather the windows, one GEMM, then
    ``epilogue(rows, a, b)`` (bias, activation, pooling) on that part's rows, those of samples a..b-1,
    while they are still in cache.
    """
    kernel = w.shape[2:]
    if out_spatial is None:
        out_spatial = geom.output_size(x.shape[2:], kernel)
    tiling = winograd.plan(w.shape, geom, out_spatial, w, x)
    if tiling is not None:
        y = recycle.empty(np, (x.shape[0] * math.prod(out_spatial), w.shape[0]), x.dtype)
        tiles = winograd.conv_rows(w, to_channels_last(x), tiling, geom.flip, y, epilogue, keep=True)
        return y, _Saved(None, None, tiles), out_spatial
    g = geom.groups
    gather = _window_gather(x, geom, kernel, out_spatial)
    wm = weight_matrix(w, g, geom.flip)
    xp = array_namespace(x, wm)
    n = x.shape[0]
    per_sample = gather.per_sample
    y = recycle.empty(xp, (n * per_sample, w.shape[0]), xp.result_type(x, wm))
    buffer = cols = None
    if not _streaming(xp):  # all windows at once, kept for the filter gradient
        buffer = gather.buffer(n)
        cols = gather.cols(buffer, n)

    def chunks(lo, hi):
        if cols is not None:
            gather.fill(buffer, lo, hi, lo)
            yield lo, hi, cols[lo * per_sample : hi * per_sample]
        else:
            yield from _window_chunks(gather, lo, hi)

    def gemm(cols, rows):
        if g == 1:
            xp.matmul(cols.reshape(rows.shape[0], cols.shape[-1]), wm[0], out=rows)  # no -1: 0 rows is valid
        else:
            # (G, rows, C_out/G) per group, then interleaved into the rows
            rows.reshape(-1, g, w.shape[0] // g)[...] = xp.matmul(cols.transpose(1, 0, 2), wm).transpose(1, 0, 2)

    def part(lo, hi):
        for a, b, chunk_cols in chunks(lo, hi):
            rows = y[a * per_sample : b * per_sample]
            gemm(chunk_cols, rows)
            if epilogue is not None:
                epilogue(rows, a, b)

    def whole():  # where automatic threads leave the op on one core: as with the threads off
        nonlocal buffer, cols
        buffer = gather.buffer(n)
        cols = gather.cols(buffer, n)
        part(0, n)

    parallel.for_rows(part, n, n * gather.width, xp, whole=whole if cols is None else None)
    return y, _Saved(cols, buffer), out_spatial


# With knetpy's threads on, each thread streams its samples' windows through a small buffer, a few
# samples at a time, instead of gathering all of them into one large matrix: the copy and its GEMM
# stay in cache, and the filter gradient gathers the windows again from the (much smaller) input
# instead of reading a saved matrix back from memory (LeNet: about 5% faster per batch). Without
# knetpy's threads the GEMMs run on BLAS's threads, which want one large GEMM instead.
STREAM_WINDOWS = True
CHUNK_BYTES = 1 << 19


def _streaming(xp):
    return STREAM_WINDOWS and xp is np and parallel.get_num_threads() > 1


def _window_chunks(gather, lo, hi):
    """(a, b, cols) for consecutive runs a..b-1 of samples lo..hi-1: their gathered windows, a few
    samples (about CHUNK_BYTES) at a time, in one reused pooled buffer."""
    m = max(1, min(hi - lo, CHUNK_BYTES // (gather.width * np.dtype(gather.dtype).itemsize)))
    buffer = gather.buffer(m)
    try:
        for a in range(lo, hi, m):
            b = min(hi, a + m)
            gather.fill(buffer, a, b, 0)
            yield a, b, gather.cols(buffer, m)[: (b - a) * gather.per_sample]
    finally:
        give(buffer)


@primitive(saves=True)
def _conv(w, x, geom=None, out_spatial=None):
    """Forward convolution on raw arrays; saves the gathered windows for the filter gradient."""
    y, saved, out_spatial = _conv_matrix(w, x, geom, out_spatial)
    return from_channels_last(y.reshape(x.shape[0], *out_spatial, w.shape[0])), saved


@primitive
def _conv_transpose(w, y, geom=None, in_spatial=None):
    """C_w^T(y): scatter each output position's contribution back over its input window."""
    tiling = winograd.plan(w.shape, geom, y.shape[2:], w, y)
    if tiling is not None and geom.output_size(in_spatial, w.shape[2:]) == y.shape[2:]:
        dx = recycle.empty(np, (y.shape[0], *in_spatial, w.shape[1]), y.dtype)
        winograd.conv_transpose(w, to_channels_last(y), tiling, geom.flip, dx)
        return from_channels_last(dx)
    if _fast_ok(geom, w, y):
        return _fast_conv_transpose(w, y, geom, in_spatial)
    n, cout, *out_spatial = y.shape
    g = geom.groups
    kernel = w.shape[2:]
    per_sample = math.prod(out_spatial)
    rows = n * per_sample
    gy = to_channels_last(y).reshape(rows, g, cout // g)
    # One GEMM per kernel position (batched): blocks[k] = gy @ w[:, :, k]  -> (K, G, N*L, Cg).
    wk = weight_by_offset(w, g, geom.flip)
    xp = array_namespace(gy, wk)
    dt = xp.result_type(gy, wk)
    blocks = recycle.take_buffer(xp, (wk.shape[0], g, rows, wk.shape[-1]), dt)
    padded = tuple(s + 2 * p for s, p in zip(in_spatial, geom.padding))
    full = recycle.empty(xp, (n, *padded, g, wk.shape[-1]), dt)

    def part(lo, hi):  # samples lo..hi-1: their GEMM rows, then their slice of the result
        r = slice(lo * per_sample, hi * per_sample)
        xp.matmul(gy[r].transpose(1, 0, 2)[None], wk, out=blocks[:, :, r])
        col2im_into(full[lo:hi], blocks[:, :, r], kernel, geom.stride, geom.dilation, out_spatial)

    parallel.for_rows(part, n, blocks.size, xp)
    give(blocks)
    full = full.reshape(n, *padded, g * wk.shape[-1])
    crop = (slice(None),) + tuple(slice(p, p + s) for p, s in zip(geom.padding, in_spatial))
    return from_channels_last(full[crop])


# -- compiled glue (numba) for 2-D convolutions, with the NumPy code above as the reference -----------------------


def _fast_arrays(*arrays):
    """Whether the compiled kernels are on and take these arrays: NumPy, float32 or float64."""
    return fast.enabled() and all(type(a) is np.ndarray and a.dtype in fast.FLOATS for a in arrays)


def _fast_ok(geom, *arrays):
    """Whether the compiled kernels take this convolution: 2-D, one group, :func:`_fast_arrays`."""
    return geom.groups == 1 and all(a.ndim == 4 for a in arrays) and _fast_arrays(*arrays)


def _window_gather(x, geom, kernel, out_spatial):
    """The windows of x for the GEMM: :class:`_PaddedGather` for a padded 2-D convolution the compiled
    kernels take, else :class:`WindowGather` over the padded channels-last copy."""
    if any(geom.padding) and x.shape[1] > 1 and _fast_ok(geom, x):
        return _PaddedGather(x, geom, kernel, out_spatial)
    return WindowGather(pad_channels_last(x, geom.padding), kernel, geom.stride, geom.dilation, out_spatial,
                        geom.groups)


class _PaddedGather:
    """:class:`WindowGather`'s interface (2-D, one group, more than one channel) over the unpadded
    channels-last input: a compiled loop copies each window and writes the padding's zeros itself, so
    the padded copy of the input is never made (ResNet's 3x3 layers: 30-40% less time than padding
    and a strided copy). The rows are the same, element for element."""

    kernel_major = False
    groups = 1
    xp = np

    def __init__(self, x, geom, kernel, out_spatial):
        self.x = to_channels_last(x)
        self.dtype = x.dtype
        self.cg = x.shape[1]
        self.kernel, self.out_spatial = tuple(kernel), tuple(out_spatial)
        self.per_sample = math.prod(out_spatial)
        self.args = (*kernel, *geom.stride, *geom.dilation, *geom.padding)

    @property
    def width(self):
        return self.per_sample * math.prod(self.kernel) * self.cg

    def buffer(self, m):
        return recycle.take_buffer(np, (m, *self.out_spatial, math.prod(self.kernel) * self.cg), self.dtype)

    def fill(self, buffer, lo, hi, at=0):
        from .fast.conv import im2col2d

        im2col2d(self.x, buffer, lo, hi, at, *self.args)

    def cols(self, buffer, m):
        return buffer.reshape(m * self.per_sample, 1, buffer.shape[-1])


def _fast_conv_transpose(w, y, geom, in_spatial):
    """C_w^T(y) as one GEMM into window rows (gy @ W^T: K*C_in wide, which BLAS runs well) and a
    compiled col2im, a few samples at a time per thread so that the rows stay in cache."""
    from .fast.conv import col2im2d

    n, cout, oh, ow = y.shape
    kernel = w.shape[2:]
    per_sample = oh * ow
    gy = to_channels_last(y).reshape(n * per_sample, cout)
    wt = weight_matrix(w, 1, geom.flip)[0].T  # (C_out, K*C_in), a transposed view BLAS reads as it is
    dt = np.result_type(gy, wt)
    width = per_sample * wt.shape[1]
    dx = recycle.empty(np, (n, *in_spatial, w.shape[1]), dt)
    # a few samples at a time, with or without knetpy's threads: their rows stay in cache between the
    # GEMM and col2im (LeNet's second layer, one knetpy thread: 4.7 ms against 8.3 for one GEMM over the
    # batch of 100 and then col2im)
    m = max(1, CHUNK_BYTES // (width * dt.itemsize))
    args = (oh, ow, *kernel, *geom.stride, *geom.dilation, *geom.padding)

    def part(lo, hi):
        buffer = recycle.take_buffer(np, (min(m, hi - lo) * per_sample, wt.shape[1]), dt)
        try:
            for a in range(lo, hi, m):
                b = min(hi, a + m)
                cols = buffer[: (b - a) * per_sample]
                np.matmul(gy[a * per_sample : b * per_sample], wt, out=cols)
                col2im2d(cols, dx[a:b], *args)
        finally:
            give(buffer)

    parallel.for_rows(part, n, n * width)
    return from_channels_last(dx)


@primitive
def _conv_filter_grad(x, gy, geom=None, kernel=None):
    """The gradient of <C_w(x), gy> with respect to w, shaped like w."""
    return _filter_grad_raw(x, gy, geom, kernel)


def _filter_grad_raw(x, gy, geom, kernel, cols=None):
    xp = array_namespace(x, gy)
    n, cout, *out_spatial = gy.shape
    tiling = winograd.plan((cout, x.shape[1], *kernel), geom, out_spatial, x, gy) if cols is None else None
    if tiling is not None:
        return winograd.filter_grad(to_channels_last(x), to_channels_last(gy), tiling, geom.flip)
    g = geom.groups
    grad_out = to_channels_last(gy).reshape(-1, g, cout // g)

    def product(cols, go):
        if g == 1:
            # explicit sizes, not -1, which is ambiguous for an empty batch
            rows = go.shape[0]
            return parallel.matmul(cols.reshape(rows, cols.shape[-1]).T, go.reshape(rows, go.shape[-1]))[None]
        return xp.matmul(cols.transpose(1, 2, 0), go.transpose(1, 0, 2))

    if cols is not None:
        return weight_from_matrix(product(cols, grad_out), kernel, geom.flip)
    gather = _window_gather(x, geom, kernel, out_spatial)

    def at_once():  # every window at once, one large GEMM (zeros for an empty batch)
        buffer = gather.buffer(n)
        gather.fill(buffer, 0, n)
        sums[0] = product(gather.cols(buffer, n), grad_out)
        give(buffer)

    L = gather.per_sample

    def part(lo, hi):  # this part's samples, a few at a time; their products summed
        total = None
        for a, b, chunk_cols in _window_chunks(gather, lo, hi):
            term = product(chunk_cols, grad_out[a * L : b * L])
            total = term if total is None else xp.add(total, term, out=total)
        sums[lo] = total

    sums = {}
    if not _streaming(xp) or n == 0:
        at_once()
    else:
        parallel.for_rows(part, n, n * gather.width, xp, whole=at_once)
    wm = None
    for lo in sorted(sums):
        wm = sums[lo] if wm is None else wm + sums[lo]
    return weight_from_matrix(wm, kernel, geom.flip)


def _winograd_filter_grad(saved, w, x, gy, geom, prologue=None):
    """The filter gradient by Winograd's algorithm when the forward pass took it (None otherwise), made
    in one pass with the input gradient, which waits in ``saved`` for :func:`_input_grad`: the two
    share the output gradient's tiles, and the forward pass's input tiles are used again.

    The input's VJP runs right after the filter's on the same node (when the input needs a gradient
    at all: a first layer's does not, and then the input gradient is made for nothing; such layers
    have few channels and do not take Winograd's path).

    ``prologue(lo, hi)`` makes gy's samples lo..hi-1 inside the pass (:func:`winograd.backward`); gy's
    values are read only after it, and not at all when None is returned."""
    if saved.tiles is None or isinstance(gy, Tensor) or isinstance(x, Tensor):
        return None
    kernel = w.shape[2:]
    tiling = winograd.plan((gy.shape[1], x.shape[1], *kernel), geom, gy.shape[2:], x, gy, w)
    if tiling is None:
        return None
    gyl = to_channels_last(gy)
    if prologue is not None and not np.may_share_memory(gyl, gy):  # a copy would not see what the prologue writes
        return None
    dx = recycle.empty(np, (x.shape[0], *x.shape[2:], x.shape[1]), x.dtype)
    dw = winograd.backward(w, to_channels_last(x), gyl, tiling, geom.flip, dx, saved.tiles, prologue)
    saved.input_grad = (gy, from_channels_last(dx))
    return dw


def _input_grad(saved, w, x, gy, geom):
    """The input gradient: the one :func:`_winograd_filter_grad` made for this ``gy``, else its own op."""
    made = saved.input_grad
    if made is not None and made[0] is gy:
        saved.input_grad = None
        return made[1]
    return _conv_transpose(w, gy, geom=geom, in_spatial=x.shape[2:])


def _conv_vjp_w(g, ans, saved, w, x, geom=None, out_spatial=None):
    if isinstance(g, Tensor) or isinstance(x, Tensor):  # recording: stay on the graph
        return _conv_filter_grad(x, g, geom=geom, kernel=w.shape[2:])
    dw = _winograd_filter_grad(saved, w, x, g, geom)
    return _filter_grad_raw(x, g, geom, w.shape[2:], saved.cols) if dw is None else dw


_conv.defvjp(
    _conv_vjp_w,
    lambda g, ans, saved, w, x, geom=None, out_spatial=None: _input_grad(saved, w, x, g, geom),
)
_conv_transpose.defvjp(
    lambda g, ans, w, y, geom=None, in_spatial=None: _conv_filter_grad(g, y, geom=geom, kernel=w.shape[2:]),
    lambda g, ans, w, y, geom=None, in_spatial=None: _conv(w, g, geom=geom, out_spatial=y.shape[2:]),
)
_conv_filter_grad.defvjp(
    lambda g, ans, x, gy, geom=None, kernel=None: _conv_transpose(g, gy, geom=geom, in_spatial=x.shape[2:]),
    lambda g, ans, x, gy, geom=None, kernel=None: _conv(g, x, geom=geom, out_spatial=gy.shape[2:]),
)


# -- convolution + bias (+ relu) as one op, for the layers ---------------------------------------------------------
def _add_bias_rows(y, b):
    """y (rows, C) += b (C,), in place."""
    k = wide_rows(*y.shape)
    y.reshape(-1, k * y.shape[1])[...] += array_namespace(b).tile(b, k)


def _bias_act(x, b, relu):
    """The epilogue adding ``b`` (then relu) to a convolution's GEMM rows, in place."""
    xp = array_namespace(x, b)
    fused = _fast_arrays(x, b) and b.dtype == x.dtype
    if fused:
        from .fast.conv import bias_relu

    def bias_act(rows, *_):
        if fused:  # one pass instead of two
            bias_relu(rows, b, relu)
            return
        _add_bias_rows(rows, b)
        if relu:
            xp.maximum(rows, 0, out=rows)

    return bias_act


@primitive(saves=True)
def _conv_bias_act(w, x, b, geom=None, relu=False):
    y, saved, out_spatial = _conv_matrix(w, x, geom, None, _bias_act(x, b, relu))
    return from_channels_last(y.reshape(x.shape[0], *out_spatial, w.shape[0])), saved


def _pre_activation_grad(g, ans, saved, relu):
    """g times the activation's slope: computed once per backward pass and shared by the three VJPs."""
    if isinstance(g, Tensor):  # recording (higher order): build it on the graph
        return g * (ans > 0) if relu else g
    if saved.grad_source is not g:
        pre = to_channels_last(g)
        if relu:
            xp = array_namespace(pre)
            # a multiply: no branches, unlike where()
            act = to_channels_last(ans)
            out = recycle.empty(xp, pre.shape, pre.dtype)
            if _fast_arrays(pre, act) and pre.dtype == act.dtype:
                from .fast.conv import relu_grad

                gf, af, of = pre.reshape(-1), act.reshape(-1), out.reshape(-1)  # contiguous: flat views
                step = pre.size // max(pre.shape[0], 1)
                parallel.for_rows(
                    lambda lo, hi: relu_grad(gf[lo * step : hi * step], af[lo * step : hi * step],
                                             of[lo * step : hi * step]),
                    pre.shape[0], pre.size,
                )
            else:
                parallel.for_rows(
                    lambda lo, hi: xp.multiply(pre[lo:hi], act[lo:hi] > 0, out=out[lo:hi]),
                    pre.shape[0], pre.size, xp,
                )
            pre = out
        saved.grad_source, saved.pre_grad = g, from_channels_last(pre)
    return saved.pre_grad


def _fused_vjp_w(g, ans, saved, w, x, b, geom=None, relu=False):
    pre = _pre_activation_grad(g, ans, saved, relu)
    if isinstance(pre, Tensor) or isinstance(x, Tensor):
        return _conv_filter_grad(x, pre, geom=geom, kernel=w.shape[2:])
    dw = _winograd_filter_grad(saved, w, x, pre, geom)
    return _filter_grad_raw(x, pre, geom, w.shape[2:], saved.cols) if dw is None else dw


def _fused_vjp_x(g, ans, saved, w, x, b, geom=None, relu=False):
    return _input_grad(saved, w, x, _pre_activation_grad(g, ans, saved, relu), geom)


def _fused_vjp_b(g, ans, saved, w, x, b, geom=None, relu=False):
    pre = _pre_activation_grad(g, ans, saved, relu)
    if isinstance(pre, Tensor):
        return _sum(pre, axis=(0, *range(2, pre.ndim)))
    return sum_rows(to_channels_last(pre).reshape(-1, pre.shape[1]))


_conv_bias_act.defvjp(_fused_vjp_w, _fused_vjp_x, _fused_vjp_b)


# -- public functions ----------------------------------------------------------------------------------------
def conv4(w, x, padding=0, stride=1, dilation=1, mode=0, groups=1):
    """Convolve ``x`` (N, C_in, *spatial) with filters ``w`` (C_out, C_in/groups, *kernel).

    1-D, 2-D and 3-D. ``padding``, ``stride`` and ``dilation`` are ints or per-dimension tuples;
    the output has C_out channels and spatial size 1 + floor((X + 2P - D(W-1) - 1) / S).
    ``mode=0`` flips the kernel (true convolution, Knet's default), ``mode=1`` does not
    (cross-correlation, as ``torch.nn.functional.conv2d``). ``groups`` splits the channels into
    independent convolutions. The bias is separate: ``conv4(w, x) + b``.

    The result is an (N, C_out, *out) array whose memory is channels-last (a transposed view).
    """
    return _conv(w, x, geom=_conv_geometry_checked("conv4", w, x, padding, stride, dilation, mode, groups))


def conv4_bias(w, x, b, padding=0, stride=1, dilation=1, mode=0, groups=1, relu=False):
    """``conv4(w, x, ...) + b`` (b of shape (C_out,)), then ``relu`` if asked, computed as one op.

    The bias is added to the GEMM result in place and the gradients of bias and activation come
    from one pass over the output gradient: what the convolution layers use.
    """
    geom = _conv_geometry_checked("conv4_bias", w, x, padding, stride, dilation, mode, groups)
    cout, bs, bd = _value(w).shape[0], _value(b).shape, _value(b).dtype
    if bs != (cout,):
        raise ValueError(f"conv4_bias: b must have shape ({cout},) (one per output channel), got {bs}")
    if bd != _value(w).dtype:
        raise TypeError(f"conv4_bias: b has dtype {bd} but w has dtype {_value(w).dtype}")
    return _conv_bias_act(w, x, b, geom=geom, relu=bool(relu))


def deconv4(w, x, padding=0, stride=1, dilation=1, mode=0, groups=1, output_padding=0):
    """Transposed convolution: the gradient of ``conv4`` with respect to its input.

    ``w`` has the layout of the conv4 filter whose transpose this is: (C_x, C_out/groups, *kernel),
    mapping C_out channels to C_x; here ``x`` (N, C_x, *spatial) goes the other way, to
    (N, C_out, *out) with out = (X - 1) S - 2P + D(W - 1) + output_padding + 1. Several sizes
    convolve back to the same X when S > 1; ``output_padding`` (< max(stride, dilation)) picks one.

    With ``mode=1`` this is ``torch.nn.functional.conv_transpose{1,2,3}d(x, w, ...)`` exactly (same
    weight layout); with ``mode=0`` (Knet's default, the transpose of true convolution) it equals
    that with the kernel flipped.
    """
    fn = "deconv4"
    geom, nd = _geometry(fn, w, x, padding, stride, dilation, mode, groups)
    ws, xs = _value(w).shape, _value(x).shape
    if xs[1] != ws[0]:
        raise ValueError(
            f"{fn}: x has {xs[1]} channels (axis 1) but w of shape {ws} expects {ws[0]} "
            "(w is laid out (C_x, C_out/groups, *kernel), like the conv4 filter it transposes)"
        )
    op = per_axis(output_padding, nd, "output_padding", fn, 0)
    for axis, (o, s, d) in enumerate(zip(op, geom.stride, geom.dilation)):
        if o >= max(s, d):
            raise ValueError(
                f"{fn}: output_padding {o} along spatial axis {axis} must be smaller than the stride "
                f"({s}) or the dilation ({d})"
            )
    out_spatial = geom.transpose_size(xs[2:], ws[2:], op)
    if any(o < 1 for o in out_spatial):
        raise ValueError(
            f"{fn}: input of spatial size {tuple(xs[2:])} with kernel {tuple(ws[2:])} and padding "
            f"{geom.padding} gives an empty output {out_spatial}"
        )
    return _conv_transpose(w, x, geom=geom, in_spatial=out_spatial)
