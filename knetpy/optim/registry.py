"""Optimizers by name: ``get("adam", lr=1e-3)``, for configuration files and ``Model.compile``."""

from __future__ import annotations

import difflib

from .adam import Adam, Adamax, AdamW
from .adaptive import Adadelta, Adagrad, RMSprop
from .base import Optimizer
from .lbfgs import LBFGS
from .sgd import SGD, Momentum, Nesterov

OPTIMIZERS = {
    "sgd": SGD,
    "momentum": Momentum,
    "nesterov": Nesterov,
    "adagrad": Adagrad,
    "adadelta": Adadelta,
    "rmsprop": RMSprop,
    "adam": Adam,
    "adamax": Adamax,
    "adamw": AdamW,
    "lbfgs": LBFGS,
}


# Other spellings (NumpyDL's class names), kept out of OPTIMIZERS so that each optimizer is listed once.
_ALIASES = {"nesterovmomentum": "nesterov"}


def _normalise(name: str) -> str:
    key = name.lower().replace("-", "").replace("_", "").replace(" ", "")
    return _ALIASES.get(key, key)


def resolve_class(optimizer):
    """The optimizer class named by ``optimizer`` (a name such as ``"adam"``, or a class)."""
    if isinstance(optimizer, type) and issubclass(optimizer, Optimizer):
        return optimizer
    if isinstance(optimizer, str):
        key = _normalise(optimizer)
        if key in OPTIMIZERS:
            return OPTIMIZERS[key]
        close = difflib.get_close_matches(key, list(OPTIMIZERS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown optimizer {optimizer!r} (known: {', '.join(OPTIMIZERS)}){hint}")
    raise TypeError(f"expected an optimizer name or class, got {type(optimizer).__name__}")


def get(optimizer, **hyper):
    """An optimizer instance from a name (``"adam"``, case-insensitive), a class, or an instance.

    Keyword arguments are passed to the constructor (``get("sgd", lr=0.1, momentum=0.9)``); the
    result has no parameters yet (``opt.bind(params)``). An instance is returned as it is.
    """
    if isinstance(optimizer, Optimizer):
        if hyper:
            raise ValueError(
                f"get: got an existing {type(optimizer).__name__} and options {sorted(hyper)}; "
                "set options when creating it, or pass the optimizer's name"
            )
        return optimizer
    return resolve_class(optimizer)(**hyper)
