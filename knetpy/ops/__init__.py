"""The differentiable primitives, each with its vector-Jacobian product beside its forward."""

from .conv import conv4, conv4_bias, deconv4
from .conv_pool import conv_relu_pool
from .dot_attention import attention, attention_weights, scaled_dot_product_attention
from .elementwise import (
    abs,
    abs2,
    add,
    ceil,
    clip,
    cos,
    div,
    equal,
    exp,
    expm1,
    floor,
    greater,
    greater_equal,
    isfinite,
    isnan,
    less,
    less_equal,
    log,
    log1p,
    maximum,
    minimum,
    mul,
    neg,
    not_equal,
    pow,
    round,
    sign,
    sin,
    sqrt,
    square,
    sub,
    tanh,
    where,
)
from .index import getitem, scatter_add, take
from .linalg import dot, einsum, inner, matmul, outer, tensordot
from .nn import (
    accuracy,
    bce,
    elu,
    invx,
    log_softmax,
    logistic,
    logp,
    logsumexp,
    nll,
    relu,
    selu,
    sigm,
    sigmoid,
    softmax,
    softplus,
)
from .pool import global_avg_pool, global_max_pool, lp_pool, max_unpool, pool
from .reduce import amax, amin, argmax, argmin, max, mean, min, prod, std, sum, var
from .resize import unpool, upsample
from .response_norm import lrn
from .rnn import gru_cell, lstm_cell, rnn_cell, rnn_init, rnnforw
from .shape import (
    astype,
    broadcast_to,
    concatenate,
    expand_dims,
    flatten,
    flip,
    identity,
    mat,
    moveaxis,
    pad,
    permute,
    reshape,
    split,
    squeeze,
    stack,
    sum_to,
    swapaxes,
    transpose,
    unsqueeze,
)

__all__ = [name for name in dir() if not name.startswith("_")]
