"""Fused whole-sequence GRU and Elman RNN kernels: one layer, one direction, all steps in one primitive.

A sequence composed of per-step ops records a score of tape nodes per step and allocates a fresh
temporary for every gate operation. These kernels instead

- project the inputs of all time steps with one GEMM,
- run one GEMM per step for the recurrence and do the gate math in place on one (N, G*H) buffer,
- keep the gate activations for the backward pass,
- form each weight gradient with one GEMM over all steps after the backward loop.

Layouts (row vectors, ``x @ w``): x (N, T, F), w_ih (F, G*H), w_hh (H, G*H), biases (G*H,),
states (N, H). Gate blocks along the G*H axis: GRU (r, z, n) as in cuDNN and PyTorch, simple RNN
one block. Inside, time runs along the leading axis of every buffer (T, N, ...), so the slice of
one step is contiguous. (The LSTM kernel, knetpy/ops/lstm_fused.py, goes further and works
feature-major.)

``mask`` is an (N, T) boolean array (True: a real step). At a masked-out step a sequence's state is
carried over unchanged and its output is zero; ``reverse=True`` runs from the last step to the first.
The result is the flat buffer of :func:`knetpy.ops.rnn_common.unpack`.
"""

from __future__ import annotations

from ..autograd import primitive
from ..backend import array_namespace
from .buffer_pool import Lease, give, take
from .rnn_common import (
    bias_grads,
    cached_vjps,
    gate_scale,
    grad_views,
    result_views,
    split_over_batch,
    step_masks,
    time_major_input_grad,
    to_sigmoid,
)


def _projected_inputs(x, w_ih, scale, bias):
    """Time-major copy of x as (T*N, F) and x @ w_ih (+ bias) for every step as (T, N, G*H)."""
    xp = array_namespace(x, w_ih)
    N, T, F = x.shape
    xt = take(xp, (T, N, F), x.dtype)
    xt[...] = x.transpose(1, 0, 2)
    xt = xt.reshape(T * N, F)
    w = w_ih if scale is None else w_ih * scale
    proj = take(xp, (T * N, w.shape[1]), x.dtype)
    xp.matmul(xt, w, out=proj)
    proj = proj.reshape(T, N, w.shape[1])
    if bias is not None:
        proj += bias if scale is None else bias * scale
    return xt, proj


def _order(T, reverse):
    return range(T - 1, -1, -1) if reverse else range(T)


def _init_state(xp, state, N, H, dtype):
    return xp.zeros((N, H), dtype=dtype) if state is None else state


def _input_and_weight_grads(xt, w_ih, dproj, x_shape, need_dx, dx_into=None):
    """dx (N, T, F) (None unless ``need_dx``; into ``dx_into`` if given) and dw_ih from the
    pre-activation gradients of all steps, one GEMM each."""
    dw_ih = xt.T @ dproj
    dx = time_major_input_grad(dproj, w_ih, x_shape, dx_into) if need_dx else None
    return dx, dw_ih


# -- GRU --------------------------------------------------------------------------------------------
def _gru_forward(
    x, w_ih, w_hh, b_ih=None, b_hh=None, h0=None, mask=None, reverse=False, need_dx=True, into=None
):
    """A whole GRU sequence (PyTorch's formulation); returns the flat buffer (y, h_T).

    With the (r, z, n) blocks of xi = x @ w_ih + b_ih and hh = h @ w_hh + b_hh:
    r = sigmoid(xi_r + hh_r), z = sigmoid(xi_z + hh_z), n = tanh(xi_n + r * hh_n),
    h' = (1 - z) * n + z * h.
    """
    xp = array_namespace(x, w_ih, w_hh)
    N, T, _ = x.shape
    H = w_hh.shape[0]
    dt = x.dtype
    scale = gate_scale(xp, H, 3, (0, 1), dt)
    xt, gates = _projected_inputs(x, w_ih, scale, b_ih)
    w_rec = w_hh * scale
    b_rec = None if b_hh is None else b_hh * scale
    masks = step_masks(mask, T, dt, xp)

    out, (y, h_last) = result_views(xp, into, N, T, H, 1, dt)
    h_prev = take(xp, (T, N, H), dt)
    hh_n = take(xp, (T, N, H), dt)  # W_hn h + b_hn of each step, for the gradient of r
    rec = xp.empty((N, 3 * H), dtype=dt)
    tmp = xp.empty((N, H), dtype=dt)

    order = _order(T, reverse)
    h_prev[order[0]] = _init_state(xp, h0, N, H, dt)
    for k, t in enumerate(order):
        h = h_prev[t]
        h_out = h_prev[order[k + 1]] if k + 1 < T else h_last
        g = gates[t]
        xp.matmul(h, w_rec, out=rec)
        if b_rec is not None:
            rec += b_rec
        rz = g[:, : 2 * H]
        rz += rec[:, : 2 * H]
        xp.tanh(rz, out=rz)
        to_sigmoid(rz)
        r, z, n = g[:, :H], g[:, H : 2 * H], g[:, 2 * H :]
        hh_n[t] = rec[:, 2 * H :]
        xp.multiply(r, hh_n[t], out=tmp)
        n += tmp
        xp.tanh(n, out=n)
        # h' = n + z * (h - n)
        xp.subtract(h, n, out=tmp)
        tmp *= z
        xp.add(n, tmp, out=h_out)
        m = masks[t] if masks is not None else None
        if m is None:
            y[:, t] = h_out
        else:
            xp.multiply(h_out, m[0], out=y[:, t])
            xp.copyto(h_out, h, where=m[1])
    saved = {
        "xt": xt,
        "gates": gates,
        "h_prev": h_prev,
        "hh_n": hh_n,
        "masks": masks,
        "lease": Lease(xt.base, gates.base, h_prev, hh_n),
    }
    return out, saved


def _gru_backward(
    g, saved, x, w_ih, w_hh, b_ih=None, b_hh=None, h0=None, mask=None, reverse=False, need_dx=True, dx_into=None
):
    xp = array_namespace(w_hh)
    N, T, _ = x.shape
    H = w_hh.shape[0]
    dt = w_hh.dtype
    gates, h_prev, hh_n, masks = saved["gates"], saved["h_prev"], saved["hh_n"], saved["masks"]
    dy, dh_last = grad_views(g, N, T, H, 1)
    dxi = take(xp, gates.shape, dt)  # gradients of x @ w_ih + b_ih
    dhh = take(xp, gates.shape, dt)  # gradients of h @ w_hh + b_hh (differ from dxi in the n block)
    dh = dh_last.copy()
    dht = xp.empty((N, H), dtype=dt)
    a = xp.empty((N, H), dtype=dt)
    b = xp.empty((N, H), dtype=dt)
    w_rec_t = w_hh.T
    for t in reversed(_order(T, reverse)):
        act, d, dr_ = gates[t], dxi[t], dhh[t]
        r, z, n = act[:, :H], act[:, H : 2 * H], act[:, 2 * H :]
        dr, dz, dn = d[:, :H], d[:, H : 2 * H], d[:, 2 * H :]
        m = masks[t] if masks is not None else None
        xp.add(dh, dy[:, t], out=dht)
        if m is not None:
            dh_keep = dh * m[1]
            dht *= m[0]
        # dz = dh * (h - n) * z (1 - z)
        xp.subtract(1, z, out=a)
        a *= z
        xp.subtract(h_prev[t], n, out=b)
        a *= b
        xp.multiply(a, dht, out=dz)
        # dn = dh * (1 - z) * (1 - n^2)
        xp.multiply(n, n, out=a)
        xp.subtract(1, a, out=a)
        xp.subtract(1, z, out=b)
        a *= b
        xp.multiply(a, dht, out=dn)
        # dr = dn * hh_n * r (1 - r)
        xp.subtract(1, r, out=a)
        a *= r
        a *= hh_n[t]
        xp.multiply(a, dn, out=dr)
        # The recurrent side sees (dr, dz, dn * r).
        dr_[:, : 2 * H] = d[:, : 2 * H]
        xp.multiply(dn, r, out=dr_[:, 2 * H :])
        xp.matmul(dr_, w_rec_t, out=dh)
        xp.multiply(dht, z, out=a)
        dh += a
        if m is not None:
            dh += dh_keep
    flat_i = dxi.reshape(T * N, 3 * H)
    flat_h = dhh.reshape(T * N, 3 * H)
    dw_hh = h_prev.reshape(T * N, H).T @ flat_h
    dx, dw_ih = _input_and_weight_grads(saved["xt"], w_ih, flat_i, x.shape, need_dx, dx_into)
    db_ih = flat_i.sum(axis=0) if b_ih is not None else None
    db_hh = flat_h.sum(axis=0) if b_hh is not None else None
    give(dxi, dhh)
    return dx, dw_ih, dw_hh, db_ih, db_hh, dh if h0 is not None else None


_gru_split = split_over_batch(_gru_forward, _gru_backward, 1)
gru_seq = primitive(_gru_split[0], saves=True, name="gru_seq")
gru_seq.defvjp(*cached_vjps("gru_seq", _gru_split[1], 6))


# -- simple RNN -------------------------------------------------------------------------------------
def _rnn_forward(
    x,
    w_ih,
    w_hh,
    b_ih=None,
    b_hh=None,
    h0=None,
    mask=None,
    reverse=False,
    activation="tanh",
    need_dx=True,
    into=None,
):
    """A whole Elman RNN sequence, h' = act(x @ w_ih + h @ w_hh + b_ih + b_hh), act tanh or relu;
    returns the flat buffer (y, h_T)."""
    xp = array_namespace(x, w_ih, w_hh)
    N, T, _ = x.shape
    H = w_hh.shape[0]
    dt = x.dtype
    bias = b_ih if b_hh is None else (b_hh if b_ih is None else b_ih + b_hh)
    xt, pre = _projected_inputs(x, w_ih, None, bias)  # becomes the activations in place
    masks = step_masks(mask, T, dt, xp)
    relu = activation == "relu"

    out, (y, h_last) = result_views(xp, into, N, T, H, 1, dt)
    h_prev = take(xp, (T, N, H), dt)
    rec = xp.empty((N, H), dtype=dt)

    order = _order(T, reverse)
    h_prev[order[0]] = _init_state(xp, h0, N, H, dt)
    for k, t in enumerate(order):
        h = h_prev[t]
        h_out = h_prev[order[k + 1]] if k + 1 < T else h_last
        a = pre[t]
        xp.matmul(h, w_hh, out=rec)
        a += rec
        if relu:
            xp.maximum(a, 0, out=a)
        else:
            xp.tanh(a, out=a)
        m = masks[t] if masks is not None else None
        if m is None:
            h_out[...] = a
            y[:, t] = a
        else:
            xp.multiply(a, m[0], out=y[:, t])
            xp.copyto(h_out, a)
            xp.copyto(h_out, h, where=m[1])
    saved = {
        "xt": xt,
        "act": pre,
        "h_prev": h_prev,
        "masks": masks,
        "lease": Lease(xt.base, pre.base, h_prev),
    }
    return out, saved


def _rnn_backward(
    g,
    saved,
    x,
    w_ih,
    w_hh,
    b_ih=None,
    b_hh=None,
    h0=None,
    mask=None,
    reverse=False,
    activation="tanh",
    need_dx=True,
    dx_into=None,
):
    xp = array_namespace(w_hh)
    N, T, _ = x.shape
    H = w_hh.shape[0]
    act, h_prev, masks = saved["act"], saved["h_prev"], saved["masks"]
    relu = activation == "relu"
    dy, dh_last = grad_views(g, N, T, H, 1)
    dpre = take(xp, act.shape, act.dtype)
    dh = dh_last.copy()
    w_rec_t = w_hh.T
    for t in reversed(_order(T, reverse)):
        a, d = act[t], dpre[t]
        m = masks[t] if masks is not None else None
        xp.add(dh, dy[:, t], out=d)
        if m is not None:
            dh_keep = dh * m[1]
            d *= m[0]
        if relu:
            d *= a > 0
        else:
            d *= 1 - a * a
        xp.matmul(d, w_rec_t, out=dh)
        if m is not None:
            dh += dh_keep
    flat = dpre.reshape(T * N, H)
    dw_hh = h_prev.reshape(T * N, H).T @ flat
    dx, dw_ih = _input_and_weight_grads(saved["xt"], w_ih, flat, x.shape, need_dx, dx_into)
    db_ih, db_hh = bias_grads(flat.sum(axis=0), b_ih, b_hh)
    give(dpre)
    return dx, dw_ih, dw_hh, db_ih, db_hh, dh if h0 is not None else None


_rnn_split = split_over_batch(_rnn_forward, _rnn_backward, 1)
rnn_seq = primitive(_rnn_split[0], saves=True, name="rnn_seq")
rnn_seq.defvjp(*cached_vjps("rnn_seq", _rnn_split[1], 6))
