"""Scaled dot-product attention: ``softmax(q k^T * scale + bias) v``, with masks, causality and dropout.

The scores, the mask and the softmax are one fused op (:func:`attention_weights`): it keeps only the
weights for its backward pass and turns rows whose every key is masked into zeros instead of NaN.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from ..autograd import Tensor, primitive
from ..backend import array_namespace
from .linalg import matmul
from .nn import dropout_mask
from .reduce import sum as _sum
from .shape import sum_to, swapaxes


def _value(x):
    return x.value if isinstance(x, Tensor) else x


def _mT(x):
    return swapaxes(x, -1, -2)


@primitive(saves=True)
def attention_weights(q, k, bias=None, scale=1.0):
    """``softmax(q @ k^T * scale + bias)`` over the last axis: (..., Lq, d) and (..., Lk, d) -> (..., Lq, Lk).

    ``bias`` (broadcastable to the result; -inf where a key is blocked) is added to the scaled scores.
    A row whose keys are all blocked gets weights 0 (not NaN). float16 is computed in float32.
    """
    if q.dtype == np.float16:
        out, memo = attention_weights.__wrapped__(q.astype(np.float32), k.astype(np.float32),
                                                  None if bias is None else bias.astype(np.float32), scale)
        return out.astype(np.float16), memo
    xp = array_namespace(q)
    s = xp.matmul(q, xp.swapaxes(k, -1, -2))
    s *= scale
    if bias is not None:
        s = xp.add(s, bias, out=s) if np.broadcast_shapes(s.shape, bias.shape) == s.shape else s + bias
    m = xp.max(s, axis=-1, keepdims=True)
    s -= xp.where(xp.isfinite(m), m, 0)  # a fully blocked row has max -inf: leave it at -inf
    e = xp.exp(s, out=s)
    z = xp.sum(e, axis=-1, keepdims=True)
    e /= xp.where(z > 0, z, 1)
    return e, [None, None]  # the memo: (g, the scores' gradient), shared by the VJPs of q, k and bias


def _dscores(g, ans, memo):
    """The gradient of the pre-softmax scores (softmax's VJP), computed once per backward pass."""
    if memo[0] is not g:
        memo[0], memo[1] = g, ans * (g - _sum(g * ans, axis=-1, keepdims=True))
    return memo[1]


# sum_to: q and k may have fewer leading axes than the scores (broadcast batch or head axes)
attention_weights.defvjp(
    lambda g, ans, memo, q, k, bias=None, scale=1.0: sum_to(matmul(_dscores(g, ans, memo), k) * scale, q.shape),
    lambda g, ans, memo, q, k, bias=None, scale=1.0: sum_to(matmul(_mT(_dscores(g, ans, memo)), q) * scale,
                                                            k.shape),
    lambda g, ans, memo, q, k, bias=None, scale=1.0: sum_to(_dscores(g, ans, memo), bias.shape),
)


@functools.lru_cache(maxsize=32)
def _causal_bias(lq, lk, dtype, xp=np):
    """0 where query i may see key j <= i, -inf above the diagonal (top-left aligned, as PyTorch); read-only
    on NumPy. Cached per array library, so a device gets its copy once."""
    if xp is not np:
        return xp.asarray(_causal_bias(lq, lk, dtype))
    bias = np.where(np.triu(np.ones((lq, lk), dtype=bool), k=1), dtype.type(-np.inf), dtype.type(0))
    bias.flags.writeable = False
    return bias


def _shape(x):
    return tuple(x.shape if hasattr(x, "shape") else np.shape(x))


def _mask_bias(mask, causal, scores_shape, dtype, who, xp=np):
    """The additive bias of ``mask`` (bool: True may attend; float: added) and ``causal``, or None."""
    bias = None
    lq, lk = scores_shape[-2:]
    if mask is not None:
        mv = _value(mask)
        if not hasattr(mv, "dtype"):
            mv = np.asarray(mv)
        if not _broadcasts(mv.shape, scores_shape):
            raise ValueError(f"{who}: mask of shape {tuple(mv.shape)} does not broadcast to the scores' shape "
                             f"{scores_shape} (..., queries, keys)")
        if mv.dtype == bool:
            bias = array_namespace(mv).where(mv, dtype.type(0), dtype.type(-np.inf))
        elif mv.dtype.kind == "f":
            bias = mask if isinstance(mask, Tensor) else mv.astype(dtype, copy=False)
        else:
            raise TypeError(f"{who}: mask must be bool (True: may attend) or float (added to the scores), "
                            f"got dtype {mv.dtype}")
    if causal:
        causal_bias = _causal_bias(lq, lk, np.dtype(dtype), xp)
        bias = causal_bias if bias is None else bias + causal_bias
    return bias


def _broadcasts(shape, target):
    """True when ``shape`` broadcasts to ``target`` without growing it."""
    try:
        return np.broadcast_shapes(shape, target) == tuple(target)
    except ValueError:
        return False


def scaled_dot_product_attention(q, k, v, mask=None, causal=False, dropout=0.0, scale=None):
    """Attention of queries over keys and values: ``(output, weights)``.

    ``q`` is (..., Lq, d), ``k`` (..., Lk, d) and ``v`` (..., Lk, dv) with matching leading (batch,
    head) axes; ``output`` is (..., Lq, dv) and ``weights`` (..., Lq, Lk), each row summing to 1:
    ``weights = softmax(q @ k^T * scale + bias)`` with ``scale`` 1/sqrt(d) unless given.

    ``mask`` broadcasts to (..., Lq, Lk): bool True where a query may attend to a key (as
    ``torch.nn.functional.scaled_dot_product_attention``), or float, added to the scores (a Tensor
    float mask receives a gradient). ``causal=True`` lets query i see keys 0..i only. A query whose
    keys are all masked gets zero weights and a zero output. ``dropout`` zeroes each weight with
    that probability (scaling the rest by 1 / (1 - p)); the weights returned are those after dropout.
    """
    who = "scaled_dot_product_attention"
    sq, sk, sv = _shape(q), _shape(k), _shape(v)
    if len(sq) < 2 or len(sk) < 2 or len(sv) < 2:
        raise ValueError(f"{who}: q, k and v need at least 2 axes (..., L, d), got shapes {sq}, {sk}, {sv}")
    if sq[-1] != sk[-1]:
        raise ValueError(f"{who}: q and k must have the same feature size, got shapes {sq} and {sk}")
    if sk[-2] != sv[-2]:
        raise ValueError(f"{who}: k and v must have the same number of positions, got shapes {sk} and {sv}")
    dtype = getattr(_value(q), "dtype", None)
    if dtype is None or dtype.kind != "f":
        raise TypeError(f"{who}: q must be a floating array, got {type(_value(q)).__name__} "
                        f"of dtype {getattr(dtype, 'name', None)}")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"{who}: dropout is a probability in [0, 1), got {dropout!r}")
    try:
        batch = np.broadcast_shapes(sq[:-2], sk[:-2], sv[:-2])
    except ValueError:
        raise ValueError(f"{who}: the leading (batch, head) axes of q, k and v do not broadcast: "
                         f"shapes {sq}, {sk}, {sv}") from None
    scale = 1.0 / math.sqrt(sq[-1]) if scale is None else float(scale)
    xp = array_namespace(_value(q))
    bias = _mask_bias(mask, causal, (*batch, sq[-2], sk[-2]), dtype, who, xp)
    weights = attention_weights(q, k, bias, scale=scale)
    if dropout > 0.0:
        weights = weights * dropout_mask(xp, _shape(weights), dropout, dtype)  # on the device: no copy per step
    return matmul(weights, v), weights


attention = scaled_dot_product_attention
