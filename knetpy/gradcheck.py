"""Check autodiff gradients against central finite differences."""

from __future__ import annotations

import numpy as np

from .autograd import Tensor, no_grad
from .backend import to_numpy
from .functional import value_and_grad


class GradcheckError(AssertionError):
    """Raised when analytic and numerical gradients disagree; the message is the report."""


def _to_float64(a):
    v = a.value if isinstance(a, Tensor) else a
    if isinstance(v, float) or (hasattr(v, "dtype") and v.dtype.kind == "f"):
        return np.array(to_numpy(v), dtype=np.float64)
    return None


def gradcheck(f, *args, argnums=None, eps=1e-6, atol=1e-5, rtol=1e-4, seed=0, max_elements=None):
    """Compare ``grad`` of ``f`` with central differences for every floating argument.

    Floating arguments are checked in float64 (copies are made). A non-scalar output is reduced with
    a fixed random projection, so every output element is checked. Returns True or raises
    :class:`GradcheckError` naming the argument, the element, and both values.
    ``max_elements`` checks only that many (randomly chosen) elements per argument.
    """
    xs = [_to_float64(a) for a in args]
    if argnums is None:
        argnums = tuple(i for i, x in enumerate(xs) if x is not None)
    elif isinstance(argnums, int):
        argnums = (argnums,)
    if not argnums:
        raise ValueError("gradcheck: no floating arguments to check")
    call_args = [xs[i] if xs[i] is not None else args[i] for i in range(len(args))]

    with no_grad():
        out0 = f(*call_args)
    out0 = to_numpy(out0.value if isinstance(out0, Tensor) else out0)
    proj = np.random.default_rng(seed).standard_normal(np.shape(out0))

    def scalar(*a):
        out = f(*a)
        return (out * proj).sum() if np.ndim(out0) else out

    _, analytic = value_and_grad(scalar, argnums=argnums)(*call_args)
    rng = np.random.default_rng(seed + 1)
    problems = []
    for k, i in enumerate(argnums):
        x = call_args[i]
        ga = to_numpy(analytic[k])
        if ga.shape != np.shape(x):
            raise GradcheckError(f"argument {i}: gradient has shape {ga.shape}, argument has {np.shape(x)}")
        flat = x.reshape(-1)
        idxs = np.arange(flat.size)
        if max_elements is not None and flat.size > max_elements:
            idxs = rng.choice(flat.size, max_elements, replace=False)
        gn = np.zeros(flat.size)
        for j in idxs:
            old = flat[j]
            flat[j] = old + eps
            with no_grad():
                up = float(to_numpy(_value(scalar(*call_args))))
            flat[j] = old - eps
            with no_grad():
                down = float(to_numpy(_value(scalar(*call_args))))
            flat[j] = old
            gn[j] = (up - down) / (2 * eps)
        gaf = ga.reshape(-1)[idxs]
        gnf = gn[idxs]
        err = np.abs(gaf - gnf)
        bad = err > atol + rtol * np.abs(gnf)
        if bad.any():
            w = int(np.argmax(err - rtol * np.abs(gnf)))
            pos = np.unravel_index(idxs[w], np.shape(x)) if np.ndim(x) else ()
            problems.append(
                f"argument {i} (shape {np.shape(x)}): {int(bad.sum())} of {len(idxs)} elements differ; "
                f"worst at index {tuple(int(p) for p in pos)}: autodiff {gaf[w]:.10g}, "
                f"finite differences {gnf[w]:.10g} (abs error {err[w]:.3g})"
            )
    if problems:
        name = getattr(f, "__name__", repr(f))
        raise GradcheckError(f"gradcheck failed for {name}:\n  " + "\n  ".join(problems))
    return True


def _value(x):
    return x.value if isinstance(x, Tensor) else x


def relative_error(analytic, numeric):
    """The relative error of a gradient check as CS231n defines it, |a - n| / max(|a|, |n|), taken over
    whole arrays with norms (one large element then sets the scale, so round-off in tiny elements
    does not count): < 1e-7 is fine, > 1e-2 means the gradient is wrong. 0 when both are 0."""
    a = np.asarray(to_numpy(_value(analytic)), dtype=np.float64)
    n = np.asarray(to_numpy(_value(numeric)), dtype=np.float64)
    scale = max(float(np.linalg.norm(a)), float(np.linalg.norm(n)))
    return float(np.linalg.norm(a - n) / scale) if scale > 0 else 0.0
