"""Direct, slow definitions of convolution and pooling: the reference the fast paths are tested against.

Plain NumPy on (N, C, *spatial) arrays, written to be obviously right rather than fast: convolution
sums one small contraction per kernel position, pooling visits one output position at a time.
"""

from __future__ import annotations

import itertools

import numpy as np

from .im2col import kernel_offsets, window_slices


def _padded(x, padding, value=0.0):
    return np.pad(x, ((0, 0), (0, 0)) + tuple((p, p) for p in padding), constant_values=value)


def _flip(w):
    return w[(slice(None), slice(None)) + (slice(None, None, -1),) * (w.ndim - 2)]


def conv_reference(w, x, padding, stride, dilation, groups=1, mode=1):
    """y[n, o, i] = sum over c, k of w[o, c, k] * xpad[n, c, i*S + k*D] (kernel flipped if mode 0)."""
    w = _flip(w) if mode == 0 else w
    n, c, *spatial = x.shape
    cout, cg, *kernel = w.shape
    out = tuple(
        1 + (s + 2 * p - d * (k - 1) - 1) // st
        for s, k, p, st, d in zip(spatial, kernel, padding, stride, dilation)
    )
    xpad = _padded(x, padding)
    y = np.zeros((n, groups, cout // groups, *out), dtype=np.result_type(w, x))
    for offset in kernel_offsets(kernel):
        patch = xpad[(slice(None), slice(None)) + window_slices(offset, stride, dilation, out)]
        patch = patch.reshape(n, groups, cg, *out)
        wk = w[(slice(None), slice(None)) + offset].reshape(groups, cout // groups, cg)
        y += np.einsum("ngc...,goc->ngo...", patch, wk)
    return y.reshape(n, cout, *out)


def conv_transpose_reference(w, y, padding, stride, dilation, groups, in_spatial, mode=1):
    """The adjoint of :func:`conv_reference` in x, for an input of spatial size ``in_spatial``."""
    w = _flip(w) if mode == 0 else w
    n, cout, *out = y.shape
    _, cg, *kernel = w.shape
    xpad = np.zeros(
        (n, groups, cg, *(s + 2 * p for s, p in zip(in_spatial, padding))), dtype=np.result_type(w, y)
    )
    yg = y.reshape(n, groups, cout // groups, *out)
    for offset in kernel_offsets(kernel):
        wk = w[(slice(None), slice(None)) + offset].reshape(groups, cout // groups, cg)
        target = (slice(None), slice(None), slice(None)) + window_slices(offset, stride, dilation, out)
        xpad[target] += np.einsum("ngo...,goc->ngc...", yg, wk)
    inner = (slice(None), slice(None), slice(None)) + tuple(
        slice(p, p + s) for p, s in zip(padding, in_spatial)
    )
    return xpad[inner].reshape(n, groups * cg, *in_spatial)


def conv_filter_grad_reference(x, gy, padding, stride, dilation, groups, kernel, mode=1):
    """The adjoint of :func:`conv_reference` in w: d <conv(w, x), gy> / dw."""
    n, c, *_ = x.shape
    _, cout, *out = gy.shape
    cg = c // groups
    xpad = _padded(x, padding)
    gyg = gy.reshape(n, groups, cout // groups, *out)
    dw = np.zeros((cout, cg, *kernel), dtype=np.result_type(x, gy))
    for offset in kernel_offsets(kernel):
        patch = xpad[(slice(None), slice(None)) + window_slices(offset, stride, dilation, out)]
        patch = patch.reshape(n, groups, cg, -1)
        dw[(slice(None), slice(None)) + offset] = np.einsum(
            "ngcl,ngol->goc", patch, gyg.reshape(n, groups, cout // groups, -1)
        ).reshape(cout, cg)
    return _flip(dw) if mode == 0 else dw


def pool_reference(x, window, padding, stride, mode):
    """Max (mode 0) or average (1: padding counted, 2: padding not counted) over each window."""
    n, c, *spatial = x.shape
    out = tuple(1 + (s + 2 * p - k) // st for s, k, p, st in zip(spatial, window, padding, stride))
    fill = -np.inf if mode == 0 else 0.0
    xpad = _padded(x.astype(np.float64), padding, fill)
    real = _padded(np.ones((1, 1, *spatial)), padding, 0.0)
    y = np.empty((n, c, *out), dtype=np.float64)
    for pos in itertools.product(*(range(o) for o in out)):
        box = tuple(slice(i * st, i * st + k) for i, st, k in zip(pos, stride, window))
        patch = xpad[(slice(None), slice(None)) + box].reshape(n, c, -1)
        if mode == 0:
            y[(slice(None), slice(None)) + pos] = patch.max(axis=-1)
        elif mode == 1:
            y[(slice(None), slice(None)) + pos] = patch.sum(axis=-1) / patch.shape[-1]
        else:
            count = real[(0, 0) + box].sum()
            y[(slice(None), slice(None)) + pos] = patch.sum(axis=-1) / count
    return y.astype(x.dtype)
