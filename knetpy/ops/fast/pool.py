"""Compiled 2-D max pooling: the forward pass records each window's winner, the backward pass routes
each output gradient to it in one pass.

Arrays are C-contiguous (N, H, W, C): channels-last activations, as convolutions produce them. Results match :mod:`knetpy.ops.pool` exactly: the same maxima
(NaN propagates), and the same winner, the first maximal offset of the window in row-major order
(a padded position counts as -inf).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def max_pool2d(x, y, code, kh, kw, sh, sw, ph, pw):
    """y[n, i, j, c] = max of x over the window of output (i, j); code = the winner's offset number."""
    if kh == 2 and kw == 2 and ph == 0 and pw == 0:
        _max_pool_2x2(x, y, code, sh, sw)
    else:
        _max_pool_any(x, y, code, kh, kw, sh, sw, ph, pw)


@numba.njit(cache=True, nogil=True)
def _max_pool_2x2(x, y, code, sh, sw):
    """2x2 windows inside x (no padding): the four values of a channel compared in registers, with
    selects, not branches. Random activations mispredict a branch half the time, and the running
    maximum kept in ``y`` (as :func:`_max_pool_any` does) stops the channel loop from vectorising:
    this form is about 10x faster on LeNet's pooling."""
    n, c = x.shape[0], x.shape[3]
    oh, ow = y.shape[1], y.shape[2]
    for b in range(n):
        for oi in range(oh):
            top, bottom = x[b, oi * sh], x[b, oi * sh + 1]
            yr, cr = y[b, oi], code[b, oi]
            for oj in range(ow):
                j = oj * sw
                a0, a1, a2, a3 = top[j], top[j + 1], bottom[j], bottom[j + 1]
                yo, co = yr[oj], cr[oj]
                for ch in range(c):
                    m, k = a0[ch], np.uint8(0)  # a narrow k keeps the select as wide as the data's
                    # as np.maximum: a NaN on either side wins; the winner moves on a strict increase only
                    v = a1[ch]
                    gt = v > m
                    m = v if (gt | (v != v)) else m
                    k = np.uint8(1) if gt else k
                    v = a2[ch]
                    gt = v > m
                    m = v if (gt | (v != v)) else m
                    k = np.uint8(2) if gt else k
                    v = a3[ch]
                    gt = v > m
                    m = v if (gt | (v != v)) else m
                    k = np.uint8(3) if gt else k
                    yo[ch], co[ch] = m, k


@numba.njit(cache=True, nogil=True)
def _max_pool_any(x, y, code, kh, kw, sh, sw, ph, pw):
    """Any window, stride and padding: the running maximum kept in ``y``."""
    n, h, w, c = x.shape
    oh, ow = y.shape[1], y.shape[2]
    for b in range(n):
        for oi in range(oh):
            i0 = oi * sh - ph
            for oj in range(ow):
                j0 = oj * sw - pw
                yr, cr = y[b, oi, oj], code[b, oi, oj]
                if i0 >= 0 and j0 >= 0:
                    xr = x[b, i0, j0]
                    for ch in range(c):
                        yr[ch] = xr[ch]
                else:  # the first offset is padding
                    for ch in range(c):
                        yr[ch] = -np.inf
                for ch in range(c):
                    cr[ch] = 0
                for ki in range(kh):
                    i = i0 + ki
                    if i < 0 or i >= h:
                        continue
                    for kj in range(kw):
                        j = j0 + kj
                        if (ki == 0 and kj == 0) or j < 0 or j >= w:
                            continue
                        k = ki * kw + kj
                        xr = x[b, i, j]
                        for ch in range(c):
                            v, cur = xr[ch], yr[ch]
                            better = v > cur
                            # as np.maximum: a NaN on either side wins; the winner moves on a strict increase only
                            yr[ch] = v if (better or v != v) else cur
                            cr[ch] = k if better else cr[ch]


@numba.njit(cache=True, nogil=True)
def max_pool2d_backward(g, code, dx, kh, kw, sh, sw, ph, pw, tiles, act, relu):
    """dx = each g[n, i, j, c] added at its window's winner, zeros elsewhere (dx overwritten).

    ``tiles``: the windows tile dx (stride == window, no padding), so each covered position is
    written once and only the positions no window covers need zeros first. ``relu``: g is first
    multiplied by ``act > 0`` (``act``: the pooled output, laid out as g), relu's slope at the
    winners, as ``g * (act > 0)`` would before the scatter; without it ``act`` is not read.
    """
    n, h, w, c = dx.shape
    oh, ow = g.shape[1], g.shape[2]
    if not tiles or oh * kh != h or ow * kw != w:
        dx[...] = 0
    if tiles:  # row by row through dx, so its writes stream
        for b in range(n):
            for oi in range(oh):
                for ki in range(kh):
                    for oj in range(ow):
                        gr, cr, ar = g[b, oi, oj], code[b, oi, oj], act[b, oi, oj]
                        for kj in range(kw):
                            k = ki * kw + kj
                            dr = dx[b, oi * kh + ki, oj * kw + kj]
                            # multiplies vectorise, branches do not
                            if relu:
                                for ch in range(c):
                                    dr[ch] = (gr[ch] * (ar[ch] > 0)) * (cr[ch] == k)
                            else:
                                for ch in range(c):
                                    dr[ch] = gr[ch] * (cr[ch] == k)
        return
    for b in range(n):
        # outputs last to first: each input position then sums its windows' gradients in the order of
        # their offsets, as the reference does, so overlapping windows round alike
        for oi in range(oh - 1, -1, -1):
            i0 = oi * sh - ph
            for oj in range(ow - 1, -1, -1):
                j0 = oj * sw - pw
                gr, cr, ar = g[b, oi, oj], code[b, oi, oj], act[b, oi, oj]
                for ch in range(c):
                    k = cr[ch]
                    i, j = i0 + k // kw, j0 + k % kw
                    if 0 <= i < h and 0 <= j < w:  # a padded winner (all -inf) drops its gradient
                        dx[b, i, j, ch] += gr[ch] * (ar[ch] > 0) if relu else gr[ch]
