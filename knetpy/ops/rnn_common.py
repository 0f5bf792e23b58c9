"""Pieces shared by the fused recurrent kernels (knetpy/ops/lstm_fused.py, knetpy/ops/rnn_fused.py).

Every kernel returns one flat buffer holding y (N, T, H), the final h (N, H) and, for the LSTM,
the final c (N, H): a primitive has one output, and the three are differentiated together.
Its VJPs are raw array math for speed, so second derivatives are not available (they raise
NotImplementedError); the cell-by-cell reference path in knetpy/ops/rnn.py supports them.
"""

from __future__ import annotations

from ..autograd import Tensor


def unpack(flat, N, T, H, n_states):
    """Views (y (N, T, H), h (N, H)[, c (N, H)]) of a kernel's flat result."""
    nth, nh = N * T * H, N * H
    parts = [flat[:nth].reshape(N, T, H)]
    for k in range(n_states):
        parts.append(flat[nth + k * nh : nth + (k + 1) * nh].reshape(N, H))
    return parts


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
    """Per step: None where every sequence is active, else (keep as 0/1 floats (N, 1), stop (N, 1))."""
    if mask is None or bool(mask.all()):
        return None
    steps = []
    for t in range(T):
        m = mask[:, t : t + 1]
        steps.append(None if bool(m.all()) else (m.astype(dtype), ~m))
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
