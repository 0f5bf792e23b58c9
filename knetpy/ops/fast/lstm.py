"""Compiled LSTM gate math for :mod:`knetpy.ops.lstm_fused`, one time step per call.

The buffers are the fused kernel's feature-major ones (see that module): gates (T, 4H, N), cell
states by slot (T+1, H, N), tanh of the cell state (T, H, N), the stacked inputs xh (F+H, T+1, N)
and the gate gradients (4H, T, N). Whole C-contiguous buffers and step indices are passed, not
per-step views, so the inner loop over the batch has unit stride and compiles to SIMD code.

Each kernel does in one pass what the NumPy reference does in a dozen: every operand is read once
and no temporary is written. The arithmetic is the reference's, in the same order, in the arrays'
dtype; only float32 tanh differs (a rational approximation that vectorizes, within a few ulp of
NumPy's), so float64 results match the reference to its rounding and float32 ones to float32's.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, types
from numba.extending import overload

# error_model="numpy": no zero-division checks in the loops, so they vectorize
_JIT = dict(cache=True, nogil=True, error_model="numpy")

# tanh(x) = x P(x^2) / Q(x^2), the rational fit Eigen uses, with x clamped to [-c, c] (tanh(c) is 1 - 3e-7).
_F = np.float32
_CLAMP, _TINY = _F(7.90531110763549805), _F(0.0004)
_A1, _A3, _A5 = _F(4.89352455891786e-03), _F(6.37261928875436e-04), _F(1.48572235717979e-05)
_A7, _A9 = _F(5.12229709037114e-08), _F(-8.60467152213735e-11)
_A11, _A13 = _F(2.00018790482477e-13), _F(-2.76076847742355e-16)
_B0, _B2 = _F(4.89352518554385e-03), _F(2.26843463243900e-03)
_B4, _B6 = _F(1.18534705686654e-04), _F(1.19825839466702e-06)


def tanh(x):
    """tanh of a float scalar inside the kernels (math.tanh for float64; a vectorizable fit for float32)."""
    return math.tanh(x)


@overload(tanh)
def _tanh_overload(x):
    if x != types.float32:
        return lambda x: math.tanh(x)

    def tanh32(x):
        y = min(max(x, -_CLAMP), _CLAMP)
        y2 = y * y
        p = ((((((_A13 * y2 + _A11) * y2 + _A9) * y2 + _A7) * y2 + _A5) * y2 + _A3) * y2 + _A1) * y
        q = ((_B6 * y2 + _B4) * y2 + _B2) * y2 + _B0
        return p / q if abs(x) >= _TINY else x  # tiny x: x itself; NaN stays NaN

    return tanh32


@njit(inline="always")
def _cell(zi, zf, zg, zo, c_prev, half):
    """Gate activations from the pre-activations (sigmoid ones halved), the new cell state, its tanh."""
    i = tanh(zi) * half + half
    f = tanh(zf) * half + half
    g = tanh(zg)
    o = tanh(zo) * half + half
    cn = f * c_prev + i * g
    return i, f, g, o, cn, tanh(cn)


@njit(**_JIT)
def forward_step(gates, t, bias, c, s_in, s_out, tanh_c, xh, h_row, y, one):
    """Step ``t``: activate gates[t] in place (pre-activations with the sigmoid blocks halved, plus
    ``bias``), then c[s_out] = f c[s_in] + i g, tanh_c[t] = tanh(c[s_out]) and the new h into
    xh[h_row:, s_out] and, batch-major, into the output y[:, t] (N, T, H) while it is in cache.
    ``one`` is 1 in the arrays' dtype (it keeps the arithmetic in that dtype)."""
    H, N = c.shape[1], c.shape[2]
    half = one / (one + one)
    for j in range(H):
        bi, bf, bg, bo = bias[j], bias[H + j], bias[2 * H + j], bias[3 * H + j]
        for n in range(N):
            i, f, g, o, cn, tc = _cell(
                gates[t, j, n] + bi, gates[t, H + j, n] + bf, gates[t, 2 * H + j, n] + bg,
                gates[t, 3 * H + j, n] + bo, c[s_in, j, n], half,
            )
            gates[t, j, n], gates[t, H + j, n], gates[t, 2 * H + j, n], gates[t, 3 * H + j, n] = i, f, g, o
            c[s_out, j, n] = cn
            tanh_c[t, j, n] = tc
            xh[h_row + j, s_out, n] = o * tc
    for n in range(N):
        for j in range(H):
            y[n, t, j] = xh[h_row + j, s_out, n]


@njit(**_JIT)
def forward_step_ids(gates, t, table_t, ids_tm, zero_bias, c, s_in, s_out, tanh_c, xh, y, one):
    """:func:`forward_step` for one-hot inputs: the input projection of sample n is column
    ids_tm[t, n] of ``table_t`` (4H, V), which holds the bias too; xh holds only h."""
    for k in range(gates.shape[1]):  # the gather on its own: the gate loop then stays vectorized
        for n in range(gates.shape[2]):
            gates[t, k, n] += table_t[k, ids_tm[t, n]]
    forward_step(gates, t, zero_bias, c, s_in, s_out, tanh_c, xh, 0, y, one)


@njit(**_JIT)
def backward_step(gates, tanh_c, c, t, s_in, dh, dy, dc, dgates, dy_t, one):
    """Step ``t`` backward: from dh (the gradient reaching this step's h from later steps), dy[:, t]
    (dy (N, T, H), batch-major, moved into the scratch ``dy_t`` (H, N) first) and dc (in place: it
    leaves as the gradient of the previous cell state), the pre-activation gradients dgates[:, t]
    (of the unscaled gate inputs, blocks i, f, g, o)."""
    H, N = dc.shape[0], dc.shape[1]
    for n in range(N):
        for j in range(H):
            dy_t[j, n] = dy[n, t, j]
    for j in range(H):
        for n in range(N):
            i, f = gates[t, j, n], gates[t, H + j, n]
            g, o = gates[t, 2 * H + j, n], gates[t, 3 * H + j, n]
            tc = tanh_c[t, j, n]
            dht = dh[j, n] + dy_t[j, n]
            d = dc[j, n] + (one - tc * tc) * o * dht
            dgates[3 * H + j, t, n] = (one - o) * o * tc * dht
            dgates[j, t, n] = (one - i) * i * g * d
            dgates[2 * H + j, t, n] = (one - g * g) * i * d
            dgates[H + j, t, n] = (one - f) * f * c[s_in, j, n] * d
            dc[j, n] = d * f
