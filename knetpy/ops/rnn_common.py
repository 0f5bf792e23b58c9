"""Pieces shared by the fused recurrent kernels (knetpy/ops/lstm_fused.py, knetpy/ops/rnn_fused.py).

Every kernel returns one flat buffer holding y (N, T, H), the final h (N, H) and, for the LSTM,
the final c (N, H): a primitive has one output, and the three are differentiated together.
Its VJPs are raw array math for speed, so second derivatives are not available (they raise
NotImplementedError); the cell-by-cell reference path in knetpy/ops/rnn.py supports them.
"""

from __future__ import annotations

import functools

import numpy as np

from .. import parallel
from ..autograd import Tensor
from ..backend import array_namespace
from . import recycle
from .buffer_pool import give, take


def unpack(flat, N, T, H, n_states):
    """Views (y (N, T, H), h (N, H)[, c (N, H)]) of a kernel's flat result."""
    nth, nh = N * T * H, N * H
    parts = [flat[:nth].reshape(N, T, H)]
    for k in range(n_states):
        parts.append(flat[nth + k * nh : nth + (k + 1) * nh].reshape(N, H))
    return parts


def result_views(xp, into, N, T, H, n_states, dtype):
    """A kernel's result: (flat, views) with a new flat buffer, or (None, ``into``) when the caller
    hands the views to fill (one part of a batch writing straight into the whole's result)."""
    if into is not None:
        return None, into
    flat = xp.empty(N * T * H + n_states * N * H, dtype=dtype)
    return flat, unpack(flat, N, T, H, n_states)


def grad_views(g, N, T, H, n_states):
    """The result gradient as views (dy, dh[, dc]): ``g`` is a flat buffer or already those views."""
    return g if isinstance(g, tuple) else unpack(g, N, T, H, n_states)


def time_major_input_grad(dpre, w_ih, x_shape, into=None):
    """dx (N, T, F) from the pre-activation gradients of all steps, ``dpre`` (T*N, G*H) in time-major
    row order (a view of any strides): one GEMM, its time-major result seen batch-first, or copied
    into ``into`` (N, T, F) when given (one large GEMM and a copy beat T small strided ones)."""
    N, T, F = x_shape
    if into is None:
        return (dpre @ w_ih.T).reshape(T, N, F).transpose(1, 0, 2)
    xp = array_namespace(dpre, w_ih)
    tm = take(xp, (T * N, F), dpre.dtype)
    xp.matmul(dpre, w_ih.T, out=tm)
    into.transpose(1, 0, 2)[...] = tm.reshape(T, N, F)
    give(tm)
    return into


def gate_scale(xp, H, n_gates, sigmoid_gates, dtype):
    """Per-column factors: 0.5 for sigmoid gates, 1 elsewhere.

    sigmoid(z) = (1 + tanh(z / 2)) / 2, so with the sigmoid columns of the weights halved one tanh
    call over the whole gate buffer activates every gate, and the sigmoids need two cheap passes.
    """
    scale = xp.ones(n_gates * H, dtype=dtype)
    for k in sigmoid_gates:
        scale[k * H : (k + 1) * H] = 0.5
    return scale


def to_sigmoid(block):
    """tanh(z / 2) -> sigmoid(z), in place."""
    block *= 0.5
    block += 0.5


def step_masks(mask, T, dtype, xp):
    """Per step: None where every sequence is active, else (keep as 0/1 floats (N, 1), stop (N, 1)).

    A device mask is not looked at (that would stop the device at each step): every step is masked.
    """
    if mask is None:
        return None
    on_host = type(mask) is np.ndarray
    if on_host and mask.all():
        return None
    steps = []
    for t in range(T):
        m = mask[:, t : t + 1]
        steps.append(None if on_host and m.all() else (m.astype(dtype), ~m))
    return steps


def bias_grads(db, b_ih, b_hh, db_hh=None):
    """Gradients for the two bias vectors (None for an absent one); never the same array twice."""
    g_ih = db if b_ih is not None else None
    if b_hh is None:
        return g_ih, None
    if db_hh is None:
        db_hh = db.copy() if g_ih is not None else db
    return g_ih, db_hh


def cached_vjps(name, backward, n_args):
    """One VJP per argument; the first one called runs ``backward`` once for all and caches it."""

    def make(k):
        def vjp(g, ans, saved, *args, **kw):
            if isinstance(g, Tensor):
                raise NotImplementedError(
                    f"{name}: second derivatives are not supported by the fused kernel; "
                    "call it with fused=False (the cell-by-cell path) to differentiate twice"
                )
            cache = saved.get("grads")
            if cache is None or cache[0] is not g:
                cache = (g, backward(g, saved, *args, **kw))
                saved["grads"] = cache
            return cache[1][k]

        return vjp

    return [make(k) for k in range(n_args)]


def split_over_batch(forward, backward, n_states):
    """A kernel's (forward, backward) that, with knetpy's threads on, cut the batch into one part
    per thread and run the parts' sequences side by side (they are independent), each with the
    kernel as it is; with threads off, or for a small batch, the kernel itself.

    Signatures as the kernels': ``forward(x, w_ih, w_hh, b_ih, b_hh, *states, mask=None, **kw)``
    returning (flat, saved); ``backward(g, saved, <the same arguments>)`` returning the gradients
    of (x, w_ih, w_hh, b_ih, b_hh, *states). Per-sample arguments and results are cut and joined
    along the batch axis; the weight gradients of the parts are added.
    """

    def cut(a, lo, hi):
        return None if a is None else a[lo:hi]

    @functools.wraps(forward)
    def split_forward(x, w_ih, w_hh, b_ih=None, b_hh=None, *states, mask=None, **kw):
        N, T = x.shape[:2]
        H = w_hh.shape[0]
        parts = parallel.ranges(N, N * T * H * 4) if type(x) is np.ndarray else None
        if parts is None:
            return forward(x, w_ih, w_hh, b_ih, b_hh, *states, mask=mask, **kw)
        xp = array_namespace(x, w_hh)
        out = recycle.empty(xp, (N * T * H + n_states * N * H,), w_hh.dtype)  # x may be integer ids
        whole = unpack(out, N, T, H, n_states)
        saved = {}

        def part(lo, hi):  # its sequences' results go straight into their rows of the whole's
            st = [cut(s, lo, hi) for s in states]
            into = tuple(v[lo:hi] for v in whole)
            _, saved[lo] = forward(
                x[lo:hi], w_ih, w_hh, b_ih, b_hh, *st, mask=cut(mask, lo, hi), into=into, **kw
            )

        parallel.run(part, parts)
        return out, {"parts": [(lo, hi, saved[lo]) for lo, hi in parts]}

    @functools.wraps(backward)
    def split_backward(g, saved, x, w_ih, w_hh, b_ih=None, b_hh=None, *states, mask=None, **kw):
        if "parts" not in saved:
            return backward(g, saved, x, w_ih, w_hh, b_ih, b_hh, *states, mask=mask, **kw)
        xp = array_namespace(g, w_hh)
        N, T = x.shape[:2]
        H = w_hh.shape[0]
        g_whole = unpack(g, N, T, H, n_states)
        grads = {}
        joined = {}  # per-sample gradients, filled part by part

        def part(lo, hi, part_saved):
            g_part = tuple(v[lo:hi] for v in g_whole)
            st = [cut(s, lo, hi) for s in states]
            dx_into = joined[0][lo:hi] if 0 in joined else None
            result = backward(
                g_part, part_saved, x[lo:hi], w_ih, w_hh, b_ih, b_hh, *st,
                mask=cut(mask, lo, hi), dx_into=dx_into, **kw,
            )
            for i in range(5, 5 + n_states):
                if result[i] is not None:
                    joined[i][lo:hi] = result[i]
            grads[lo] = result

        # which per-sample gradients exist does not depend on the part: ask the arguments
        if kw.get("need_dx", True):
            joined[0] = recycle.empty(xp, x.shape, g.dtype)
        for i, s in enumerate(states, start=5):
            if s is not None:
                joined[i] = xp.empty(s.shape, dtype=g.dtype)
        by_start = {lo: (lo, hi, s) for lo, hi, s in saved["parts"]}
        parallel.run(lambda lo, hi: part(*by_start[lo]), [(lo, hi) for lo, hi, _ in saved["parts"]])
        results = [grads[lo] for lo, _, _ in saved["parts"]]
        total = []
        for i in range(5 + n_states):
            if i in joined:
                total.append(joined[i])
            elif results[0][i] is None:
                total.append(None)
            else:  # a weight or bias: the parts' sum
                acc = results[0][i].copy()
                for r in results[1:]:
                    acc += r[i]
                total.append(acc)
        return tuple(total)

    return split_forward, split_backward
