"""Weight penalties to add to a loss: ``loss = data_loss + kp.regularizers.l2(model.params, 1e-4)``.

``params`` may be a layer or model (its ``.params``), a dict / list / tuple (nested) of Params,
tensors or arrays, or a single one. The result is a scalar: a tensor on the graph when any
parameter requires a gradient (so it is differentiated with the loss), an array otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping

from .autograd import Tensor
from .backend import as_array
from .ops import abs as _abs
from .ops import sum as _sum
from .tree import flatten


def _leaves(params):
    """The arrays / tensors in ``params``, checked to be floating."""
    own = getattr(params, "params", None)
    if isinstance(own, Mapping) and not isinstance(params, Mapping):
        params = list(own.values())
    leaves, _ = flatten(params)
    out = []
    for i, leaf in enumerate(leaves):
        if not isinstance(leaf, Tensor):
            leaf = as_array(leaf)
        if leaf.dtype.kind != "f":
            raise TypeError(
                f"regularizer: parameter {i} has dtype {leaf.dtype}; penalties need floating arrays"
            )
        out.append(leaf)
    return out


def _total(terms):
    total = 0.0
    for t in terms:
        total = total + t
    return total


def l1(params, scale=1.0):
    """scale * sum |w| over every parameter (lasso): pushes weights to exactly zero."""
    return _total(_sum(_abs(w)) for w in _leaves(params)) * scale


def l2(params, scale=1.0):
    """scale * sum w**2 over every parameter (ridge, weight decay): shrinks weights smoothly."""
    return _total(_sum(w * w) for w in _leaves(params)) * scale


def elastic_net(params, scale=1.0, l1_ratio=0.5):
    """scale * (l1_ratio * sum |w| + (1 - l1_ratio) * sum w**2): a mix of :func:`l1` and :func:`l2`."""
    if not 0.0 <= l1_ratio <= 1.0:
        raise ValueError(f"elastic_net: l1_ratio must be in [0, 1], got {l1_ratio}")
    leaves = _leaves(params)
    return (l1(leaves) * l1_ratio + l2(leaves) * (1.0 - l1_ratio)) * scale
