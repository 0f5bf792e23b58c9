"""Compiled tile transforms of the Winograd convolution (:mod:`knetpy.ops.winograd`), channels-last.

Each kernel makes one whole transform of a run of samples in one call that holds no GIL, so that
knetpy's threads, each taking its samples, can run side by side (the NumPy reference is a loop of
small GEMMs and strided copies, and two threads running it take turns at the GIL). The tile-domain
arrays are laid out as the reference lays them: (a*a, T, C), tile t = (sample, tile row, tile column).

The kernels take a block of consecutive tiles at a time, so that every inner loop runs over the
block's tiles and channels together (hundreds of contiguous values, which the compiler vectorizes).
A 2-D transform is the 1-D transform along the tiles' rows, then along their columns. Bᵀ and A run
factored (:func:`factor`): the interpolation points come in pairs ±p, so their rows come in pairs that
are equal up to the sign of every other entry, and one sum and one difference of two sparse rows make
both members of a pair (a butterfly). Bᵀ takes 26 products and 6 butterflies per column of a tile
instead of 64 products. Aᵀ and B, whose pairs are columns, run as the dense matrices (a butterfly on
the inputs would take one more pass over the rows, which cost more than it saved). The results are
the reference's up to rounding. The factored rows skip their zero coefficients, so an infinite input
gives inf or NaN in the outputs of its own tiles, as the reference does, though not always in every one
of them.
"""

from __future__ import annotations

import numba
import numpy as np

#: Values per inner loop: a block takes about this many (tile, channel) pairs.
BLOCK = 512


# -- the factored 1-D transforms --------------------------------------------------------------------------------
def _paired_columns(mat):
    """Pairs (j, k) of columns with mat[:, k] = ±mat[:, j] entry by entry, both signs occurring."""
    pairs, used = [], set()
    for j in range(mat.shape[1]):
        for k in range(j + 1, mat.shape[1]):
            a, b = mat[:, j], mat[:, k]
            if (j not in used and k not in used and np.all((a == b) | (a == -b))
                    and np.any((a == b) & (a != 0)) and np.any((a == -b) & (a != 0))):
                pairs.append((j, k))
                used |= {j, k}
    return pairs


def factor(mat, dtype):
    """A 1-D transform ``mat`` (n_out, n_in; float64, exact) as (idx, coef, count, pairs), coefficients in
    ``dtype``: row r of a sparse matrix is Σ_i coef[r, i] * input[idx[r, i]] for i < count[r], then
    butterflies on its rows (z_p, z_q) -> (z_p + z_q, z_p - z_q) for each pair (p, q) in ``pairs``, the
    rows of ``mat`` that are equal up to the signs of every other entry. Without such rows, the rows of
    ``mat`` as they are (zeros kept, so that each output is one pass over the inputs)."""
    n_out, n_in = mat.shape
    pairs = _paired_columns(mat.T)
    sparse = mat.copy()
    for p, q in pairs:
        sparse[p], sparse[q] = (mat[p] + mat[q]) / 2, (mat[p] - mat[q]) / 2  # exact: halves of rationals
    idx, coef = np.zeros((n_out, n_in), np.int64), np.zeros((n_out, n_in), dtype)
    count = np.zeros(n_out, np.int64)
    for r in range(n_out):
        nz = np.flatnonzero(sparse[r]) if pairs else np.arange(n_in)
        count[r] = len(nz)
        idx[r, : len(nz)], coef[r, : len(nz)] = nz, sparse[r, nz]
    out = (idx, coef, count, np.array(pairs, np.int64).reshape(-1, 2))
    for a in out:
        a.flags.writeable = False
    return out


@numba.njit(cache=True, nogil=True, inline="always")
def _rows(idx, coef, count, src, si, so, dst, di, do, size):
    """dst[r, di, do + q] = Σ_i coef[r, i] * src[idx[r, i], si, so + q] for q < size, every row r; each
    row's sum in one pass (rows sliced first, so that the loops index from 0 and vectorize)."""
    for r in range(count.shape[0]):
        n = count[r]
        out = dst[r, di, do : do + size]
        if n == 0:
            out[:] = 0
        elif n == 1:
            c0, r0 = coef[r, 0], src[idx[r, 0], si, so : so + size]
            for q in range(size):
                out[q] = c0 * r0[q]
        elif n == 2:
            c0, r0 = coef[r, 0], src[idx[r, 0], si, so : so + size]
            c1, r1 = coef[r, 1], src[idx[r, 1], si, so : so + size]
            for q in range(size):
                out[q] = c0 * r0[q] + c1 * r1[q]
        elif n == 3:
            c0, r0 = coef[r, 0], src[idx[r, 0], si, so : so + size]
            c1, r1 = coef[r, 1], src[idx[r, 1], si, so : so + size]
            c2, r2 = coef[r, 2], src[idx[r, 2], si, so : so + size]
            for q in range(size):
                out[q] = c0 * r0[q] + c1 * r1[q] + c2 * r2[q]
        elif n == 8:
            c0, r0 = coef[r, 0], src[idx[r, 0], si, so : so + size]
            c1, r1 = coef[r, 1], src[idx[r, 1], si, so : so + size]
            c2, r2 = coef[r, 2], src[idx[r, 2], si, so : so + size]
            c3, r3 = coef[r, 3], src[idx[r, 3], si, so : so + size]
            c4, r4 = coef[r, 4], src[idx[r, 4], si, so : so + size]
            c5, r5 = coef[r, 5], src[idx[r, 5], si, so : so + size]
            c6, r6 = coef[r, 6], src[idx[r, 6], si, so : so + size]
            c7, r7 = coef[r, 7], src[idx[r, 7], si, so : so + size]
            for q in range(size):
                out[q] = (c0 * r0[q] + c1 * r1[q] + c2 * r2[q] + c3 * r3[q]
                          + c4 * r4[q] + c5 * r5[q] + c6 * r6[q] + c7 * r7[q])
        else:
            c0, r0 = coef[r, 0], src[idx[r, 0], si, so : so + size]
            c1, r1 = coef[r, 1], src[idx[r, 1], si, so : so + size]
            c2, r2 = coef[r, 2], src[idx[r, 2], si, so : so + size]
            c3, r3 = coef[r, 3], src[idx[r, 3], si, so : so + size]
            for q in range(size):
                out[q] = c0 * r0[q] + c1 * r1[q] + c2 * r2[q] + c3 * r3[q]
            for i in range(4, n):
                ci, ri = coef[r, i], src[idx[r, i], si, so : so + size]
                for q in range(size):
                    out[q] += ci * ri[q]


@numba.njit(cache=True, nogil=True, inline="always")
def _butterflies(pairs, rows, mid, off, size):
    """(rows[j], rows[k]) -> (rows[j] + rows[k], rows[j] - rows[k]) at [.., mid, off:off + size], each pair."""
    for p in range(pairs.shape[0]):
        a = rows[pairs[p, 0], mid, off : off + size]
        b = rows[pairs[p, 1], mid, off : off + size]
        for q in range(size):
            x, y = a[q], b[q]
            a[q], b[q] = x + y, x - y


@numba.njit(cache=True, nogil=True, inline="always")
def _transform(t, src, si, so, dst, di, do, size):
    """dst[r, di, do:do + size] = Σ_u T[r, u] src[u, si, so:so + size] for the factored T ``t``."""
    idx, coef, count, pairs = t
    _rows(idx, coef, count, src, si, so, dst, di, do, size)
    _butterflies(pairs, dst, di, do, size)


# -- the four kernels -------------------------------------------------------------------------------------------
@numba.njit(cache=True, nogil=True)
def input_tiles(x, bt, lo, hi, th, tw, m, ph, pw, v):
    """v[i*a + j, t] = (Bᵀ d B)[i, j] for the a x a tile d of every tile t of samples lo..hi-1 of x
    (N, H, W, C), read from (row, col) = (tile row * m - ph, tile col * m - pw); outside x reads as zeros.
    v is (a*a, T, C); ``bt`` is Bᵀ factored (:func:`factor`)."""
    n, h, w, c = x.shape
    a = bt[0].shape[1]
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
            _transform(bt, d, s, 0, half, s, 0, size)
        for i in range(a):
            _transform(bt, half[i].reshape(a, 1, tb * c), 0, 0, rows[i].reshape(a, 1, total * c), 0, t0 * c,
                       size)


@numba.njit(cache=True, nogil=True)
def output_tiles(mm, at, th, tw, y):
    """y (nb, oh, ow, K) = Aᵀ M A for every tile of mm (a*a, T, K), placed m x m at (tile row * m,
    tile col * m); the rows and columns past (oh, ow) are dropped. ``at`` is Aᵀ factored."""
    nb, oh, ow, k = y.shape
    m, a = at[0].shape
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
            _transform(at, src, s, t0 * k, half, s, 0, size)
        for i in range(m):
            _transform(at, half[i].reshape(a, 1, tb * k), 0, 0, res, 0, 0, size)  # res[j] = (Aᵀ M A)[i, j]
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
def output_tiles_adjoint(gy, at_adj, th, tw, dm):
    """dm (a*a, T, K) = A g Aᵀ for the m x m tiles g of gy (nb, oh, ow, K), zeros past (oh, ow): the
    adjoint of :func:`output_tiles`. ``at_adj`` is A (= Aᵀ transposed) factored."""
    nb, oh, ow, k = gy.shape
    a, m = at_adj[0].shape
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
            _transform(at_adj, g, j, 0, half, j, 0, size)
        for u in range(a):
            _transform(at_adj, half[u].reshape(m, 1, tb * k), 0, 0, rows[u].reshape(a, 1, total * k), 0, t0 * k,
                       size)


@numba.njit(cache=True, nogil=True)
def input_tiles_adjoint(dv, b_adj, th, tw, m, ph, pw, dx):
    """dx (nb, H, W, C), overwritten, = the sum over the tiles of B dV Bᵀ (dv (a*a, T, C)) added back
    where :func:`input_tiles` read them; the padding's share is dropped. ``b_adj`` is B (= Bᵀ
    transposed) factored."""
    nb, h, w, c = dx.shape
    a = b_adj[0].shape[1]
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
            _transform(b_adj, src[i].reshape(a, 1, total * c), 0, t0 * c, half[i].reshape(a, 1, tb * c), 0, 0,
                       size)
        for s in range(a):
            _transform(b_adj, half, s, 0, tile, s, 0, size)
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
