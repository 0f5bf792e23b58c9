"""Compiled batch normalization over one kept (channel) axis, in the array's own memory layout.

Every array is a 3-D view ``(A, C, B)``: the axes laid out outside the channel axis, the channels,
and the axes inside it (channels-last: ``B == 1``; NCHW: ``A == N``). Sums run in float64, one
pass each: the statistics (shifted by a sample of each channel, so no cancellation), the forward
normalise-scale-shift(-relu), the two per-channel sums of the backward pass, and the input gradient.
The forward and the elementwise steps follow the NumPy reference's order of operations; the sums
differ from NumPy's only by their (more accurate) rounding.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ... import parallel


@numba.njit(cache=True, nogil=True)
def stats(x, shift, out):
    """out (2, C) float64 += per channel the sums of ``x - shift`` and of its square."""
    na, nc, nb = x.shape
    if nb == 1:  # channels-last: channels innermost, a loop the compiler vectorises
        s1, s2 = np.zeros(nc), np.zeros(nc)
        for a in range(na):
            for c in range(nc):
                d = np.float64(x[a, c, 0]) - shift[c]
                s1[c] += d
                s2[c] += d * d
        out[0] += s1
        out[1] += s2
        return
    for a in range(na):
        for c in range(nc):
            k = shift[c]
            s1 = 0.0
            s2 = 0.0
            for b in range(nb):
                d = np.float64(x[a, c, b]) - k
                s1 += d
                s2 += d * d
            out[0, c] += s1
            out[1, c] += s2


@numba.njit(cache=True, nogil=True)
def normalize(x, mean, inv_std, gamma, beta, relu, y):
    """y = ((x - mean) * inv_std) * gamma + beta, then max(., 0) with ``relu`` (NaN stays NaN).

    The relu and its gradient's mask below are selects, not branches: on activations of random sign a
    branch mispredicts half the time."""
    na, nc, nb = x.shape
    if nb == 1:  # channels-last: channels innermost
        for a in range(na):
            for c in range(nc):
                v = (x[a, c, 0] - mean[c]) * inv_std[c]
                v = v * gamma[c] + beta[c]
                y[a, c, 0] = 0 if (relu & (v < 0)) else v
        return
    for a in range(na):
        for c in range(nc):
            m, s, gm, bt = mean[c], inv_std[c], gamma[c], beta[c]
            for b in range(nb):
                v = (x[a, c, b] - m) * s
                v = v * gm + bt
                y[a, c, b] = 0 if (relu & (v < 0)) else v


@numba.njit(cache=True, nogil=True)
def grad_sums(g, x, ans, mean, inv_std, relu, out):
    """out (2, C) float64 += per channel the sums of g' and g' * xhat, g' = g * (ans > 0) with ``relu``."""
    na, nc, nb = x.shape
    if nb == 1:  # channels-last: channels innermost
        s1, s2 = np.zeros(nc), np.zeros(nc)
        for a in range(na):
            for c in range(nc):
                gv = g[a, c, 0]
                gv = gv if not (relu & ~(ans[a, c, 0] > 0)) else gv - gv
                s1[c] += gv
                s2[c] += np.float64(gv) * ((x[a, c, 0] - mean[c]) * inv_std[c])
        out[0] += s1
        out[1] += s2
        return
    for a in range(na):
        for c in range(nc):
            m, s = mean[c], inv_std[c]
            s1 = 0.0
            s2 = 0.0
            for b in range(nb):
                gv = g[a, c, b]
                # g * 0 as the reference multiplies (NaN and inf give NaN), same type
                gv = gv if not (relu & ~(ans[a, c, b] > 0)) else gv - gv
                s1 += gv
                s2 += np.float64(gv) * ((x[a, c, b] - m) * s)
            out[0, c] += s1
            out[1, c] += s2


@numba.njit(cache=True, nogil=True)
def grad_x(g, x, ans, mean, inv_std, gamma, mean_g, mean_gx, relu, dx):
    """dx = (g' * gamma - mean_g - xhat * mean_gx) * inv_std, g' as in :func:`grad_sums`."""
    na, nc, nb = x.shape
    if nb == 1:  # channels-last: channels innermost
        for a in range(na):
            for c in range(nc):
                gv = g[a, c, 0]
                gv = gv if not (relu & ~(ans[a, c, 0] > 0)) else gv - gv
                xh = (x[a, c, 0] - mean[c]) * inv_std[c]
                dx[a, c, 0] = (gv * gamma[c] - mean_g[c] - xh * mean_gx[c]) * inv_std[c]
        return
    for a in range(na):
        for c in range(nc):
            m, s, gm, mg, mgx = mean[c], inv_std[c], gamma[c], mean_g[c], mean_gx[c]
            for b in range(nb):
                gv = g[a, c, b]
                # g * 0 as the reference multiplies (NaN and inf give NaN), same type
                gv = gv if not (relu & ~(ans[a, c, b] > 0)) else gv - gv
                xh = (x[a, c, b] - m) * s
                dx[a, c, b] = (gv * gm - mg - xh * mgx) * s


# -- the callers' side: views, and the work split over the outer axis (knetpy's threads) ---------------
def views(x, axes, *others):
    """``([(A, C, B) views of x and others], back)`` in ``x``'s memory order, or None when ``x`` is not one
    dense block or more than one axis is kept. ``others`` (x's shape) laid out otherwise are copied;
    ``back`` turns a new (A, C, B) array (an output) into an array of x's shape and layout."""
    kept = [i for i in range(x.ndim) if i not in axes]
    if len(kept) != 1:
        return None
    order = sorted(range(x.ndim), key=lambda i: -x.strides[i])  # outermost axis first
    if not x.transpose(order).flags.c_contiguous:
        return None
    pos = order.index(kept[0])
    shape = [x.shape[i] for i in order]
    shape3 = (math.prod(shape[:pos]), shape[pos], math.prod(shape[pos + 1 :]))
    inverse = np.argsort(order)
    return (
        [np.ascontiguousarray(a.transpose(order)).reshape(shape3) for a in (x, *others)],
        lambda a3: a3.reshape(shape).transpose(inverse),
    )


def _check(x3, *arrays):
    """The kernels index without bounds checks: every array must have x3's shape, every vector C values."""
    c = x3.shape[1]
    if any(a.shape != (x3.shape if a.ndim == 3 else (c,)) for a in arrays if a is not None):
        raise ValueError(f"batch norm kernels: arrays of shapes {[a.shape for a in arrays if a is not None]} "
                         f"do not match an input viewed as {x3.shape}")


def _over_rows(fn, n, work):
    """fn(i, lo, hi) for each part i of the n outer rows: split over knetpy's threads when worth it."""
    parts = parallel.ranges(n, work) or [(0, n)]
    if len(parts) == 1:
        fn(0, 0, n)
    else:
        index = {lo: i for i, (lo, _) in enumerate(parts)}
        parallel.run(lambda lo, hi: fn(index[lo], lo, hi), parts)
    return len(parts)


def _channel_sums(kernel, x3, *args):
    """(2, C) float64: the two per-channel sums ``kernel`` adds up, part by part, in a fixed order."""
    out = np.zeros((parallel.get_num_threads() + 1, 2, x3.shape[1]))
    k = _over_rows(lambda i, lo, hi: kernel(*(a[lo:hi] if getattr(a, "ndim", 0) == 3 else a for a in args), out[i]),
                   x3.shape[0], x3.size)
    return out[:k].sum(axis=0)


def batch_stats(x3, eps):
    """Per-channel mean, biased variance and ``1 / sqrt(var + eps)`` of ``x3`` (A, C, B), in its dtype."""
    n = x3.shape[0] * x3.shape[2]
    shift = x3[0, :, 0].astype(np.float64)  # a value of each channel: the sums do not cancel
    s = _channel_sums(stats, x3, x3, shift)
    d = s[0] / n
    var = np.maximum(s[1] / n - d * d, 0.0).astype(x3.dtype)
    return (shift + d).astype(x3.dtype), var, 1.0 / (var + eps) ** 0.5  # the reference's expression


def forward(x3, mean, inv_std, gamma, beta, relu, y3):
    """y3 = the normalised x3 (per-channel vectors of its dtype; gamma/beta None: 1/0)."""
    _check(x3, mean, inv_std, gamma, beta, y3)
    gamma = np.ones_like(mean) if gamma is None else gamma
    beta = np.zeros_like(mean) if beta is None else beta
    _over_rows(lambda i, lo, hi: normalize(x3[lo:hi], mean, inv_std, gamma, beta, relu, y3[lo:hi]),
               x3.shape[0], x3.size)


def backward_sums(g3, x3, a3, mean, inv_std, relu):
    """(2, C) float64: per channel the sums of g' and of g' * xhat (the gradients of beta and gamma)."""
    _check(x3, g3, a3, mean, inv_std)
    return _channel_sums(grad_sums, x3, g3, x3, a3, mean, inv_std, relu)


def input_grad(g3, x3, a3, mean, inv_std, gamma, sums, relu, dx3):
    """dx3 = the gradient of x3 from the per-channel ``sums`` of :func:`backward_sums`."""
    _check(x3, g3, a3, mean, inv_std, gamma, dx3)
    n = x3.shape[0] * x3.shape[2]
    gm = np.ones(x3.shape[1]) if gamma is None else gamma.astype(np.float64)
    mean_g, mean_gx = (gm * sums[0] / n).astype(x3.dtype), (gm * sums[1] / n).astype(x3.dtype)
    gamma = np.ones_like(mean) if gamma is None else gamma
    _over_rows(
        lambda i, lo, hi: grad_x(g3[lo:hi], x3[lo:hi], a3[lo:hi], mean, inv_std, gamma, mean_g, mean_gx,
                                 relu, dx3[lo:hi]),
        x3.shape[0], x3.size,
    )
