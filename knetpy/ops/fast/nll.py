"""Compiled softmax cross-entropy on (N, C) scores: the log-probabilities, the labels' range check and
the loss in one pass over each row, and the gradient (softmax minus one-hot, times the scale) in one
more. NumPy takes about ten calls for the same, each with its own overhead, which is most of the cost
on a classifier's small batches (100 x 10: about 45 microseconds against 15).

The reference is :func:`knetpy.ops.nn._nll` on NumPy: the same operations in the same order per
element, with the row's sum of exponentials and the loss accumulated in float64. ``exp`` and ``log``
are the C library's, NumPy's are its own vectorised ones: results agree to the dtype's rounding, not
bit for bit. Used up to :data:`knetpy.ops.nn.FAST_NLL_MAX` elements, where one scalar ``exp`` per
element is still faster than NumPy's passes.
"""

from __future__ import annotations

import math

import numba


@numba.njit(cache=True, nogil=True)
def nll_rows(x, labels, lp, zero):
    """lp (N, C), overwritten, = log-softmax of each row of x; returns (sum over rows of lp at the
    row's label, index of the first row whose label is out of 0..C-1, or -1). ``zero``: 0 in x's
    dtype (an integer 0 would turn float32 arithmetic into float64)."""
    r, c = x.shape
    total = 0.0
    for i in range(r):
        row, out = x[i], lp[i]
        lab = labels[i]
        if lab < 0 or lab >= c:
            return total, i
        m = row[0]
        for j in range(1, c):
            v = row[j]
            m = v if v > m else m  # a NaN leaves the maximum alone: the row's sum below is NaN anyway
        if not (m - m == zero):  # an infinite or NaN maximum shifts nothing, as NumPy's where(isfinite(m), m, 0)
            m = zero
        s = 0.0
        for j in range(c):
            d = row[j] - m
            out[j] = d
            s += math.exp(d)
        ls = math.log(s)
        for j in range(c):
            out[j] = out[j] - ls
        total += out[lab]
    return total, -1


@numba.njit(cache=True, nogil=True)
def nll_grad(lp, labels, scale, grad):
    """grad (N, C), overwritten, = (exp(lp) - one-hot(labels)) * scale, row by row (labels checked)."""
    r, c = lp.shape
    for i in range(r):
        row, out = lp[i], grad[i]
        for j in range(c):
            out[j] = math.exp(row[j])
        lab = labels[i]
        out[lab] = out[lab] - 1
        for j in range(c):
            out[j] = out[j] * scale
