"""Convolution + bias + relu + max pooling as one op: ``pool(relu(conv4(w, x) + b))``.

The forward pass keeps only what the backward pass needs: the pooled output and each window's
winner (and the convolution's gathered windows where it keeps them); the full activation goes back
to the buffer pool as soon as it is pooled. The backward pass masks the pooled gradient with relu's
slope at the winners (``g * (pooled > 0)``: the winner's activation is the pooled value) and scatters
it straight into the gradient before the activation, one pass over the small pooled array instead
of a second one over the full activation. The results equal the three ops run one after another bit
for bit: the same multiplications by 0 or 1, in the same places. With the compiled kernels (2-D, NumPy)
each thread's rows are pooled right after their GEMM, while they are still in cache.

What :class:`knetpy.Sequential` runs for a ``Conv2D(..., activation='relu')`` directly followed by
``MaxPool2D``.
"""

from __future__ import annotations

import math
import types

import numpy as np

from ..autograd import Tensor, primitive
from .conv import (
    _bias_act,
    _conv_filter_grad,
    _conv_geometry_checked,
    _conv_matrix,
    _filter_grad_raw,
    _input_grad,
    _winograd_filter_grad,
)
from .im2col import empty_like_layout, from_channels_last, to_channels_last
from .pool import FAST_MIN_CHANNELS, _fast_ok, _max_windows, _switch_scatter, _Switches, pool_geometry
from .reduce import sum as _sum
from .shape import sum_rows


class _Saved:
    """The convolution's saved windows, the pooling's switches, and the gradient before the
    activation once computed (shared by the three VJPs)."""

    __slots__ = ("conv", "switches", "grad_source", "pre_grad")

    def __init__(self, conv, switches):
        self.conv, self.switches = conv, switches
        self.grad_source = self.pre_grad = None


@primitive(saves=True)
def _conv_relu_pool(w, x, b, geom=None, pool=None):
    n, cout = x.shape[0], w.shape[0]
    out_spatial = geom.output_size(x.shape[2:], w.shape[2:])
    pooled_spatial = pool.output_size(out_spatial)
    bias_relu = _bias_act(x, b, True)
    if cout >= FAST_MIN_CHANNELS and _fast_ok(x, w) and type(b) is np.ndarray and b.dtype == x.dtype:
        # compiled: each part's rows pooled right after their GEMM, while they are in cache
        from .fast.pool import max_pool2d

        pooled = np.empty((n, *pooled_spatial, cout), x.dtype)
        code = np.empty(pooled.shape, np.uint8 if math.prod(pool.window) < 256 else np.int32)
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


def _vjp_w(g, ans, saved, w, x, b, geom=None, pool=None):
    pre = _pre_activation_grad(g, ans, saved)
    if isinstance(pre, Tensor) or isinstance(x, Tensor):
        return _conv_filter_grad(x, pre, geom=geom, kernel=w.shape[2:])
    dw = _winograd_filter_grad(saved.conv, w, x, pre, geom)
    return _filter_grad_raw(x, pre, geom, w.shape[2:], saved.conv.cols) if dw is None else dw


def _vjp_x(g, ans, saved, w, x, b, geom=None, pool=None):
    return _input_grad(saved.conv, w, x, _pre_activation_grad(g, ans, saved), geom)


def _vjp_b(g, ans, saved, w, x, b, geom=None, pool=None):
    pre = _pre_activation_grad(g, ans, saved)
    if isinstance(pre, Tensor):
        return _sum(pre, axis=(0, *range(2, pre.ndim)))
    return sum_rows(to_channels_last(pre).reshape(-1, pre.shape[1]))


_conv_relu_pool.defvjp(_vjp_w, _vjp_x, _vjp_b)


def conv_relu_pool(w, x, b, padding=0, stride=1, dilation=1, mode=0, groups=1, window=2, pool_padding=0,
                   pool_stride=None):
    """``pool(relu(conv4(w, x, padding, stride, dilation, mode, groups) + b), window, pool_padding,
    pool_stride)`` (max pooling; b of shape (C_out,)) as one op, equal to the three ops bit for bit.

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

