"""Elementwise primitives with NumPy broadcasting; gradients are summed back to each operand's shape."""

from __future__ import annotations

import math

import numpy as np

from .. import parallel
from ..autograd import Tensor, primitive
from ..autograd import nondiff as _nondiff
from ..backend import array_namespace
from .shape import unbroadcast


def _shape(x):
    return x.shape if hasattr(x, "shape") else np.shape(x)


def _broadcast_error(name, x, y):
    return ValueError(
        f"{name}: operands with shapes {_shape(x)} and {_shape(y)} cannot be broadcast together"
    )


def _binary(name, fn):
    def fwd(x, y):
        try:
            return fn(x, y)
        except ValueError:
            raise _broadcast_error(name, x, y) from None

    fwd.__name__ = name
    return fwd


def _split(ufunc, python_op):
    """The binary op: NumPy arrays through ``ufunc`` (split over knetpy's threads when large)."""

    def fn(x, y):
        if parallel._threads > 1 and type(x) is np.ndarray and (type(y) is np.ndarray or isinstance(y, (int, float))):
            return parallel.elementwise(ufunc, x, y)
        return python_op(x, y)

    return fn


# reads=False: these VJPs use only the operands' shapes, so in-place edits after the op are harmless
add = primitive(_binary("add", _split(np.add, lambda x, y: x + y)), reads=False)
sub = primitive(_binary("sub", _split(np.subtract, lambda x, y: x - y)), reads=False)
mul = primitive(_binary("mul", _split(np.multiply, lambda x, y: x * y)))
div = primitive(_binary("div", lambda x, y: x / y))
add.defvjp(lambda g, ans, x, y: unbroadcast(g, x), lambda g, ans, x, y: unbroadcast(g, y))
sub.defvjp(lambda g, ans, x, y: unbroadcast(g, x), lambda g, ans, x, y: unbroadcast(-g, y))
mul.defvjp(lambda g, ans, x, y: unbroadcast(g * y, x), lambda g, ans, x, y: unbroadcast(g * x, y))
div.defvjp(
    lambda g, ans, x, y: unbroadcast(g / y, x),
    lambda g, ans, x, y: unbroadcast(-g * ans / y, y),
)


@primitive
def pow(x, y):
    """``x ** y`` elementwise."""
    try:
        return x**y
    except ValueError:
        raise _broadcast_error("pow", x, y) from None


def _pow_vjp_x(g, ans, x, y):
    if isinstance(y, (int, float)) and not isinstance(y, bool):
        if y == 2:
            return g * (2 * x)
        return unbroadcast(g * (y * x ** (y - 1)), x)
    return unbroadcast(g * y * x ** (y - 1), x)


def _pow_vjp_y(g, ans, x, y):
    # d(x^y)/dy = x^y log x; taken as 0 where x == 0 (the limit for y > 0), as PyTorch does.
    if isinstance(x, (int, float)):  # a Python base (2 ** t): a Python log keeps t's dtype
        log_x = math.log(x) if x > 0 else (0.0 if x == 0 else math.nan)
        return unbroadcast(g * (ans * log_x), y)
    safe = where(x == 0, 1, x)
    return unbroadcast(g * where(x == 0, 0, ans * log(safe)), y)


pow.defvjp(_pow_vjp_x, _pow_vjp_y)


@primitive(reads=False)
def neg(x):
    return -x


neg.defvjp(lambda g, ans, x: -g)


def _on_xp(ufunc):
    """``ufunc`` for NumPy data and Python numbers; the same function of the array's own library otherwise."""
    fname = ufunc.__name__

    def fn(x):
        if type(x) is np.ndarray:  # the common case, without a namespace lookup
            return ufunc(x)
        return getattr(array_namespace(x), fname)(x)

    return fn


def _unary(name, doc, ufunc):
    fwd = _on_xp(ufunc)
    fwd.__name__ = name
    fwd.__doc__ = doc
    return primitive(fwd)


exp = _unary("exp", "Elementwise e**x.", np.exp)
log = _unary("log", "Elementwise natural logarithm.", np.log)
log1p = _unary("log1p", "Elementwise log(1 + x), accurate for small x.", np.log1p)
expm1 = _unary("expm1", "Elementwise exp(x) - 1, accurate for small x.", np.expm1)
sqrt = _unary("sqrt", "Elementwise square root.", np.sqrt)
abs = _unary("abs", "Elementwise absolute value.", np.abs)
sin = _unary("sin", "Elementwise sine.", np.sin)
cos = _unary("cos", "Elementwise cosine.", np.cos)
tanh = _unary("tanh", "Elementwise hyperbolic tangent.", np.tanh)
square = _unary("square", "Elementwise x**2 (Knet's abs2).", np.square)

exp.defvjp(lambda g, ans, x: g * ans)
exp.prim.reads = False  # the VJP uses the output only
log.defvjp(lambda g, ans, x: g / x)
log1p.defvjp(lambda g, ans, x: g / (x + 1))
expm1.defvjp(lambda g, ans, x: g * (ans + 1))
sqrt.defvjp(lambda g, ans, x: g / (ans * 2))
abs.defvjp(lambda g, ans, x: g * sign(x))
sin.defvjp(lambda g, ans, x: g * cos(x))
cos.defvjp(lambda g, ans, x: -g * sin(x))
tanh.defvjp(lambda g, ans, x: g * (1 - ans * ans))
# (g * 2) first: where g is the same on every call (the gradient of a mean), a compiled step makes it once
square.defvjp(lambda g, ans, x: (g * 2) * x)
abs2 = square


sign = _nondiff("sign", _on_xp(np.sign))
equal = _nondiff("equal", lambda x, y: x == y)
not_equal = _nondiff("not_equal", lambda x, y: x != y)
less = _nondiff("less", lambda x, y: x < y)
less_equal = _nondiff("less_equal", lambda x, y: x <= y)
greater = _nondiff("greater", lambda x, y: x > y)
greater_equal = _nondiff("greater_equal", lambda x, y: x >= y)
isfinite = _nondiff("isfinite", _on_xp(np.isfinite))
isnan = _nondiff("isnan", _on_xp(np.isnan))
floor = _nondiff("floor", _on_xp(np.floor))
ceil = _nondiff("ceil", _on_xp(np.ceil))
round = _nondiff("round", _on_xp(np.round))


@primitive
def where(cond, x, y):
    """``x`` where ``cond`` holds, ``y`` elsewhere."""
    xp = array_namespace(cond, x, y)
    try:
        return xp.where(cond, x, y)
    except ValueError:
        raise ValueError(
            f"where: shapes {_shape(cond)}, {_shape(x)} and {_shape(y)} cannot be broadcast together"
        ) from None


where.defvjp(
    None,
    lambda g, ans, c, x, y: unbroadcast(where(c, g, 0), x),
    lambda g, ans, c, x, y: unbroadcast(where(c, 0, g), y),
)


def _split_ties(g, wins, ties):
    # Where both operands are equal the gradient is shared half and half (as in PyTorch).
    return where(ties, g * 0.5, where(wins, g, 0))


@primitive
def maximum(x, y):
    """Elementwise maximum."""
    try:
        return array_namespace(x, y).maximum(x, y)
    except ValueError:
        raise _broadcast_error("maximum", x, y) from None


@primitive
def minimum(x, y):
    """Elementwise minimum."""
    try:
        return array_namespace(x, y).minimum(x, y)
    except ValueError:
        raise _broadcast_error("minimum", x, y) from None


def _minmax_vjp(first, bigger):
    def vjp(g, ans, x, y):
        a, b = (x, y) if first else (y, x)
        wins = (a > b) if bigger else (a < b)
        return unbroadcast(_split_ties(g, wins, a == b), a)

    return vjp


maximum.defvjp(_minmax_vjp(True, True), _minmax_vjp(False, True))
minimum.defvjp(_minmax_vjp(True, False), _minmax_vjp(False, False))


@primitive
def clip(x, lo=None, hi=None):
    """Limit values to [lo, hi]; either bound may be None. Gradient passes where lo <= x <= hi."""
    return array_namespace(x).clip(x, lo, hi)


def _clip_vjp(g, ans, x, lo=None, hi=None):
    keep = True
    if lo is not None:
        keep = x >= lo
    if hi is not None:
        keep = (x <= hi) if keep is True else (keep & (x <= hi))
    return g if keep is True else unbroadcast(where(keep, g, 0), x)


# Array bounds receive the gradient where they are the active limit (as torch.clamp does).
clip.defvjp(
    _clip_vjp,
    lambda g, ans, x, lo=None, hi=None: unbroadcast(where(x < lo, g, 0), lo),
    lambda g, ans, x, lo=None, hi=None: unbroadcast(where(x > hi, g, 0), hi),
)


def _r(op):
    return lambda self, other: op(other, self)


Tensor.__add__ = add
Tensor.__radd__ = _r(add)
Tensor.__sub__ = sub
Tensor.__rsub__ = _r(sub)
Tensor.__mul__ = mul
Tensor.__rmul__ = _r(mul)
Tensor.__truediv__ = div
Tensor.__rtruediv__ = _r(div)
Tensor.__pow__ = pow
Tensor.__rpow__ = _r(pow)
Tensor.__neg__ = neg
Tensor.__pos__ = lambda self: self
Tensor.__abs__ = abs
Tensor.__eq__ = equal
Tensor.__ne__ = not_equal
Tensor.__lt__ = less
Tensor.__le__ = less_equal
Tensor.__gt__ = greater
Tensor.__ge__ = greater_equal
Tensor.__and__ = _nondiff("logical_and", lambda x, y: x & y)
Tensor.__or__ = _nondiff("logical_or", lambda x, y: x | y)
Tensor.__invert__ = _nondiff("invert", lambda x: ~x)
Tensor.exp = exp
Tensor.log = log
Tensor.sqrt = sqrt
Tensor.abs = abs
Tensor.tanh = tanh
Tensor.sin = sin
Tensor.cos = cos
Tensor.square = square
Tensor.clip = clip
Tensor.clamp = clip
