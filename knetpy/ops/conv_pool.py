"""Convolution + bias + relu + max pooling as one op: ``pool(relu(conv4(w, x) + b))``.

The forward pass keeps only what the backward pass needs: the pooled output and each window's
winner (and the convolution's gathered windows where it keeps them); the full activation goes back
to the buffer pool as soon as it is pooled. The backward pass masks the pooled gradient with relu's
slope at the winners (``g * (pooled > 0)``: the winner's activation is the pooled value) and scatters
it straight into the gradient before the activation, one pass over the small pooled array instead
of a second one over the full activation. The results equal the three ops run one after another bit
for bit: the same multiplications by 0 or 1, in the same places. With the compiled kernels (2-D, NumPy)
each thread's rows are pooled right after their GEMM, while they are still in cache. A first layer (at
most ``PLANES_MAX_CHANNELS`` input channels, kernels up to ``PLANES_MAX_KERNEL``, stride 1) runs on
planes instead (:mod:`knetpy.ops.fast.conv_planes`), its windows never gathered: with 2x2 pooling of
stride 2, its forward pass sums each pooling window's four outputs straight from the input's four
phases (row and column parity), and its filter and bias gradients come from the pooled gradient
scattered into filter-major planes, one sample at a time, while they are in cache. Those results
differ from the three ops' by rounding; so do the winners and relu's zeros where two outputs of a
window, or an output and 0, are within rounding of each other.

What :class:`knetpy.Sequential` runs for a ``Conv2D(..., activation='relu')`` directly followed by
``MaxPool2D``.
"""

from __future__ import annotations

import math
import types

import numpy as np

from .. import parallel
from ..autograd import Tensor, primitive
from . import fast, recycle
from .buffer_pool import give
from .conv import (
    _bias_act,
    _conv_filter_grad,
    _conv_geometry_checked,
    _conv_matrix,
    _filter_grad_raw,
    _input_grad,
    _winograd_filter_grad,
)
from .conv import _Saved as _ConvSaved
from .im2col import empty_like_layout, from_channels_last, to_channels_last
from .pool import FAST_MIN_CHANNELS, _fast_ok, _max_windows, _nhwc, _switch_scatter, _Switches, pool_geometry
from .reduce import sum as _sum
from .shape import sum_rows


class _Saved:
    """The convolution's saved windows, the pooling's switches, and the gradient before the
    activation once computed (shared by the three VJPs)."""

    __slots__ = ("conv", "switches", "grad_source", "pre_grad", "bias_grad")

    def __init__(self, conv, switches):
        self.conv, self.switches = conv, switches
        self.grad_source = self.pre_grad = None
        self.bias_grad = None  # (g, db) when the filter's VJP made the bias gradient beside its own


@primitive(saves=True)
def _conv_relu_pool(w, x, b, geom=None, pool=None):
    n, cout = x.shape[0], w.shape[0]
    out_spatial = geom.output_size(x.shape[2:], w.shape[2:])
    pooled_spatial = pool.output_size(out_spatial)
    made = _planes_forward(w, x, b, geom, pool, out_spatial, pooled_spatial)
    if made is not None:
        return made
    bias_relu = _bias_act(x, b, True)
    if cout >= FAST_MIN_CHANNELS and _fast_ok(x, w) and type(b) is np.ndarray and b.dtype == x.dtype:
        # compiled: each part's rows pooled right after their GEMM, while they are in cache
        from .fast.pool import max_pool2d

        pooled = recycle.empty(np, (n, *pooled_spatial, cout), x.dtype)
        code = recycle.empty(np, pooled.shape, np.uint8 if math.prod(pool.window) < 256 else np.int32)
        args = (*pool.window, *pool.stride, *pool.padding)

        def epilogue(rows, lo, hi):
            bias_relu(rows)
            max_pool2d(rows.reshape(hi - lo, *out_spatial, cout), pooled[lo:hi], code[lo:hi], *args)

        rows, conv_saved, _ = _conv_matrix(w, x, geom, out_spatial, epilogue)
        act = from_channels_last(rows.reshape(n, *out_spatial, cout))
        pooled, switches = from_channels_last(pooled), _Switches(from_channels_last(code), pool, act.shape, act)
    else:
        rows, conv_saved, _ = _conv_matrix(w, x, geom, out_spatial, bias_relu)
        act = from_channels_last(rows.reshape(n, *out_spatial, cout))
        pooled, switches = _max_windows(act, pool, pooled_spatial)
    # the switches need the activation's layout, not its values: a tiny stand-in lets it go
    switches.like = empty_like_layout(act, (1, cout) + (2,) * (act.ndim - 2))
    return pooled, _Saved(conv_saved, switches)


def _pre_activation_grad(g, ans, saved):
    if isinstance(g, Tensor) or isinstance(ans, Tensor):  # recording (higher order): on the graph
        return _switch_scatter(g * (ans > 0), switches=saved.switches)
    if saved.grad_source is not g:
        saved.grad_source, saved.pre_grad = g, saved.switches.scatter_relu(g, ans)
    return saved.pre_grad


def _winograd_grads_from_pooled(g, ans, saved, w, x, geom):
    """The filter gradient (and the input gradient beside it) by Winograd's one-pass backward, with the
    pooling's compiled scatter of ``g`` run inside each of its parts on their own samples, instead of as
    an op of its own before it; or None where either does not apply (then nothing was computed)."""
    if isinstance(g, Tensor) or isinstance(ans, Tensor) or isinstance(x, Tensor) or saved.grad_source is g:
        return None
    if saved.conv.tiles is None:  # (the forward pass took another path)
        return None
    made = saved.switches.scatter_relu_parts(g, ans)
    if made is None:
        return None
    pre, fill = made
    dw = _winograd_filter_grad(saved.conv, w, x, pre, geom, prologue=fill)
    if dw is None:
        return None
    saved.grad_source, saved.pre_grad = g, pre
    return dw


def _vjp_w(g, ans, saved, w, x, b, geom=None, pool=None):
    made = _planes_grads(g, ans, saved, w, x, geom, pool)
    if made is not None:
        saved.bias_grad = (g, made[1])
        return made[0]
    dw = _winograd_grads_from_pooled(g, ans, saved, w, x, geom)
    if dw is not None:
        return dw
    pre = _pre_activation_grad(g, ans, saved)
    if isinstance(pre, Tensor) or isinstance(x, Tensor):
        return _conv_filter_grad(x, pre, geom=geom, kernel=w.shape[2:])
    dw = _winograd_filter_grad(saved.conv, w, x, pre, geom)
    return _filter_grad_raw(x, pre, geom, w.shape[2:], saved.conv.cols) if dw is None else dw


def _vjp_x(g, ans, saved, w, x, b, geom=None, pool=None):
    return _input_grad(saved.conv, w, x, _pre_activation_grad(g, ans, saved), geom)


def _vjp_b(g, ans, saved, w, x, b, geom=None, pool=None):
    made = saved.bias_grad
    if made is not None and made[0] is g:
        saved.bias_grad = None
        return made[1]
    pre = _pre_activation_grad(g, ans, saved)
    if isinstance(pre, Tensor):
        return _sum(pre, axis=(0, *range(2, pre.ndim)))
    return sum_rows(to_channels_last(pre).reshape(-1, pre.shape[1]))


# -- first layers on planes (compiled): the forward pass, and the filter and bias gradients ----------------------
#: The planes' path takes convolutions with at most this many input channels and kernels at most
#: PLANES_MAX_KERNEL wide and high. There the GEMM over gathered windows has a small result summed over
#: very many rows, which BLAS runs far below its peak. The fused op's forward and backward passes on a
#: 2-core machine: LeNet's first layer (1 channel, 5x5, 20 filters, batch 100) 2.6 ms against 5.6; 2
#: channels 4x4, 32 filters, 5.6 against 8.5; but with 3 channels 3x3 with padding, 16 or 32 filters, the
#: planes' gradients alone were 6-13% slower (the forward pass on phases was not measured there).
PLANES_MAX_CHANNELS = 2
PLANES_MAX_KERNEL = 5


def _planes_layer(w, x, geom):
    """Whether the convolution is one the planes' kernels take and gain on (see PLANES_MAX_CHANNELS)."""
    cout, cin, *kernel = w.shape
    return (
        fast.enabled()
        and type(x) is type(w) is np.ndarray
        and x.ndim == 4
        and x.dtype in fast.FLOATS
        and w.dtype == x.dtype
        and geom.stride == (1, 1)
        and geom.groups == 1
        and cin <= PLANES_MAX_CHANNELS
        and max(kernel) <= PLANES_MAX_KERNEL
        and cout >= FAST_MIN_CHANNELS
    )


def _padded_channel_major(x, geom, slack=0):
    """x (N, C, H, W) padded, as (C, N*Hp*Wp + slack) from the buffer pool: each channel's planes one
    after another, zeros in the padding and the slack."""
    n, cin, height, width = x.shape
    (ph, pw) = geom.padding
    hp, wp = height + 2 * ph, width + 2 * pw
    length = n * hp * wp
    xs = recycle.take_buffer(np, (cin, length + slack), x.dtype)
    xs[:, length:] = 0
    inner = xs[:, :length].reshape(cin, n, hp, wp)
    if ph or pw:
        inner[...] = 0
    inner[:, :, ph : ph + height, pw : pw + width] = x.transpose(1, 0, 2, 3)
    return xs


def _phase_planes(x, geom, kernel, pooled_rows, lanes):
    """x (N, C, H, W) padded and split by row and column parity: (4*C, N*plane + slack) from the buffer
    pool, phases (c, row parity, column parity) in that order, each sample's phase H2 x row with H2 and
    row half the padded height and width rounded up; zeros in the padding, past an odd edge and in the
    slack that the last sample's windows reach. Returns it, plane and row."""
    n, cin, height, width = x.shape
    (ph, pw), (dh, dw_) = geom.padding, geom.dilation
    h2, row = -(-(height + 2 * ph) // 2), -(-(width + 2 * pw) // 2)
    plane = h2 * row
    # the last sample reads whole rows up to its last pooled row's farthest window element
    slack = max(0, ((1 + (kernel[0] - 1) * dh) // 2 + pooled_rows - h2) * row) + (1 + (kernel[1] - 1) * dw_) // 2 + lanes
    xs = recycle.take_buffer(np, (4 * cin, n * plane + slack), x.dtype)
    xs[...] = 0
    phases = xs[:, : n * plane].reshape(cin, 2, 2, n, h2, row)
    for r in range(2):
        for s in range(2):
            # padded row ph + i has parity (ph + i) % 2: input rows r0, r0 + 2, ... land in phase r
            r0, s0 = (r - ph) % 2, (s - pw) % 2
            part = x[:, :, r0::2, s0::2].transpose(1, 0, 2, 3)
            i0, j0 = (ph + r0) // 2, (pw + s0) // 2
            phases[:, r, s, :, i0 : i0 + part.shape[2], j0 : j0 + part.shape[3]] = part
    return xs, plane, row


def _planes_forward(w, x, b, geom, pool, out_spatial, pooled_spatial):
    """The fused op's forward pass by :func:`knetpy.ops.fast.conv_planes.conv_relu_pool_planes` (the
    planes' layers, 2x2 pooling with stride 2 and no padding), or None where it does not apply."""
    if not (
        _planes_layer(w, x, geom)
        and type(b) is np.ndarray
        and b.dtype == x.dtype
        and pool.window == (2, 2)
        and pool.stride == (2, 2)
        and pool.padding == (0, 0)
        and min(pooled_spatial) > 0
    ):
        return None
    from .fast.conv_planes import LANES, conv_relu_pool_planes

    n, cout = x.shape[0], w.shape[0]
    wk = np.ascontiguousarray(w[:, :, ::-1, ::-1] if geom.flip else w)
    xs, plane, row = _phase_planes(x, geom, w.shape[2:], pooled_spatial[0], LANES)
    pooled = recycle.empty(np, (n, *pooled_spatial, cout), x.dtype)
    code = recycle.empty(np, pooled.shape, np.uint8)
    (dh, dw_) = geom.dilation
    try:

        def part(lo, hi):
            conv_relu_pool_planes(xs, wk, b, pooled, code, plane, row, dh, dw_, lo, hi)

        flops = 8 * pooled.size * w[0].size
        parallel.for_rows(part, n, flops, minimum=parallel.MIN_FLOPS)
    finally:
        give(xs)
    act_shape = (n, cout, *out_spatial)
    # the switches need the activation's layout (channels-last) and shape, not its values
    like = from_channels_last(np.empty((1, 2, 2, cout), x.dtype))
    switches = _Switches(from_channels_last(code), pool, act_shape, like)
    return from_channels_last(pooled), _Saved(_ConvSaved(None, None), switches)


def _planes_grads(g, ans, saved, w, x, geom, pool):
    """(dw, db) by :mod:`knetpy.ops.fast.conv_planes`, straight from the pooled gradient, or None
    where that path does not apply: recording, no compiled kernels, Winograd's path, a stride, groups,
    a layout the kernels do not take, or too many channels or too large a kernel to gain."""
    if isinstance(g, Tensor) or isinstance(x, Tensor) or saved.conv.tiles is not None:
        return None
    if not (_planes_layer(w, x, geom) and type(g) is type(ans) is np.ndarray and x.dtype == g.dtype == ans.dtype):
        return None
    code = _nhwc(saved.switches.code)
    grad, act = (_nhwc(to_channels_last(a).transpose(0, 3, 1, 2)) for a in (g, ans))
    if code is None or grad is None or act is None:
        return None
    from .fast.conv_planes import COLUMNS, relu_pool_filter_grad_planes

    cout, cin, kh, kw = w.shape
    n, _, height, width = x.shape
    (ph, pw), (dh, dw_) = geom.padding, geom.dilation
    hp, wp = height + 2 * ph, width + 2 * pw
    # zeros past the input's end for the windows the last sample's planes (zeros there) still reach
    slack = (kh - 1) * dh * wp + (-(-kw // COLUMNS) * COLUMNS - 1) * dw_ + 1
    xs = _padded_channel_major(x, geom, slack)
    oh, ow = geom.output_size((height, width), (kh, kw))
    window = (*pool.window, *pool.stride, *pool.padding)
    sums = {}  # each part's float64 sums, by its first sample

    def part(lo, hi):
        dw, db = np.zeros(w.shape), np.zeros(cout)
        relu_pool_filter_grad_planes(grad, code, act, xs, dw, db, oh, ow, *window, hp, wp, dh, dw_, lo, hi)
        sums[lo] = dw, db

    try:
        parallel.for_rows(part, n, 2 * n * cout * cin * kh * kw * hp * wp, minimum=parallel.MIN_FLOPS)
    finally:
        give(xs)
    parts = [sums[lo] for lo in sorted(sums)]  # added in sample order: the same sums however the batch split
    dw = np.sum([d for d, _ in parts], axis=0).astype(x.dtype)
    db = np.sum([d for _, d in parts], axis=0).astype(x.dtype)
    return (np.ascontiguousarray(dw[:, :, ::-1, ::-1]) if geom.flip else dw), db


_conv_relu_pool.defvjp(_vjp_w, _vjp_x, _vjp_b)


def conv_relu_pool(w, x, b, padding=0, stride=1, dilation=1, mode=0, groups=1, window=2, pool_padding=0,
                   pool_stride=None):
    """``pool(relu(conv4(w, x, padding, stride, dilation, mode, groups) + b), window, pool_padding,
    pool_stride)`` (max pooling; b of shape (C_out,)) as one op, equal to the three ops bit for bit
    (a first layer on planes, see the module's notes, to rounding).

    Cheaper in memory and time than the three: the full activation is neither kept for the backward
    pass nor read again by it.
    """
    fn = "conv_relu_pool"
    geom = _conv_geometry_checked(fn, w, x, padding, stride, dilation, mode, groups)
    wv, bv = (a.value if isinstance(a, Tensor) else a for a in (w, b))
    cout = wv.shape[0]
    if bv.shape != (cout,):
        raise ValueError(f"{fn}: b must have shape ({cout},) (one per output channel), got {bv.shape}")
    if bv.dtype != wv.dtype:
        raise TypeError(f"{fn}: b has dtype {bv.dtype} but w has dtype {wv.dtype}")
    xs = (x.value if isinstance(x, Tensor) else x).shape
    conv_out = types.SimpleNamespace(
        shape=(xs[0], cout, *geom.output_size(xs[2:], wv.shape[2:])), dtype=wv.dtype
    )
    pool = pool_geometry(fn, conv_out, window, pool_padding, pool_stride)
    return _conv_relu_pool(w, x, b, geom=geom, pool=pool)

