"""Compiled tile transforms of the Winograd convolution (:mod:`knetpy.ops.winograd`), channels-last.

Each kernel makes one whole transform of a run of samples in one call that holds no GIL, so that
knetpy's threads, each taking its samples, run side by side (the NumPy reference is a loop of small
GEMMs and strided copies, and two threads running it take turns at the GIL). The tile-domain arrays
are laid out as the reference lays them: (a*a, T, C), tile t = (sample, tile row, tile column).

The kernels take a block of consecutive tiles at a time, so that every inner loop runs over the
block's tiles and channels together (hundreds of contiguous values, which the compiler vectorizes).
Each 1-D transform is a sum of a few rows weighted by one row of a transform matrix, made in one
pass over the rows (:func:`_combine`); zeros of the matrices are multiplied like the reference's GEMMs
multiply them, so an infinite input spreads over its tiles alike.
"""

from __future__ import annotations

import numba
import numpy as np

#: Values per inner loop: a block takes about this many (tile, channel) pairs.
BLOCK = 512


@numba.njit(cache=True, nogil=True, inline="always")
def _combine(coef, src, s, off, out, size):
    """out[q] = Σ_u coef[u] * src[u, s, off + q] for q < size (src C-contiguous, 3-D).

    Each row is sliced first, so the loop indexes from 0: an index that might be negative (off + q)
    would keep the compiler from vectorizing the loop."""
    n = coef.shape[0]
    if n == 8:
        c0, c1, c2, c3, c4, c5, c6, c7 = coef[0], coef[1], coef[2], coef[3], coef[4], coef[5], coef[6], coef[7]
        r0, r1, r2, r3 = src[0, s, off:off + size], src[1, s, off:off + size], src[2, s, off:off + size], src[3, s, off:off + size]
        r4, r5, r6, r7 = src[4, s, off:off + size], src[5, s, off:off + size], src[6, s, off:off + size], src[7, s, off:off + size]
        for q in range(size):
            out[q] = (c0 * r0[q] + c1 * r1[q] + c2 * r2[q] + c3 * r3[q]
                      + c4 * r4[q] + c5 * r5[q] + c6 * r6[q] + c7 * r7[q])
    elif n == 4:
        c0, c1, c2, c3 = coef[0], coef[1], coef[2], coef[3]
        r0, r1, r2, r3 = src[0, s, off:off + size], src[1, s, off:off + size], src[2, s, off:off + size], src[3, s, off:off + size]
        for q in range(size):
            out[q] = c0 * r0[q] + c1 * r1[q] + c2 * r2[q] + c3 * r3[q]
    else:
        r = src[0, s, off:off + size]
        c0 = coef[0]
        for q in range(size):
            out[q] = c0 * r[q]
        for u in range(1, n):
            r = src[u, s, off:off + size]
            cu = coef[u]
            for q in range(size):
                out[q] += cu * r[q]


def _blocks(channels):
    return max(1, BLOCK // channels)


@numba.njit(cache=True, nogil=True)
def input_tiles(x, bt, lo, hi, th, tw, m, ph, pw, v):
    """v[i*a + j, t] = (Bᵀ d B)[i, j] for the a x a tile d of every tile t of samples lo..hi-1 of x
    (N, H, W, C), read from (row, col) = (tile row * m - ph, tile col * m - pw); outside x reads as zeros.
    v is (a*a, T, C)."""
    n, h, w, c = x.shape
    a = bt.shape[0]
    per = th * tw
    total = (hi - lo) * per
    tb = max(1, BLOCK // c)
    d = np.empty((a, a, tb * c), x.dtype)  # d[u, s]: row u, column s of the block's tiles
    half = np.empty((a, 1, tb * c), x.dtype)
    flat = v.reshape(a * a, total * c)
    for t0 in range(0, total, tb):
        nt = min(tb, total - t0)
        size = nt * c
        for k in range(nt):
            t = t0 + k
            b, rest = lo + t // per, t % per
            y0, x0 = (rest // tw) * m - ph, (rest % tw) * m - pw
            for u in range(a):
                yy = y0 + u
                for s in range(a):
                    xx = x0 + s
                    dst = d[u, s, k * c : (k + 1) * c]
                    if yy < 0 or yy >= h or xx < 0 or xx >= w:
                        dst[:] = 0
                    else:
                        src = x[b, yy, xx]
                        for ch in range(c):
                            dst[ch] = src[ch]
        for i in range(a):
            for s in range(a):  # half[s] = (Bᵀ d)[i, s]
                _combine(bt[i], d, s, 0, half[s, 0], size)
            for j in range(a):  # v[i*a + j] = (Bᵀ d B)[i, j]
                _combine(bt[j], half, 0, 0, flat[i * a + j, t0 * c : t0 * c + size], size)


@numba.njit(cache=True, nogil=True)
def output_tiles(mm, at, th, tw, y):
    """y (nb, oh, ow, K) = Aᵀ M A for every tile of mm (a*a, T, K), placed m x m at (tile row * m,
    tile col * m); the rows and columns past (oh, ow) are dropped."""
    nb, oh, ow, k = y.shape
    m, a = at.shape
    per = th * tw
    total = nb * per
    tb = max(1, BLOCK // k)
    src = mm.reshape(a, a, total * k)  # src[u, s]: entry (u, s) of every tile
    half = np.empty((a, 1, tb * k), mm.dtype)
    res = np.empty((m, tb * k), mm.dtype)
    for t0 in range(0, total, tb):
        nt = min(tb, total - t0)
        size = nt * k
        for i in range(m):
            for s in range(a):  # half[s] = (Aᵀ M)[i, s]
                _combine(at[i], src, s, t0 * k, half[s, 0], size)
            for j in range(m):  # res[j] = (Aᵀ M A)[i, j]
                _combine(at[j], half, 0, 0, res[j], size)
            for kk in range(nt):  # row i of each tile into y
                t = t0 + kk
                b, rest = t // per, t % per
                row = (rest // tw) * m + i
                if row >= oh:
                    continue
                col0 = (rest % tw) * m
                for j in range(min(m, ow - col0)):
                    dst, part = y[b, row, col0 + j], res[j, kk * k : (kk + 1) * k]
                    for ch in range(k):
                        dst[ch] = part[ch]


@numba.njit(cache=True, nogil=True)
def output_tiles_adjoint(gy, at, th, tw, dm):
    """dm (a*a, T, K) = A g Aᵀ for the m x m tiles g of gy (nb, oh, ow, K), zeros past (oh, ow): the
    adjoint of :func:`output_tiles`."""
    nb, oh, ow, k = gy.shape
    m, a = at.shape
    per = th * tw
    total = nb * per
    tb = max(1, BLOCK // k)
    g = np.empty((m, m, tb * k), gy.dtype)  # g[i, j]: entry (i, j) of the block's tiles
    half = np.empty((m, 1, tb * k), gy.dtype)
    a_t = np.ascontiguousarray(at.T)  # (a, m): row u of A
    flat = dm.reshape(a * a, total * k)
    for t0 in range(0, total, tb):
        nt = min(tb, total - t0)
        size = nt * k
        for kk in range(nt):
            t = t0 + kk
            b, rest = t // per, t % per
            row0, col0 = (rest // tw) * m, (rest % tw) * m
            for i in range(m):
                for j in range(m):
                    dst = g[i, j, kk * k : (kk + 1) * k]
                    if row0 + i >= oh or col0 + j >= ow:
                        dst[:] = 0
                    else:
                        src = gy[b, row0 + i, col0 + j]
                        for ch in range(k):
                            dst[ch] = src[ch]
        for u in range(a):
            for j in range(m):  # half[j] = (A g)[u, j]
                _combine(a_t[u], g, j, 0, half[j, 0], size)
            for s in range(a):  # dm[u*a + s] = (A g Aᵀ)[u, s]
                _combine(a_t[s], half, 0, 0, flat[u * a + s, t0 * k : t0 * k + size], size)


@numba.njit(cache=True, nogil=True)
def input_tiles_adjoint(dv, bt, th, tw, m, ph, pw, dx):
    """dx (nb, H, W, C), overwritten, = the sum over the tiles of B dV Bᵀ (dv (a*a, T, C)) added back
    where :func:`input_tiles` read them; the padding's share is dropped."""
    nb, h, w, c = dx.shape
    a = bt.shape[0]
    per = th * tw
    total = nb * per
    tb = max(1, BLOCK // c)
    src = dv.reshape(a, a, total * c)  # src[i, j]: entry (i, j) of every tile
    b_t = np.ascontiguousarray(bt.T)  # row s of B
    half = np.empty((a, a, tb * c), dv.dtype)  # half[i, s]
    tile = np.empty((a, a, tb * c), dv.dtype)
    dx[...] = 0
    for t0 in range(0, total, tb):
        nt = min(tb, total - t0)
        size = nt * c
        for i in range(a):
            for s in range(a):  # half[i, s] = (dV B)[i, s]
                _combine(b_t[s], src[i : i + 1].reshape(a, 1, total * c), 0, t0 * c, half[i, s], size)
        for u in range(a):
            for s in range(a):  # tile[u, s] = Σ_i B[u, i] half[i, s]: (B dV Bᵀ)[u, s]
                _combine(b_t[u], half, s, 0, tile[u, s], size)
        for kk in range(nt):  # each tile added into dx, tile by tile: the order of the sums does not
            t = t0 + kk  # depend on where the blocks (or the callers' runs of samples) begin
            b, rest = t // per, t % per
            y0, x0 = (rest // tw) * m - ph, (rest % tw) * m - pw
            for u in range(a):
                yy = y0 + u
                if yy < 0 or yy >= h:
                    continue
                for s in range(a):
                    xx = x0 + s
                    if 0 <= xx < w:
                        dst, part = dx[b, yy, xx], tile[u, s, kk * c : (kk + 1) * c]
                        for ch in range(c):
                            dst[ch] += part[ch]
