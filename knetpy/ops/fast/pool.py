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
def max_pool2d_backward(g, code, dx, kh, kw, sh, sw, ph, pw, tiles):
    """dx = each g[n, i, j, c] added at its window's winner, zeros elsewhere (dx overwritten).

    ``tiles``: the windows tile dx (stride == window, no padding), so each covered position is
    written once and only the positions no window covers need zeros first.
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
                        gr, cr = g[b, oi, oj], code[b, oi, oj]
                        for kj in range(kw):
                            k = ki * kw + kj
                            dr = dx[b, oi * kh + ki, oj * kw + kj]
                            for ch in range(c):
                                dr[ch] = gr[ch] * (cr[ch] == k)  # a multiply vectorises, a branch does not
        return
    for b in range(n):
        # outputs last to first: each input position then sums its windows' gradients in the order of
        # their offsets, as the reference does, so overlapping windows round alike
        for oi in range(oh - 1, -1, -1):
            i0 = oi * sh - ph
            for oj in range(ow - 1, -1, -1):
                j0 = oj * sw - pw
                gr, cr = g[b, oi, oj], code[b, oi, oj]
                for ch in range(c):
                    k = cr[ch]
                    i, j = i0 + k // kw, j0 + k % kw
                    if 0 <= i < h and 0 <= j < w:  # a padded winner (all -inf) drops its gradient
                        dx[b, i, j, ch] += gr[ch]
