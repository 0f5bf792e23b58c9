"""Small pieces shared by the layer modules: shape messages, input casting, config-based repr."""

from __future__ import annotations

import inspect
import operator

from ..autograd import Tensor
from ..backend import as_array
from ..data._checks import require_real
from ..ops import astype


def fmt_shape(shape):
    """A shape for messages with the batch axis written as N: (N, 784)."""
    if shape is None:
        return "None"
    dims = ["N", *(str(s) for s in shape[1:])] if len(shape) else []
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def as_input(x):
    """Tensors and arrays pass through; lists and numbers become arrays."""
    return x if isinstance(x, Tensor) or hasattr(x, "shape") else as_array(x)


def cast(x, dtype):
    """``x`` in the layer's floating ``dtype`` (integer data such as uint8 images included).

    Mixing float64 inputs into a float32 layer would silently make everything float64 and slow;
    a tensor is cast on the graph, so gradients flow back in its own dtype.
    """
    if x.dtype == dtype:
        return x
    require_real(x, "the input", f"cast to {dtype}")
    if isinstance(x, Tensor):
        return astype(x, dtype)
    return x.astype(dtype)


def positive_int(value, what, layer):
    """``value`` as an int >= 1, or a ValueError naming the layer and the argument."""
    try:
        n = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        n = None
    if n is None or n < 1:
        raise ValueError(f"{layer}: {what} must be a positive integer, got {value!r}")
    return n


def config_repr(layer):
    """``Name(key=value, ...)`` from the layer's config, leaving out unset (None) entries.

    A layer holding a custom function has no config; its constructor arguments are shown instead.
    """
    try:
        cfg = layer.get_config()
    except ValueError:
        params = list(inspect.signature(type(layer).__init__).parameters)[1:]
        cfg = {k: getattr(layer, k) for k in params if hasattr(layer, k)}
    args = ", ".join(f"{k}={_short(v)}" for k, v in cfg.items() if v is not None)
    return f"{type(layer).__name__}({args})"


def _short(value):
    return getattr(value, "__name__", None) or repr(value) if callable(value) else repr(value)
