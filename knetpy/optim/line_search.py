"""A line search satisfying the strong Wolfe conditions (Nocedal & Wright, Algorithms 3.5 and 3.6).

Works on a 1-D function of the step length ``t``: ``phi(t) -> (f, g)`` with ``g`` the full gradient
at ``x + t d``; the directional derivative is ``g . d``. Trial points come from cubic interpolation
of the two bracketing points, kept away from the bracket ends so the search always makes progress.
"""

from __future__ import annotations

import math
from typing import NamedTuple


class Trial(NamedTuple):
    """One evaluated step length: value, gradient and directional derivative there."""

    t: float
    f: float
    g: object
    slope: float


def cubic_minimizer(a: Trial, b: Trial, bounds=None) -> float:
    """Minimizer of the cubic matching values and slopes at ``a`` and ``b``, clamped to ``bounds``.

    ``bounds`` defaults to the interval between the two points; where the cubic has no minimizer
    (or the points coincide) the middle of the bounds is returned.
    """
    lo, hi = bounds if bounds is not None else (min(a.t, b.t), max(a.t, b.t))
    if a.t == b.t:
        return (lo + hi) / 2.0
    d1 = a.slope + b.slope - 3.0 * (a.f - b.f) / (a.t - b.t)
    disc = d1 * d1 - a.slope * b.slope
    if disc < 0:
        return (lo + hi) / 2.0
    d2 = math.sqrt(disc)
    # Write the formula from the farther point back toward the nearer one (N&W eq. 3.59).
    near, far = (a, b) if a.t <= b.t else (b, a)
    denom = far.slope - near.slope + 2.0 * d2
    if denom == 0:
        return (lo + hi) / 2.0
    t = far.t - (far.t - near.t) * (far.slope + d2 - d1) / denom
    return min(max(t, lo), hi)


def strong_wolfe(phi, dot_d, t, f0, g0, slope0, d_max, c1=1e-4, c2=0.9, tolerance_change=1e-9, max_evals=25):
    """Search for a step ``t`` along ``d`` with sufficient decrease and small slope.

    Args:
        phi: ``phi(t) -> (f, g)`` at ``x + t d`` (must leave the parameters at ``x``).
        dot_d: ``dot_d(g) -> g . d``.
        t: first trial step; f0, g0, slope0: value, gradient and slope at ``t = 0`` (slope0 < 0).
        d_max: ``max |d|``, to stop when the bracket is too small to change the parameters.
        c1, c2: the sufficient-decrease and curvature constants; max_evals: evaluation budget.

    Returns ``(f, g, t, evaluations)`` at the best point found.
    """
    origin = Trial(0.0, f0, g0, slope0)

    def evaluate(step):
        f, g = phi(step)
        return Trial(step, f, g, dot_d(g))

    def sufficient_decrease(p):
        return p.f <= f0 + c1 * p.t * slope0

    def flat_enough(p):
        return abs(p.slope) <= -c2 * slope0

    current = evaluate(t)
    evals = 1
    previous = origin
    bracket = None  # [a, b]: an interval known to contain an acceptable step
    found = False
    # Phase 1: grow the step until it overshoots (bracket) or is acceptable.
    while evals - 1 < max_evals:
        if not sufficient_decrease(current) or (evals > 2 and current.f >= previous.f):
            bracket = [previous, current]
            break
        if flat_enough(current):
            bracket = [current]
            found = True
            break
        if current.slope >= 0:
            bracket = [previous, current]
            break
        growth = (current.t + 0.01 * (current.t - previous.t), 10.0 * current.t)
        step = cubic_minimizer(previous, current, bounds=growth)
        previous = current
        current = evaluate(step)
        evals += 1
    if bracket is None:  # budget spent while still growing
        bracket = [origin, current]

    # Phase 2 (zoom): shrink the bracket until a point meets both conditions.
    low = 0 if bracket[0].f <= bracket[-1].f else 1
    stalled = False
    while not found and evals - 1 < max_evals:
        a, b = bracket
        if abs(b.t - a.t) * d_max < tolerance_change:
            break
        step = cubic_minimizer(a, b)
        left, right = min(a.t, b.t), max(a.t, b.t)
        margin = 0.1 * (right - left)
        if min(right - step, step - left) < margin:
            # Too close to an end: accept once, but if it happens twice in a row (or the step
            # sits on an end) move it a tenth of the bracket inside, to guarantee shrinking.
            if stalled or step >= right or step <= left:
                step = right - margin if abs(step - right) < abs(step - left) else left + margin
                stalled = False
            else:
                stalled = True
        else:
            stalled = False
        trial = evaluate(step)
        evals += 1
        high = 1 - low
        if not sufficient_decrease(trial) or trial.f >= bracket[low].f:
            bracket[high] = trial
            low = 0 if bracket[0].f <= bracket[1].f else 1
        else:
            if flat_enough(trial):
                found = True
            elif trial.slope * (bracket[high].t - bracket[low].t) >= 0:
                bracket[high] = bracket[low]
            bracket[low] = trial
    best = bracket[low]
    return best.f, best.g, best.t, evals
