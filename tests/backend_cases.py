"""Helpers of the backend tests: an op run forward and backward on NumPy and on another array library
(the strict test backend, CuPy), and the two runs' results compared."""

from __future__ import annotations

import numpy as np

import knetpy as kp


def moved(x, asarray):
    """``x`` with its NumPy arrays and scalars (also inside tuples, lists and dicts) passed through ``asarray``."""
    if isinstance(x, (np.ndarray, np.generic)):
        return asarray(x)
    if isinstance(x, tuple):
        return tuple(moved(v, asarray) for v in x)
    if isinstance(x, list):
        return [moved(v, asarray) for v in x]
    if isinstance(x, dict):
        return {k: moved(v, asarray) for k, v in x.items()}
    return x


def differentiable(a):
    return isinstance(a, (np.ndarray, np.generic)) and a.dtype.kind == "f"


def default_diff(args):
    """The arguments differentiated unless a test says otherwise: the floating ones."""
    return [i for i, a in enumerate(args) if differentiable(a)]


def run_op(fn, args, kw, move, diff):
    """Forward, then backward from a fixed random projection of every floating output.

    ``move`` puts the inputs on the backend; the arguments numbered in ``diff`` become parameters.
    Returns the output values and the gradients of those arguments.
    """
    inputs = [kp.Param(move(a)) if i in diff else move(a) for i, a in enumerate(args)]
    out = fn(*inputs, **move(kw))
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    rng = np.random.default_rng(7)
    total = None
    for o in outs:
        if isinstance(o, kp.Tensor) and o.requires_grad:
            term = kp.sum(o * move(rng.standard_normal(o.shape).astype(o.dtype)))
            total = term if total is None else total + term
    if total is not None:
        total.backward()
    values = [o.value if isinstance(o, kp.Tensor) else o for o in outs]
    return values, [inputs[i].grad for i in diff]


def assert_runs_match(got, want, diff, close):
    """``run_op``'s results on the backend (``got``) against NumPy's (``want``): ``close(name, got, want)``
    for each output and gradient, and None exactly where NumPy gives None (an output without a gradient:
    argmax, comparisons)."""
    values, grads = got
    want_values, want_grads = want
    for k, (g, w) in enumerate(zip(values, want_values)):
        if w is None:
            assert g is None
        else:
            close(f"output {k}", g, w)
    for i, g, w in zip(diff, grads, want_grads):
        if w is None:
            assert g is None
        else:
            close(f"gradient of argument {i}", g, w)
