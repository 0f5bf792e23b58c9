"""Compiled filter and bias gradients of a first convolution (few input channels, stride 1) followed
by relu and max pooling, on gradient *planes* instead of gathered windows.

The output gradient is laid out filter-major, one plane per (filter, sample) as large as the padded
input, zeros wherever no output position is: G (F, N*Hp*Wp). The padded input is laid out
channel-major the same way: X (C, N*Hp*Wp + slack). Then output position p and its window's element
(ki, kj) are a constant distance apart, ``ki*dh*Wp + kj*dw``, and each entry of the filter gradient is
one long dot product:

    dw[f, c, ki, kj] = sum_p G[f, p] * X[c, p + ki*dh*Wp + kj*dw]

A loop over p with a few such sums at once (two filters by five kernel columns) vectorises over p and
keeps its sums in registers: no windows are gathered (LeNet's first layer: 5.8 MB a batch) and no
skinny GEMM runs (25 x 20 results summed over 57,600 rows, where BLAS reaches a fifth of its peak).
The pooling's backward pass writes G directly from the pooled gradient.

The sums run in another order than the GEMM's, so the results differ from the reference
(:func:`knetpy.ops.conv._filter_grad_raw`) by rounding only; the tests hold them close.
"""

from __future__ import annotations

import numba
import numpy as np

# reassociation lets the sums vectorise and contraction makes them FMAs; NaN and inf keep their meaning
_MATH = {"reassoc", "contract"}
#: kernel columns summed in one pass over p (the loop below is written for five)
COLUMNS = 5


@numba.njit(cache=True, nogil=True)
def relu_pool_scatter_planes(g, code, act, planes, oh, ow, kh, kw, sh, sw, ph, pw, lo, hi):
    """planes[f, b] (Hp, Wp) = the pooled gradient g[b, :, :, f] times relu's slope ``act > 0`` at each
    window's winner (``code``: the winner's offset number), zeros elsewhere, for samples b in lo..hi-1;
    g, code, act (n, PH, PW, F) channels-last, the winners inside the convolution's output (oh, ow)."""
    _, poh, pow_, f = g.shape
    zero, one = planes.dtype.type(0), planes.dtype.type(1)
    halves = kh == 2 and kw == 2 and sh == 2 and sw == 2 and ph == 0 and pw == 0
    # one sample's gradient (relu's slope applied) and winners, filter-major: the planes are written
    # from these, as reading the channels-last arrays with a stride is several times slower
    gt = np.empty((f, poh, pow_), planes.dtype)
    ct = np.empty((f, poh, pow_), code.dtype)  # as narrow as the code: int64 winners run 8x slower
    for b in range(lo, hi):
        for oi in range(poh):
            for oj in range(pow_):
                gr, cr, ar = g[b, oi, oj], code[b, oi, oj], act[b, oi, oj]
                for ch in range(f):
                    # g * (act > 0), as the reference multiplies (a NaN stays NaN); a select and a
                    # multiply, as multiplying by a bool is several times slower in numba
                    gt[ch, oi, oj] = gr[ch] * (one if ar[ch] > 0 else zero)
                    ct[ch, oi, oj] = cr[ch]
        for ch in range(f):
            if halves:
                _scatter_2x2(gt[ch], ct[ch], planes[ch, b])
            else:
                _scatter_any(gt[ch], ct[ch], planes[ch, b], oh, ow, kw, sh, sw, ph, pw)


@numba.njit(cache=True, nogil=True)
def _scatter_2x2(gc, cc, plane):
    """2x2 windows, stride 2: every covered position written once, row by row."""
    poh, pow_ = gc.shape
    zero, one = plane.dtype.type(0), plane.dtype.type(1)
    for oi in range(poh):
        for ki in range(2):
            out = plane[2 * oi + ki]
            for oj in range(pow_):
                k, val = cc[oi, oj] - 2 * ki, gc[oi, oj]
                out[2 * oj] = val * (one if k == 0 else zero)  # times 0 or 1, as the reference's
                out[2 * oj + 1] = val * (one if k == 1 else zero)
            out[2 * pow_ :] = 0
    plane[2 * poh :] = 0


@numba.njit(cache=True, nogil=True)
def _scatter_any(gc, cc, plane, oh, ow, kw, sh, sw, ph, pw):
    """Any window: zeros, then each gradient added at its winner."""
    poh, pow_ = gc.shape
    plane[...] = 0
    for oi in range(poh):
        for oj in range(pow_):
            k = cc[oi, oj]
            i, j = oi * sh - ph + k // kw, oj * sw - pw + k % kw
            if 0 <= i < oh and 0 <= j < ow:  # a padded winner (all -inf) drops its gradient
                plane[i, j] += gc[oi, oj]


@numba.njit(cache=True, nogil=True, fastmath=_MATH)
def filter_grad_planes(planes, x, dw, db, row, dh, dwl, f0, f1):
    """dw[f, c, ki, kj] = sum_p planes[f, p] * x[c, p + ki*dh*row + kj*dwl] and db[f] = sum_p planes[f, p],
    for filters f0..f1-1; ``row``: the planes' row length (the padded input's width). x is read up to
    (kh-1)*dh*row + (ceil(kw/5)*5 - 1)*dwl elements past the planes' length."""
    _, length = planes.shape
    _, c, kh, kw = dw.shape
    for f in range(f0, f1, 2):
        h = min(f + 1, f1 - 1)  # an odd last filter is summed twice and stored once
        g, gh = planes[f], planes[h]
        s = np.float64(0.0)
        t = np.float64(0.0)
        for p in range(length):
            s += g[p]
            t += gh[p]
        db[f], db[h] = s, t
        for ch in range(c):
            for ki in range(kh):
                for kj in range(0, kw, COLUMNS):
                    # one view per column: an index with a runtime offset would need numba's
                    # negative-index check, which stops the loop from vectorising
                    at = ki * dh * row + kj * dwl
                    xc = x[ch]
                    y0, y1, y2 = xc[at:], xc[at + dwl :], xc[at + 2 * dwl :]
                    y3, y4 = xc[at + 3 * dwl :], xc[at + 4 * dwl :]
                    a0 = a1 = a2 = a3 = a4 = planes.dtype.type(0)
                    b0 = b1 = b2 = b3 = b4 = planes.dtype.type(0)
                    for p in range(length):
                        u, v = g[p], gh[p]
                        x0, x1, x2, x3, x4 = y0[p], y1[p], y2[p], y3[p], y4[p]
                        a0 += u * x0
                        a1 += u * x1
                        a2 += u * x2
                        a3 += u * x3
                        a4 += u * x4
                        b0 += v * x0
                        b1 += v * x1
                        b2 += v * x2
                        b3 += v * x3
                        b4 += v * x4
                    sums_f, sums_h = (a0, a1, a2, a3, a4), (b0, b1, b2, b3, b4)
                    for m in range(min(COLUMNS, kw - kj)):
                        dw[f, ch, ki, kj + m] = sums_f[m]
                        dw[h, ch, ki, kj + m] = sums_h[m]
