"""Compiled forward pass, and filter and bias gradients, of a first convolution (few input channels,
stride 1) followed by relu and max pooling, on *planes* instead of gathered windows. The forward pass
(2x2 pooling, stride 2) is at the end of this module; the gradients first.

The output gradient is laid out filter-major, one plane per (filter, sample) as large as the padded
input, zeros wherever no output position is: G (F, N*Hp*Wp). The padded input is laid out
channel-major the same way: X (C, N*Hp*Wp + slack). Then output position p and its window's element
(ki, kj) are a constant distance apart, ``ki*dh*Wp + kj*dw``, and each entry of the filter gradient is
one long dot product:

    dw[f, c, ki, kj] = sum_p G[f, p] * X[c, p + ki*dh*Wp + kj*dw]

A loop over p with a few such sums at once (two filters by five kernel columns) vectorises over p and
keeps its sums in registers: no windows are gathered (LeNet's first layer: 5.8 MB a batch) and no
skinny GEMM runs (25 x 20 results summed over 57,600 rows, where BLAS reaches a fifth of its peak).
The pooling's backward pass writes G directly from the pooled gradient, one sample at a time, and the
sums over that sample's planes follow while they are in cache (a whole batch's planes, 6.3 MB for
LeNet, made a round trip through memory); each sample's sums are added up in float64.

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
#: the forward pass's sums run over a multiple of this many positions (the vector loop's step)
LANES = 32
#: the forward pass's sums run over this many samples' planes at once: fewer, longer loops
SAMPLES = 4


@numba.njit(cache=True, nogil=True, fastmath=_MATH)
def relu_pool_filter_grad_planes(g, code, act, x, dw, db, oh, ow, kh, kw, sh, sw, ph, pw, hp, wp, dh, dwl, lo, hi):
    """dw (F, C, kh, kw) and db (F,) += the filter and bias gradients of samples lo..hi-1 (sums in dw's
    and db's dtype: pass float64), one sample at a time: its plane per filter (hp, wp) = the pooled
    gradient g[b, :, :, f] times relu's slope ``act > 0`` at each window's winner (``code``: the
    winner's offset number, pooling window kh x kw, stride sh, sw, padding ph, pw), zeros elsewhere;
    then each entry of dw one dot product of a plane with x shifted by the window element's offset
    (see the module's notes), while the sample's planes are in cache.

    g, code, act (n, PH, PW, F) channels-last, the winners inside the convolution's output (oh, ow);
    x (C, n*hp*wp + slack) the padded input channel-major, read up to (kh-1)*dh*wp + (kw-1)*dwl
    elements past a sample's planes.
    """
    _, poh, pow_, f = g.shape
    zero, one = x.dtype.type(0), x.dtype.type(1)
    halves = kh == 2 and kw == 2 and sh == 2 and sw == 2 and ph == 0 and pw == 0
    plane = hp * wp
    planes = np.empty((f, hp, wp), x.dtype)
    flat = planes.reshape(f, plane)
    # (other windows) one sample's gradient, relu's slope applied, and winners, filter-major
    gt = np.empty((f, poh, pow_), x.dtype)
    ct = np.empty((f, poh, pow_), code.dtype)  # as narrow as the code: int64 winners run 8x slower
    for b in range(lo, hi):
        if halves:
            # zeros, then each window's gradient at its winner, read channels-last as it lies (through
            # filter-major copies, as the other windows go, this pass took 15-20% longer for LeNet)
            flat[:, :] = 0
            for oi in range(poh):
                for oj in range(pow_):
                    gr, cr, ar = g[b, oi, oj], code[b, oi, oj], act[b, oi, oj]
                    for ch in range(f):
                        # g * (act > 0), as the reference multiplies (a NaN stays NaN); a select and a
                        # multiply, as multiplying by a bool is several times slower in numba
                        val = gr[ch] * (one if ar[ch] > 0 else zero)
                        k = cr[ch]
                        if val - val == zero:  # finite: the window's other three are val * 0 = 0
                            planes[ch, 2 * oi + k // 2, 2 * oj + k % 2] = val
                        else:  # inf or NaN: val * 0 is NaN there, as the reference's
                            for e in range(4):
                                planes[ch, 2 * oi + e // 2, 2 * oj + e % 2] = val * (one if e == k else zero)
        else:
            for oi in range(poh):
                for oj in range(pow_):
                    gr, cr, ar = g[b, oi, oj], code[b, oi, oj], act[b, oi, oj]
                    for ch in range(f):
                        gt[ch, oi, oj] = gr[ch] * (one if ar[ch] > 0 else zero)
                        ct[ch, oi, oj] = cr[ch]
            for ch in range(f):
                _scatter_any(gt[ch], ct[ch], planes[ch], oh, ow, kw, sh, sw, ph, pw)
        for fa in range(0, f, 2):
            fb = min(fa + 1, f - 1)  # an odd last filter is summed twice and added once
            _filter_pair_sums(flat[fa], flat[fb], x, b * plane, dw[fa], dw[fb], wp, dh, dwl, fb != fa)
            s = zero
            t = zero
            u, v = flat[fa], flat[fb]
            for p in range(plane):
                s += u[p]
                t += v[p]
            db[fa] += s
            if fb != fa:
                db[fb] += t


@numba.njit(cache=True, nogil=True, fastmath=_MATH, inline="always")
def _filter_pair_sums(u, v, x, at0, dwa, dwb, row, dh, dwl, both):
    """dwa[c, ki, kj] += sum_p u[p] * x[c, at0 + p + ki*dh*row + kj*dwl], and dwb likewise from v when
    ``both`` (not for an odd last filter, whose v is u)."""
    c, kh, kw = dwa.shape
    plane = u.shape[0]
    for ch in range(c):
        xc = x[ch, at0:]
        for ki in range(kh):
            kj = 0
            while kj < kw:
                # one view per column: an index with a runtime offset would need numba's
                # negative-index check, which stops the loop from vectorising; columns past kw
                # read x (within its slack) and are dropped
                at = ki * dh * row + kj * dwl
                y0, y1, y2 = xc[at:], xc[at + dwl :], xc[at + 2 * dwl :]
                y3, y4 = xc[at + 3 * dwl :], xc[at + 4 * dwl :]
                a0 = a1 = a2 = a3 = a4 = x.dtype.type(0)
                b0 = b1 = b2 = b3 = b4 = x.dtype.type(0)
                for p in range(plane):
                    g0, g1 = u[p], v[p]
                    x0, x1, x2, x3, x4 = y0[p], y1[p], y2[p], y3[p], y4[p]
                    a0 += g0 * x0
                    a1 += g0 * x1
                    a2 += g0 * x2
                    a3 += g0 * x3
                    a4 += g0 * x4
                    b0 += g1 * x0
                    b1 += g1 * x1
                    b2 += g1 * x2
                    b3 += g1 * x3
                    b4 += g1 * x4
                sums_a, sums_b = (a0, a1, a2, a3, a4), (b0, b1, b2, b3, b4)
                for m in range(min(COLUMNS, kw - kj)):
                    dwa[ch, ki, kj + m] += sums_a[m]
                    if both:
                        dwb[ch, ki, kj + m] += sums_b[m]
                kj += COLUMNS


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


# -- the forward pass: convolution, bias, relu and 2x2 max pooling straight from the input's phases ---------------
#
# A 2x2 window with stride 2 takes the convolution's outputs (2i + a, 2j + b), a and b in {0, 1}. With
# the padded input split into its four *phases* by row and column parity, P[r % 2, s % 2][r // 2, s // 2]
# = X[r, s], output (2i + a, 2j + b) reads window element (ki, kj) at P[..][i + r // 2, j + s // 2]
# (r = a + ki*dh, s = b + kj*dw): for each window element, tap and phase a constant distance from
# pooled position (i, j). So the four convolution outputs of every pooling window are long sums
# vectorised over the pooled positions, and the bias, relu and the window's maximum follow in the
# same cache-resident pass: no windows gathered, no full activation written.


@numba.njit(cache=True, nogil=True, fastmath=_MATH)
def conv_relu_pool_planes(xph, wk, bias, pooled, code, plane, row, dh, dwl, lo, hi):
    """pooled[b, i, j, f] = max over the 2x2 window (i, j) of relu(conv + bias[f]), code = the
    winner's offset number (the first maximal one, as :func:`knetpy.ops.fast.pool.max_pool2d`), for
    samples lo..hi-1.

    xph (4*C, N*plane + slack): each channel's four phases (row parity, then column parity), each
    sample's phase ``plane`` = H2 * ``row`` elements, H2 and ``row`` half the padded input's height
    and width rounded up, zeros past the input; wk (F, C, kh, kw) the correlation's weights (a
    true convolution's already flipped); pooled, code (N, PH, PW, F) channels-last.
    """
    f = pooled.shape[3]
    poh, pow_ = pooled.shape[1], pooled.shape[2]
    c, kh, kw = wk.shape[1], wk.shape[2], wk.shape[3]
    # SAMPLES samples a pass: their planes and the whole phase rows of the last one's pooled rows (the
    # rows and columns past the pooled output are computed and dropped), rounded up to whole vector
    # blocks: a scalar remainder loop after each short vectorised one cost about a third
    most = -(-((SAMPLES - 1) * plane + poh * row) // LANES) * LANES
    zero = pooled.dtype.type(0)
    acc = np.empty((4, 2, most), pooled.dtype)  # [window element, filter of the pair, position]
    best = np.empty((f, most), pooled.dtype)  # the samples' pooled values and winners, filter-major
    won = np.empty((f, most), np.uint8)
    for first in range(lo, hi, SAMPLES):
        nb = min(SAMPLES, hi - first)
        length = -(-((nb - 1) * plane + poh * row) // LANES) * LANES
        base = first * plane
        for fa in range(0, f, 2):
            fb = min(fa + 1, f - 1)  # an odd last filter is computed twice and stored once
            for e in range(4):
                s0, s1 = acc[e, 0, :length], acc[e, 1, :length]
                s0[:] = zero
                s1[:] = zero
                for ch in range(c):
                    for ki in range(kh):
                        r = e // 2 + ki * dh
                        q = ch * 4 + (r % 2) * 2
                        o = base + (r // 2) * row
                        wa, wb = wk[fa, ch, ki], wk[fb, ch, ki]
                        kj = 0
                        while kj + COLUMNS <= kw:
                            # one view per tap (see _filter_pair_sums); no zero-weight padding
                            # columns, which would turn an inf in the input into NaN
                            t = e % 2 + kj * dwl
                            y0, y1, y2 = _tap(xph, q, o, t), _tap(xph, q, o, t + dwl), _tap(xph, q, o, t + 2 * dwl)
                            y3, y4 = _tap(xph, q, o, t + 3 * dwl), _tap(xph, q, o, t + 4 * dwl)
                            a0, a1, a2, a3, a4 = wa[kj], wa[kj + 1], wa[kj + 2], wa[kj + 3], wa[kj + 4]
                            b0, b1, b2, b3, b4 = wb[kj], wb[kj + 1], wb[kj + 2], wb[kj + 3], wb[kj + 4]
                            for p in range(length):
                                x0, x1, x2, x3, x4 = y0[p], y1[p], y2[p], y3[p], y4[p]
                                s0[p] += a0 * x0 + a1 * x1 + a2 * x2 + a3 * x3 + a4 * x4
                                s1[p] += b0 * x0 + b1 * x1 + b2 * x2 + b3 * x3 + b4 * x4
                            kj += COLUMNS
                        while kj + 3 <= kw:  # 3x3 kernels: a single column at a time was store-bound
                            t = e % 2 + kj * dwl
                            y0, y1, y2 = _tap(xph, q, o, t), _tap(xph, q, o, t + dwl), _tap(xph, q, o, t + 2 * dwl)
                            a0, a1, a2 = wa[kj], wa[kj + 1], wa[kj + 2]
                            b0, b1, b2 = wb[kj], wb[kj + 1], wb[kj + 2]
                            for p in range(length):
                                x0, x1, x2 = y0[p], y1[p], y2[p]
                                s0[p] += a0 * x0 + a1 * x1 + a2 * x2
                                s1[p] += b0 * x0 + b1 * x1 + b2 * x2
                            kj += 3
                        while kj < kw:
                            y0 = _tap(xph, q, o, e % 2 + kj * dwl)
                            a0, b0 = wa[kj], wb[kj]
                            for p in range(length):
                                x0 = y0[p]
                                s0[p] += a0 * x0
                                s1[p] += b0 * x0
                            kj += 1
            for k in range(2):
                fk = fa if k == 0 else fb
                _bias_relu_max4(acc[0, k], acc[1, k], acc[2, k], acc[3, k], bias[fk], best[fk], won[fk], length)
        for b in range(first, first + nb):  # filter-major to channels-last, while in cache
            for i in range(poh):
                out, wins = pooled[b, i], code[b, i]
                at = (b - first) * plane + i * row
                for fk in range(f):
                    mr, kr = best[fk, at:], won[fk, at:]
                    for j in range(pow_):
                        out[j, fk] = mr[j]
                        wins[j, fk] = kr[j]


@numba.njit(cache=True, nogil=True, inline="always")
def _tap(xph, q, o, t):
    """The view of the phases that a window's column offset ``t`` reads from: the column phase t % 2
    of the phase pair q, from o + t // 2."""
    return xph[q + t % 2, o + t // 2 :]


@numba.njit(cache=True, nogil=True, inline="always")
def _bias_relu_max4(v0, v1, v2, v3, bk, best, won, length):
    """best = max of relu(v + bk) over the four, won = the first maximal one's number, for the first
    ``length`` positions; as the reference's bias and relu (NaN stays NaN, ``0 if v < 0``) and max
    pooling (:func:`knetpy.ops.fast.pool.max_pool2d`: a NaN wins, the winner moves on a strict increase
    only)."""
    zero = best.dtype.type(0)
    for p in range(length):
        m = v0[p] + bk
        m = zero if m < zero else m
        k = np.uint8(0)
        v = v1[p] + bk
        v = zero if v < zero else v
        gt = v > m
        m = v if (gt | (v != v)) else m
        k = np.uint8(1) if gt else k
        v = v2[p] + bk
        v = zero if v < zero else v
        gt = v > m
        m = v if (gt | (v != v)) else m
        k = np.uint8(2) if gt else k
        v = v3[p] + bk
        v = zero if v < zero else v
        gt = v > m
        m = v if (gt | (v != v)) else m
        k = np.uint8(3) if gt else k
        best[p], won[p] = m, k
