"""Compiled glue around the GEMMs of a 2-D convolution, channels-last: gathering padded windows
(im2col) straight from the unpadded input, scattering window rows back (col2im), bias + relu on the
GEMM's rows, and relu's gradient (also :func:`knetpy.relu`'s). Windows without padding stay a NumPy
strided copy.

Arrays are C-contiguous (relu's gradient: flat views, :func:`flat_views`). Bias + relu and relu's
gradient equal the NumPy code in :mod:`knetpy.ops.conv` exactly; col2im adds the kernel positions in
the reference's order, so the input gradient differs from the reference only by the GEMM's rounding.
"""

from __future__ import annotations

import numba


@numba.njit(cache=True, nogil=True)
def im2col2d(x, rows, lo, hi, at, kh, kw, sh, sw, dh, dw, ph, pw):
    """rows[at + b - lo] (oh, ow, kh*kw*C) = the windows of sample b of x (N, H, W, C), for b in lo..hi-1,
    zeros where a window reaches into the padding: the padded input is never built."""
    n, h, w, c = x.shape
    m, oh, ow, kc = rows.shape
    for b in range(lo, hi):
        dst = rows[at + b - lo]
        for i in range(oh):
            for j in range(ow):
                row = dst[i, j]
                for ki in range(kh):
                    y = i * sh + ki * dh - ph
                    for kj in range(kw):
                        col = (ki * kw + kj) * c
                        x_ = j * sw + kj * dw - pw
                        if y < 0 or y >= h or x_ < 0 or x_ >= w:
                            for ch in range(c):
                                row[col + ch] = 0
                        else:
                            src = x[b, y, x_]
                            for ch in range(c):
                                row[col + ch] = src[ch]


@numba.njit(cache=True, nogil=True)
def col2im2d(cols, dx, oh, ow, kh, kw, sh, sw, dh, dw, ph, pw):
    """dx (m, H, W, C), overwritten, = the sum of window rows ``cols`` (m*oh*ow, kh*kw*C) put back at
    their input positions; the positions in the padding are dropped."""
    m, h, w, c = dx.shape
    dx[...] = 0
    for ki in range(kh):  # kernel positions outermost: the reference's order of summation
        for kj in range(kw):
            col = (ki * kw + kj) * c
            for b in range(m):
                for i in range(oh):
                    y = i * sh + ki * dh - ph
                    if y < 0 or y >= h:
                        continue
                    row = (b * oh + i) * ow
                    dst = dx[b, y]
                    for j in range(ow):
                        x = j * sw + kj * dw - pw
                        if x < 0 or x >= w:
                            continue
                        s, d = cols[row + j], dst[x]
                        for ch in range(c):
                            d[ch] += s[col + ch]


@numba.njit(cache=True, nogil=True)
def bias_relu(rows, b, relu):
    """rows (R, C) += b (C,), then max(rows, 0) when ``relu``: one pass."""
    r, c = rows.shape
    for i in range(r):
        row = rows[i]
        if relu:
            for ch in range(c):
                v = row[ch] + b[ch]
                row[ch] = 0 if v < 0 else v  # a select, not a branch; NaN stays NaN, as with np.maximum
        else:
            for ch in range(c):
                row[ch] += b[ch]


@numba.njit(cache=True, nogil=True)
def relu_grad(g, act, out):
    """out = g where act > 0, else 0 (flat arrays): g * (act > 0) as the reference multiplies."""
    for i in range(g.shape[0]):
        out[i] = g[i] * (act[i] > 0)


def flat_views(*arrays):
    """Flat views of arrays of one shape laid out alike in one dense block each (C order, channels-last,
    any order of axes), element i of each at the same index; None when they are not."""
    a0 = arrays[0]
    if any(a.shape != a0.shape or a.strides != a0.strides for a in arrays):
        return None
    order = sorted(range(a0.ndim), key=lambda i: -a0.strides[i])  # outermost axis first
    views = [a.transpose(order) for a in arrays]
    return [v.reshape(-1) for v in views] if views[0].flags.c_contiguous else None
