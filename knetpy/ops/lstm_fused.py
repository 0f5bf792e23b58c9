"""The fused whole-sequence LSTM kernel (one layer, one direction), laid out for speed.

Interface and gate order as in :mod:`knetpy.ops.rnn_fused` (x (N, T, F), w_ih (F, 4H),
w_hh (H, 4H), blocks i, f, g, o; the result is the flat buffer (y, h_T, c_T)).

Inside, every per-step array is feature-major, (features, N), so that each gate block is one
contiguous (H, N) slab: NumPy's elementwise loops run several times slower on the strided column
blocks of a batch-major (N, 4H) buffer. Per step, one GEMM computes all gates from the stacked
input ``[x_t; h_{t-1}]``:

    gates_t (4H, N) = [w_ih; w_hh]^T (4H, F+H) @ xh_t (F+H, N)

``xh`` keeps the stacked inputs of all steps side by side, (F+H, T+1, N): the x rows are filled
once, and each step writes its new h into the slot the next step reads, so the same array is
the GEMM operand of every step and, after the backward loop, of the single weight-gradient GEMM
``d[w_ih; w_hh] = xh @ dgates^T``. The gate gradients are written to a (4H, T, N) buffer, which is
(4H, T*N) without a copy: dx is one GEMM too. Only the recurrent part of the input gradient,
w_hh @ dgates_t, is computed step by step.

The gate math between the GEMMs is NumPy here; with numba installed it runs as one compiled pass per
step (:mod:`knetpy.ops.fast.lstm`), and this NumPy code stays the reference it is tested against.
"""

from __future__ import annotations

import numpy as np

from ..autograd import primitive
from ..backend import array_namespace
from . import fast
from .buffer_pool import Lease, give, take
from .rnn_common import (
    cached_vjps,
    gate_scale,
    grad_views,
    result_views,
    split_over_batch,
    step_masks,
    time_major_input_grad,
    to_sigmoid,
)


def _kernels(*arrays):
    """The compiled gate kernels (:mod:`knetpy.ops.fast.lstm`) when they apply, else None (NumPy)."""
    if not fast.enabled() or any(type(a) is not np.ndarray for a in arrays):
        return None
    dt = arrays[0].dtype
    if dt not in (np.float32, np.float64) or any(a.dtype != dt for a in arrays):
        return None
    from .fast import lstm  # compiled on first use: numba loads only when an LSTM runs

    return lstm


def _slots(T, reverse):
    """Per step, in processing order: (t, slot of its stacked input, slot its new state goes to)."""
    if reverse:
        return [(t, t + 1, t) for t in range(T - 1, -1, -1)]
    return [(t, t, t + 1) for t in range(T)]


def _feature_major(xp, a, out):
    """out (F, T, N) <- a (N, T, F), through a time-major copy (much faster than one strided copy)."""
    N, T, F = a.shape
    tm = take(xp, (T, N, F), a.dtype)
    tm[...] = a.transpose(1, 0, 2)
    for t in range(T):
        out[:, t, :] = tm[t].T
    give(tm)


def _batch_major(a, out):
    """out (N, T, F) <- a (F, T, N), one time step at a time (each a 2-D transpose that stays in cache)."""
    for t in range(a.shape[1]):
        out[:, t, :] = a[:, t, :].T


def _lstm_forward(
    x, w_ih, w_hh, b_ih=None, b_hh=None, h0=None, c0=None, mask=None, reverse=False, need_dx=True, into=None
):
    """A whole LSTM sequence; returns the flat buffer (y, h_T, c_T) (see :func:`unpack`).

    i, f, o = sigmoid, g = tanh of the (i, f, g, o) blocks of x @ w_ih + h @ w_hh + b_ih + b_hh;
    c' = f * c + i * g; h' = o * tanh(c'). ``mask`` (N, T) bool: at a False step a sequence keeps
    its state and outputs zero. ``reverse``: run from the last step to the first. ``need_dx=False``
    skips the input gradient (one GEMM) when x needs none.

    ``x`` may also be integer ids (N, T) standing for one-hot inputs: the input projection of id v
    is then row v of ``w_ih`` (V, 4H), gathered per step instead of multiplied (see
    :func:`knetpy.ops.rnn.rnnforw`, which feeds an embedding lookup this way), and x has no gradient.
    """
    xp = array_namespace(x, w_ih, w_hh)
    ids = x if x.ndim == 2 else None
    N, T = x.shape[:2]
    F = 0 if ids is not None else x.shape[2]  # rows of x in the stacked inputs
    H = w_hh.shape[0]
    dt = w_hh.dtype if ids is not None else x.dtype
    scale = gate_scale(xp, H, 4, (0, 1, 3), dt)
    bias = b_ih if b_hh is None else (b_hh if b_ih is None else b_ih + b_hh)
    table_t = None
    if ids is None:
        w_cat_t = xp.concatenate([w_ih, w_hh], axis=0).T * scale[:, None]  # (4H, F+H)
    else:  # the bias goes into the table rows: one gather adds both
        w_cat_t = w_hh.T * scale[:, None]
        table_t = xp.ascontiguousarray(((w_ih if bias is None else w_ih + bias) * scale).T)  # (4H, V)
        ids_tm = xp.ascontiguousarray(ids.T)  # (T, N): one step's ids side by side
        bias = None
    w_cat_t = xp.ascontiguousarray(w_cat_t)
    bias = None if bias is None else (bias * scale)[:, None]
    masks = step_masks(mask, T, dt, xp)
    masks = None if masks is None else [None if m is None else (m[0].T, m[1].T) for m in masks]

    slots = _slots(T, reverse)
    first_in, last_out = slots[0][1], slots[-1][2]
    xh = take(xp, (F + H, T + 1, N), dt)
    x_lo = 1 if reverse else 0  # slots T (forward) / 0 (reverse) only ever hold a final state
    if ids is None:
        _feature_major(xp, x, xh[:F, x_lo : x_lo + T, :])
    xh[F:, first_in, :] = 0 if h0 is None else h0.T
    c = take(xp, (T + 1, H, N), dt)  # cell state by slot, like the h rows of xh
    c[first_in] = 0 if c0 is None else c0.T
    gates = take(xp, (T, 4 * H, N), dt)
    tanh_c = take(xp, (T, H, N), dt)
    ig = xp.empty((H, N), dtype=dt)
    kern = _kernels(gates, w_cat_t) if masks is None else None
    if kern is not None and ids is not None and (type(ids) is not np.ndarray or ids.dtype.kind not in "iu"):
        kern = None
    if kern is not None:
        kern_bias = xp.zeros(4 * H, dtype=dt) if bias is None else xp.ascontiguousarray(bias[:, 0], dtype=dt)
        one = dt.type(1)

    out, (y, h_last, c_last) = result_views(xp, into, N, T, H, 2, dt)

    for t, s_in, s_out in slots:
        g = gates[t]
        xp.matmul(w_cat_t, xh[:, s_in, :], out=g)
        if kern is not None:  # the gate math below, and y[:, t], in one compiled pass
            if ids is None:
                kern.forward_step(gates, t, kern_bias, c, s_in, s_out, tanh_c, xh, F, y, one)
            else:
                kern.forward_step_ids(gates, t, table_t, ids_tm, kern_bias, c, s_in, s_out, tanh_c, xh, y, one)
            continue
        if bias is not None:
            g += bias
        if ids is not None:
            g += table_t[:, ids_tm[t]]
        xp.tanh(g, out=g)
        to_sigmoid(g[: 2 * H])
        to_sigmoid(g[3 * H :])
        i, f, cand, o = g[:H], g[H : 2 * H], g[2 * H : 3 * H], g[3 * H :]
        c_in, c_out = c[s_in], c[s_out]
        xp.multiply(f, c_in, out=c_out)
        xp.multiply(i, cand, out=ig)
        c_out += ig
        tc = tanh_c[t]
        xp.tanh(c_out, out=tc)
        h_out = xh[F:, s_out, :]
        xp.multiply(o, tc, out=h_out)
        m = masks[t] if masks is not None else None
        if m is not None:  # stopped sequences carry their state over
            xp.copyto(h_out, xh[F:, s_in, :], where=m[1])
            xp.copyto(c_out, c_in, where=m[1])

    if kern is None:
        y_lo = 0 if reverse else 1
        _batch_major(xh[F:, y_lo : y_lo + T, :], y)
    if mask is not None and masks is not None:
        y *= mask[:, :, None]  # outputs past a sequence's end are zero, not its carried state
    h_last[...] = xh[F:, last_out, :].T
    c_last[...] = c[last_out].T
    saved = {
        "xh": xh,
        "c": c,
        "gates": gates,
        "tanh_c": tanh_c,
        "masks": masks,
        "lease": Lease(xh, c, gates, tanh_c),
    }
    return out, saved


def _lstm_backward(
    g,
    saved,
    x,
    w_ih,
    w_hh,
    b_ih=None,
    b_hh=None,
    h0=None,
    c0=None,
    mask=None,
    reverse=False,
    need_dx=True,
    dx_into=None,
):
    xp = array_namespace(w_hh)
    ids = x if x.ndim == 2 else None
    N, T = x.shape[:2]
    F = 0 if ids is not None else x.shape[2]
    H = w_hh.shape[0]
    dt = w_hh.dtype
    xh, c, gates, tanh_c, masks = saved["xh"], saved["c"], saved["gates"], saved["tanh_c"], saved["masks"]
    dy, dh_last, dc_last = grad_views(g, N, T, H, 2)
    dgates = take(xp, (4 * H, T, N), dt)
    dh = xp.ascontiguousarray(dh_last.T)  # gradient reaching the state that leaves the current step
    dc = xp.ascontiguousarray(dc_last.T)
    dht = xp.empty((H, N), dtype=dt)
    a = xp.empty((H, N), dtype=dt)
    b = xp.empty((H, N), dtype=dt)
    kern = _kernels(dgates, dh, dc, dy, w_hh) if masks is None else None
    dy_fm = None
    if kern is None:
        dy_fm = take(xp, (H, T, N), dt)
        _feature_major(xp, dy, dy_fm)
    one = dt.type(1)
    for t, s_in, _ in reversed(_slots(T, reverse)):
        if kern is not None:  # the gate gradients below in one compiled pass (dy[:, t] read there)
            kern.backward_step(gates, tanh_c, c, t, s_in, dh, dy, dc, dgates, dht, one)
            xp.matmul(w_hh, dgates[:, t, :], out=dh)
            continue
        act, d = gates[t], dgates[:, t, :]
        i, f, cand, o = act[:H], act[H : 2 * H], act[2 * H : 3 * H], act[3 * H :]
        di, df, dcand, do = d[:H], d[H : 2 * H], d[2 * H : 3 * H], d[3 * H :]
        m = masks[t] if masks is not None else None
        xp.add(dh, dy_fm[:, t, :], out=dht)
        if m is not None:  # stopped sequences pass their state gradients straight through
            dh_keep, dc_keep = dh * m[1], dc * m[1]
            dht *= m[0]
            dc *= m[0]
        tc = tanh_c[t]
        # dc += dh * o * (1 - tanh(c)^2)
        xp.multiply(tc, tc, out=a)
        xp.subtract(1, a, out=a)
        a *= o
        a *= dht
        dc += a
        # do = dh * tanh(c) * o (1 - o)
        xp.subtract(1, o, out=b)
        b *= o
        b *= tc
        xp.multiply(b, dht, out=do)
        # di = dc * g * i (1 - i)
        xp.subtract(1, i, out=a)
        a *= i
        a *= cand
        xp.multiply(a, dc, out=di)
        # dg = dc * i * (1 - g^2)
        xp.multiply(cand, cand, out=b)
        xp.subtract(1, b, out=b)
        b *= i
        xp.multiply(b, dc, out=dcand)
        # df = dc * c_prev * f (1 - f); then dc flows on to the previous step through f
        xp.subtract(1, f, out=a)
        a *= f
        a *= c[s_in]
        xp.multiply(a, dc, out=df)
        dc *= f
        xp.matmul(w_hh, d, out=dh)
        if m is not None:
            dh += dh_keep
            dc += dc_keep
    flat = dgates.reshape(4 * H, T * N)
    x_lo = 1 if reverse else 0
    inputs = xh[:, x_lo : x_lo + T, :].reshape(F + H, T * N)  # the stacked input of every step
    dw = inputs @ flat.T
    db = flat.sum(axis=1)
    dx = None
    if ids is not None:  # a table row's gradient: the sum of its steps' gate gradients, as one GEMM
        onehot = xp.zeros((w_ih.shape[0], T * N), dtype=dt)
        onehot[ids.T.reshape(-1), xp.arange(T * N)] = 1  # columns in flat's (step, sample) order
        dw_in = onehot @ flat.T
    else:
        dw_in = dw[:F]
        if need_dx:
            dx = time_major_input_grad(flat.T, w_ih, x.shape, dx_into)
    give(dgates, dy_fm)
    return (
        dx,
        dw_in,
        dw[F:],
        db if b_ih is not None else None,
        (db.copy() if b_ih is not None else db) if b_hh is not None else None,
        xp.ascontiguousarray(dh.T) if h0 is not None else None,
        xp.ascontiguousarray(dc.T) if c0 is not None else None,
    )


_split_forward, _split_backward = split_over_batch(_lstm_forward, _lstm_backward, 2)
lstm_seq = primitive(_split_forward, saves=True, name="lstm_seq")
lstm_seq.defvjp(*cached_vjps("lstm_seq", _split_backward, 7))
