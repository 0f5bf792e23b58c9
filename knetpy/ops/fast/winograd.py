"""Compiled tile transforms of the Winograd convolution (:mod:`knetpy.ops.winograd`), channels-last.

Each kernel makes one whole transform of a run of samples in one call that holds no GIL, so that
knetpy's threads, each taking its samples, can run side by side (the NumPy reference is a loop of
small GEMMs and strided copies, and two threads running it take turns at the GIL). The tile-domain
arrays are laid out as the reference lays them: (a*a, T, C), tile t = (sample, tile row, tile column).

The kernels take a block of consecutive tiles at a time, so that every inner loop runs over the
block's tiles and channels together (hundreds of contiguous values, which the compiler vectorizes).
A 2-D transform is the 1-D transform along the tiles' rows, then along their columns. Each 1-D
transform is a codelet (:mod:`.winograd_codelets`, written by :mod:`.winograd_codegen` from the exact
matrices): straight-line code that loads its eight inputs once, keeps every sum in registers and
stores each output once, using the matrices' pairs of rows or columns (sums and differences) to skip
products. A loop per output row over the inputs, as before, stored and loaded about four times as
much (LeNet's second layer, 50 samples, one thread: the input tiles 0.113 against 0.161 ms). The results
are the reference's up to rounding. Zero coefficients take no product, so an infinite input gives inf or
NaN in the outputs of its own tiles, as the reference does, though not always in every one of them.
"""

from __future__ import annotations

import numba
import numpy as np

from .winograd_codelets import (
    COEFFICIENTS,
    transform_a4,
    transform_a6,
    transform_at4,
    transform_at6,
    transform_b,
    transform_bt,
)

#: Values per inner loop: a block takes about this many (tile, channel) pairs.
BLOCK = 512
#: The input tiles' size, a x a (the codelets' eight inputs).
ALPHA = 8


def coefficients(dtype):
    """Each codelet's coefficients as the kernels take them: {name: array in ``dtype``} (read-only)."""
    out = {}
    for name, values in COEFFICIENTS.items():
        out[name] = np.array(values, dtype)
        out[name].flags.writeable = False
    return out


@numba.njit(cache=True, nogil=True, inline="always")
def _at(k, m, src, si, so, dst, di, do, size):
    """Aᵀ of F(m, 9 - m) (m = 4: 5x5 kernels, m = 6: 3x3)."""
    if m == 4:
        transform_at4(k, src, si, so, dst, di, do, size)
    else:
        transform_at6(k, src, si, so, dst, di, do, size)


@numba.njit(cache=True, nogil=True, inline="always")
def _a(k, m, src, si, so, dst, di, do, size):
    """A of F(m, 9 - m)."""
    if m == 4:
        transform_a4(k, src, si, so, dst, di, do, size)
    else:
        transform_a6(k, src, si, so, dst, di, do, size)


# -- the four kernels -------------------------------------------------------------------------------------------
@numba.njit(cache=True, nogil=True)
def input_tiles(x, bt, lo, hi, th, tw, m, ph, pw, v):
    """v[i*a + j, t] = (Bᵀ d B)[i, j] for the a x a tile d of every tile t of samples lo..hi-1 of x
    (N, H, W, C), read from (row, col) = (tile row * m - ph, tile col * m - pw); outside x reads as zeros.
    v is (a*a, T, C); ``bt``: Bᵀ's coefficients (:func:`coefficients`)."""
    n, h, w, c = x.shape
    a = ALPHA
    per = th * tw
    total = (hi - lo) * per
    tb = max(1, BLOCK // c)
    d = np.empty((a, a, tb * c), x.dtype)  # d[u, s]: row u, column s of the block's tiles
    half = np.empty((a, a, tb * c), x.dtype)  # half[i, s] = (Bᵀ d)[i, s]
    rows = v.reshape(a, a, total * c)
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
        for s in range(a):
            transform_bt(bt, d, s, 0, half, s, 0, size)
        for i in range(a):
            transform_bt(bt, half[i].reshape(a, 1, tb * c), 0, 0, rows[i].reshape(a, 1, total * c), 0, t0 * c,
                         size)


@numba.njit(cache=True, nogil=True)
def output_tiles(mm, at, m, th, tw, y):
    """y (nb, oh, ow, K) = Aᵀ M A for every tile of mm (a*a, T, K), placed m x m at (tile row * m,
    tile col * m); the rows and columns past (oh, ow) are dropped. ``at``: Aᵀ's coefficients."""
    nb, oh, ow, k = y.shape
    a = ALPHA
    per = th * tw
    total = nb * per
    tb = max(1, BLOCK // k)
    src = mm.reshape(a, a, total * k)  # src[u, s]: entry (u, s) of every tile
    half = np.empty((m, a, tb * k), mm.dtype)  # half[i, s] = (Aᵀ M)[i, s]
    res = np.empty((m, 1, tb * k), mm.dtype)
    for t0 in range(0, total, tb):
        nt = min(tb, total - t0)
        size = nt * k
        for s in range(a):
            _at(at, m, src, s, t0 * k, half, s, 0, size)
        for i in range(m):
            _at(at, m, half[i].reshape(a, 1, tb * k), 0, 0, res, 0, 0, size)  # res[j] = (Aᵀ M A)[i, j]
            for kk in range(nt):  # row i of each tile into y
                t = t0 + kk
                b, rest = t // per, t % per
                row = (rest // tw) * m + i
                if row >= oh:
                    continue
                col0 = (rest % tw) * m
                for j in range(min(m, ow - col0)):
                    dst, part = y[b, row, col0 + j], res[j, 0, kk * k : (kk + 1) * k]
                    for ch in range(k):
                        dst[ch] = part[ch]


@numba.njit(cache=True, nogil=True)
def output_tiles_adjoint(gy, at_adj, m, th, tw, dm):
    """dm (a*a, T, K) = A g Aᵀ for the m x m tiles g of gy (nb, oh, ow, K), zeros past (oh, ow): the
    adjoint of :func:`output_tiles`. ``at_adj``: A's (= Aᵀ transposed) coefficients."""
    nb, oh, ow, k = gy.shape
    a = ALPHA
    per = th * tw
    total = nb * per
    tb = max(1, BLOCK // k)
    g = np.empty((m, m, tb * k), gy.dtype)  # g[i, j]: entry (i, j) of the block's tiles
    half = np.empty((a, m, tb * k), gy.dtype)  # half[u, j] = (A g)[u, j]
    rows = dm.reshape(a, a, total * k)
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
        for j in range(m):
            _a(at_adj, m, g, j, 0, half, j, 0, size)
        for u in range(a):
            _a(at_adj, m, half[u].reshape(m, 1, tb * k), 0, 0, rows[u].reshape(a, 1, total * k), 0, t0 * k, size)


@numba.njit(cache=True, nogil=True)
def input_tiles_adjoint(dv, b_adj, th, tw, m, ph, pw, dx):
    """dx (nb, H, W, C), overwritten, = the sum over the tiles of B dV Bᵀ (dv (a*a, T, C)) added back
    where :func:`input_tiles` read them; the padding's share is dropped. ``b_adj``: B's (= Bᵀ
    transposed) coefficients."""
    nb, h, w, c = dx.shape
    a = ALPHA
    per = th * tw
    total = nb * per
    tb = max(1, BLOCK // c)
    src = dv.reshape(a, a, total * c)  # src[i, j]: entry (i, j) of every tile
    half = np.empty((a, a, tb * c), dv.dtype)  # half[i, s] = (dV Bᵀ-adjoint)[i, s]
    tile = np.empty((a, a, tb * c), dv.dtype)  # tile[u, s] = (B dV Bᵀ)[u, s]
    dx[...] = 0
    for t0 in range(0, total, tb):
        nt = min(tb, total - t0)
        size = nt * c
        for i in range(a):
            transform_b(b_adj, src[i].reshape(a, 1, total * c), 0, t0 * c, half[i].reshape(a, 1, tb * c), 0, 0,
                        size)
        for s in range(a):
            transform_b(b_adj, half, s, 0, tile, s, 0, size)
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
