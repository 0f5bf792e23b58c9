"""Activation functions, usable directly (``kp.activations.gelu(x)``) or by name (``get("gelu")``).

Every function works on raw arrays (returning arrays) and on tensors (recording the graph), and
keeps the input's floating dtype. Parameters such as ``alpha`` or ``steepness`` are keyword
arguments; ``get("leaky_relu", alpha=0.2)`` binds them.
"""

from __future__ import annotations

import functools
import math

from ._names import Registry
from .autograd import Tensor, primitive
from .backend import array_namespace, as_array, get_dtype
from .ops import abs as _abs
from .ops import elu as _elu
from .ops import exp, tanh, where
from .ops import log_softmax as _log_softmax
from .ops import relu as _relu
from .ops import selu as _selu
from .ops import sigm as _sigm
from .ops import softmax as _softmax
from .ops import softplus as _softplus
from .special import _floating, erfc

_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def linear(x):
    """The identity: x."""
    return x


relu = _relu
sigmoid = _sigm
elu = _elu
selu = _selu
softplus = _softplus
softmax = _softmax
log_softmax = _log_softmax


@primitive
def leaky_relu(x, alpha=0.01):
    """x for x > 0, alpha * x otherwise."""
    return array_namespace(x).where(x > 0, x, x * alpha)


leaky_relu.defvjp(lambda g, ans, x, alpha=0.01: where(x > 0, g, g * alpha))


@primitive(saves=True)
def gelu(x):
    """Gaussian error linear unit x * Phi(x), with the exact normal CDF Phi (not the tanh estimate)."""
    x = _floating(x)
    # Phi(x) = erfc(-x / sqrt 2) / 2 stays accurate far into the negative tail, where 1 + erf cancels.
    cdf = erfc.__wrapped__(-x * _SQRT_HALF) * 0.5
    return x * cdf, cdf


def _gelu_vjp(g, ans, cdf, x):
    if isinstance(x, Tensor):  # higher order: the CDF must be a function of x on the graph
        cdf = erfc(-x * _SQRT_HALF) * 0.5
    return g * (cdf + x * exp(x * x * -0.5) * _INV_SQRT_2PI)


gelu.defvjp(_gelu_vjp)


def swish(x):
    """x * sigmoid(x) (also called SiLU)."""
    return x * _sigm(x)


silu = swish


def softsign(x):
    """x / (1 + |x|)."""
    return x / (_abs(x) + 1)


def elliot(x, steepness=1.0):
    """Elliot's sigmoid 0.5 * s*x / (1 + |s*x|) + 0.5: a cheap sigmoid with values in (0, 1)."""
    sx = x * steepness
    return sx / (_abs(sx) + 1) * 0.5 + 0.5


def symmetric_elliot(x, steepness=1.0):
    """s*x / (1 + |s*x|): a cheap tanh-like function with values in (-1, 1)."""
    sx = x * steepness
    return sx / (_abs(sx) + 1)


@primitive
def hard_sigmoid(x):
    """PyTorch's hardsigmoid relu6(x + 3) / 6: 0 below -3, 1 above 3, linear between."""
    return array_namespace(x).clip(x + 3, 0, 6) / 6


hard_sigmoid.defvjp(lambda g, ans, x: where((x > -3) & (x < 3), g / 6, 0))


# -- lookup by name ----------------------------------------------------------------------------------
_REGISTRY = Registry(
    "activation",
    "kp.activations",
    {
        "linear": linear,
        "identity": linear,
        "sigmoid": sigmoid,
        "sigm": sigmoid,
        "tanh": tanh,
        "relu": relu,
        "leaky_relu": leaky_relu,
        "elu": elu,
        "selu": selu,
        "gelu": gelu,
        "swish": swish,
        "silu": swish,
        "softplus": softplus,
        "softsign": softsign,
        "elliot": elliot,
        "symmetric_elliot": symmetric_elliot,
        "hard_sigmoid": hard_sigmoid,
        "softmax": softmax,
        "log_softmax": log_softmax,
    },
)


def names():
    """All names :func:`get` accepts."""
    return _REGISTRY.names()


def get(identifier=None, **params):
    """An activation function from a name, a ``{"name": ..., **params}`` dict, a callable or None.

    None means linear. Keyword ``params`` are bound: ``get("elu", alpha=0.5)``.
    An unknown name raises ValueError suggesting the closest known one.
    """
    return _REGISTRY.get("linear" if identifier is None else identifier, params)


def serialize(fn):
    """A JSON-serialisable spec (a name or a dict) that :func:`get` turns back into ``fn``."""
    if isinstance(fn, Activation):
        return fn.get_config()
    return _REGISTRY.serialize(fn)


# -- activations as objects (NumpyDL's classes) -----------------------------------------------------
class Activation:
    """An activation as an object, NumpyDL's style: ``forward(x)`` applies it and ``derivative(x)``
    gives its elementwise derivative at ``x`` (at the last ``forward`` input when ``x`` is omitted).

    Calling the object is ``forward``, so it can be given to a layer (``Dense(10, activation=ReLU())``).
    ``forward`` records the graph for tensors like the function it wraps; ``derivative`` works on
    values and returns a raw array. Training never needs ``derivative``: autograd differentiates
    ``forward``. It is there for code written against NumpyDL's manual backward pass.
    """

    activation_name = None  # the function's name in :func:`get`

    def __init__(self, **params):
        self.params = params
        self._function = get(self.activation_name, **params)
        self._last = None

    def forward(self, x):
        self._last = x
        return self._function(x)

    __call__ = forward

    def derivative(self, x=None):
        if x is None:
            if self._last is None:
                raise ValueError(f"{type(self).__name__}.derivative: give x, or call forward(x) first")
            x = self._last
        x = as_array(x.value if isinstance(x, Tensor) else x)
        if x.dtype.kind != "f":
            x = x.astype(get_dtype())
        return self._slope(array_namespace(x), x)

    def _slope(self, xp, x):
        raise NotImplementedError

    def get_config(self):
        """``{"name": ..., **params}``: what :func:`get` turns back into the same function."""
        return {"name": self.activation_name, **self.params}

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.params.items())})"


def _sigmoid_values(x):
    return _sigm.__wrapped__(x)


class Linear(Activation):
    """The identity; derivative 1."""

    activation_name = "linear"

    def __init__(self):
        super().__init__()

    def _slope(self, xp, x):
        return xp.ones_like(x)


class Sigmoid(Activation):
    """The logistic sigmoid s(x); derivative s(x) (1 - s(x))."""

    activation_name = "sigmoid"

    def __init__(self):
        super().__init__()

    def _slope(self, xp, x):
        s = _sigmoid_values(x)
        return s * (1 - s)


class Tanh(Activation):
    """tanh(x); derivative 1 - tanh(x)**2."""

    activation_name = "tanh"

    def __init__(self):
        super().__init__()

    def _slope(self, xp, x):
        t = xp.tanh(x)
        return 1 - t * t


class ReLU(Activation):
    """max(x, 0); derivative 1 where x > 0, else 0."""

    activation_name = "relu"

    def __init__(self):
        super().__init__()

    def _slope(self, xp, x):
        return (x > 0).astype(x.dtype)


class LeakyReLU(Activation):
    """x for x > 0, alpha * x otherwise; derivative 1 or alpha."""

    activation_name = "leaky_relu"

    def __init__(self, alpha=0.01):
        super().__init__(alpha=alpha)

    def _slope(self, xp, x):
        return xp.where(x > 0, 1, self.params["alpha"]).astype(x.dtype)


class ELU(Activation):
    """x for x > 0, alpha (exp(x) - 1) otherwise; derivative 1 or alpha exp(x)."""

    activation_name = "elu"

    def __init__(self, alpha=1.0):
        super().__init__(alpha=alpha)

    def _slope(self, xp, x):
        return xp.where(x > 0, 1, self.params["alpha"] * xp.exp(xp.minimum(x, 0))).astype(x.dtype)


class SoftPlus(Activation):
    """log(1 + exp(x)); derivative sigmoid(x)."""

    activation_name = "softplus"

    def __init__(self):
        super().__init__()

    def _slope(self, xp, x):
        return _sigmoid_values(x)


class SoftSign(Activation):
    """x / (1 + |x|); derivative 1 / (1 + |x|)**2."""

    activation_name = "softsign"

    def __init__(self):
        super().__init__()

    def _slope(self, xp, x):
        d = 1 + xp.abs(x)
        return 1 / (d * d)


class Elliot(Activation):
    """Elliot's sigmoid 0.5 s x / (1 + |s x|) + 0.5; derivative 0.5 s / (1 + |s x|)**2."""

    activation_name = "elliot"

    def __init__(self, steepness=1.0):
        super().__init__(steepness=steepness)

    def _slope(self, xp, x):
        s = self.params["steepness"]
        d = 1 + xp.abs(x * s)
        return 0.5 * s / (d * d)


class SymmetricElliot(Activation):
    """s x / (1 + |s x|); derivative s / (1 + |s x|)**2."""

    activation_name = "symmetric_elliot"

    def __init__(self, steepness=1.0):
        super().__init__(steepness=steepness)

    def _slope(self, xp, x):
        s = self.params["steepness"]
        d = 1 + xp.abs(x * s)
        return s / (d * d)


class Softmax(Activation):
    """softmax(x) along ``axis``. ``derivative`` is the diagonal of its Jacobian, p (1 - p).

    The full Jacobian is diag(p) - p p^T (autograd uses it). NumpyDL's ``Softmax.derivative``
    returns ones instead, because its cross-entropy backward already returns the gradient with
    respect to the softmax input (p - t); code that relies on that pairing should skip this factor.
    """

    activation_name = "softmax"

    def __init__(self, axis=-1):
        super().__init__(axis=axis)

    def _slope(self, xp, x):
        p = _softmax.__wrapped__(x, self.params["axis"])
        return p * (1 - p)


Softplus = SoftPlus  # both spellings, as NumpyDL and Keras write them
Softsign = SoftSign


def _underlying(fn):
    """The plain function behind an activation object or a functools.partial."""
    while True:
        if isinstance(fn, Activation):
            fn = fn._function
        elif isinstance(fn, functools.partial):
            fn = fn.func
        else:
            return fn
