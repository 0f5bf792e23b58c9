"""Special functions as differentiable primitives: the error function and its complement.

NumPy has no ``erf``, so it is computed here in two regimes, each accurate to a few units in the
last place of float32 and float64:

* ``|x| < 2``: erf(x) = x * p(x**2), with p the Chebyshev interpolant of erf(sqrt(t)) / sqrt(t) on
  t in [0, 4]. It is built once at import from the standard library's ``math.erf`` (degree 9 for
  float32, 19 for float64) and evaluated by Horner's rule in u = t/2 - 1, about half the work of
  the Maclaurin series for the same accuracy;
* ``|x| >= 2``: Laplace's continued fraction
  erfc(x) = exp(-x**2) / sqrt(pi) / (x + (1/2) / (x + 1 / (x + (3/2) / (x + ...)))),
  evaluated bottom-up with a fixed depth, which converges quickly there and keeps the tiny tail
  values of erfc accurate relative to their size.
"""

from __future__ import annotations

import math

import numpy as np

from .autograd import primitive
from .backend import array_namespace, as_array, get_dtype
from .ops.elementwise import exp

_CENTRAL_LIMIT = 2.0
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
_INV_SQRT_PI = 1.0 / math.sqrt(math.pi)
# Continued-fraction depth for full precision at x >= 2, per dtype.
_FRACTION_DEPTH = {np.dtype(np.float32): 12, np.dtype(np.float64): 48}


def _erf_over_x(t):
    """erf(sqrt(t)) / sqrt(t) for t >= 0 (its limit 2/sqrt(pi) at 0), from the standard library."""
    r = math.sqrt(t)
    return math.erf(r) / r if r > 0 else _TWO_OVER_SQRT_PI


def _central_coeffs(degree):
    """Power-basis coefficients, in u = t/2 - 1, of the Chebyshev interpolant of erf(sqrt t)/sqrt t."""
    cheb = np.polynomial.chebyshev.chebinterpolate(
        lambda u: np.array([_erf_over_x(2.0 * (v + 1.0)) for v in np.atleast_1d(u)]), degree
    )
    return [float(c) for c in np.polynomial.chebyshev.cheb2poly(cheb)]


_CENTRAL = {np.dtype(np.float32): _central_coeffs(9), np.dtype(np.float64): _central_coeffs(19)}


def _floating(x):
    """``x`` as a float32 or float64 array (integers take the default dtype; float16 is widened)."""
    x = as_array(x)
    if x.dtype.kind != "f":
        return x.astype(get_dtype())
    if x.dtype.itemsize < 4:
        return x.astype(np.float32)
    return x


def _flat(x):
    """``x`` as a float 1-D array (0-d inputs too, so in-place arithmetic always has an array)."""
    return _floating(x).reshape(-1)


def _central(x):
    """erf(x) for |x| < 2; elsewhere finite but wrong (t is capped at 4): the caller replaces those."""
    xp = array_namespace(x)
    coeffs = _CENTRAL.get(x.dtype, _CENTRAL[np.dtype(np.float64)])
    u = x * x
    xp.minimum(u, 4.0, out=u)  # keeps the polynomial bounded outside its range
    u *= 0.5
    u -= 1.0
    acc = xp.full_like(x, coeffs[-1])
    for c in reversed(coeffs[:-1]):
        acc *= u
        acc += c
    acc *= x
    return acc


def _tail(z):
    """erfc(z) for z >= 2."""
    xp = array_namespace(z)
    f = z.copy()
    for k in range(_FRACTION_DEPTH.get(z.dtype, 48), 0, -1):
        f = z + (k / 2) / f
    return xp.exp(-z * z) * _INV_SQRT_PI / f


def _tail_mask(x):
    """The mask of elements outside the central regime, or None when there are none."""
    big = ~(array_namespace(x).abs(x) < _CENTRAL_LIMIT)  # NaN counts as big: the tail passes it on
    return big if big.any() else None


def _shape(x):
    return x.shape if hasattr(x, "shape") else np.shape(x)


def _select(x, central, tail_of):
    """On a device: ``central`` inside the central regime, ``tail_of(erfc(|x|))`` outside, chosen
    elementwise. (NumPy instead computes the tail on the elements that need it: picking them out by a
    mask would read the mask's count back from a device.)"""
    xp = array_namespace(x)
    a = xp.abs(x)
    tail = _tail(xp.maximum(a, _CENTRAL_LIMIT))  # the fraction only where it converges; NaN stays NaN
    return xp.where(a < _CENTRAL_LIMIT, central, tail_of(tail))


@primitive
def erf(x):
    """The error function 2/sqrt(pi) * integral_0^x exp(-t**2) dt, elementwise."""
    shape = _shape(x)
    x = _flat(x)
    with np.errstate(over="ignore"):  # x*x overflowing to inf for huge x is expected and harmless
        out = _central(x)
        if type(x) is not np.ndarray:
            return _select(x, out, lambda tail: array_namespace(x).sign(x) * (1 - tail)).reshape(shape)
        big = _tail_mask(x)
        if big is not None:
            xp = array_namespace(x)
            xb = x[big]
            out[big] = xp.sign(xb) * (1 - _tail(xp.abs(xb)))
    return out.reshape(shape)


@primitive
def erfc(x):
    """The complementary error function 1 - erf(x), accurate where it is tiny (large x)."""
    shape = _shape(x)
    x = _flat(x)
    xp = array_namespace(x)
    with np.errstate(over="ignore"):  # as in erf
        out = _central(x)
        xp.subtract(1, out, out=out)
        if type(x) is not np.ndarray:
            return _select(x, out, lambda tail: xp.where(x > 0, tail, 2 - tail)).reshape(shape)
        big = _tail_mask(x)
        if big is not None:
            xb = x[big]
            tail = _tail(xp.abs(xb))
            out[big] = xp.where(xb > 0, tail, 2 - tail)
    return out.reshape(shape)


erf.defvjp(lambda g, ans, x: g * (_TWO_OVER_SQRT_PI * exp(-(x * x))))
erfc.defvjp(lambda g, ans, x: g * (-_TWO_OVER_SQRT_PI * exp(-(x * x))))
