"""Activation functions, usable directly (``kp.activations.gelu(x)``) or by name (``get("gelu")``).

Every function works on raw arrays (returning arrays) and on tensors (recording the graph), and
keeps the input's floating dtype. Parameters such as ``alpha`` or ``steepness`` are keyword
arguments; ``get("leaky_relu", alpha=0.2)`` binds them.
"""

from __future__ import annotations

import math

from ._names import Registry
from .autograd import Tensor, primitive
from .backend import array_namespace
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
    return _REGISTRY.serialize(fn)
