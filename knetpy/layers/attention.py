"""Attention layers: multi-head attention, positional encodings and a transformer encoder block.

Inputs are batch-first, (N, L, E). The mask arguments of :class:`MultiHeadAttention` and
:class:`TransformerEncoderLayer` mean what they mean in ``torch.nn.MultiheadAttention`` (whose names
they keep): a bool ``key_padding_mask`` (N, S) is True at padding keys, which are ignored; a bool
``attn_mask`` (L, S) or (N * num_heads, L, S) is True where attending is NOT allowed; float masks are
added to the scores. (The function :func:`knetpy.scaled_dot_product_attention` takes the opposite bool
convention, True = may attend, as its PyTorch namesake does.)
"""

from __future__ import annotations

import numpy as np

from .. import activations, ops
from .. import init as initializers
from ..autograd import Param, Tensor
from ..backend import array_namespace
from ..ops.dot_attention import scaled_dot_product_attention
from ._util import as_input, cast, config_repr, fmt_shape, positive_int
from .base import Layer
from .core import Dense, Dropout
from .normalization import LayerNorm


def _value(x):
    return x.value if isinstance(x, Tensor) else x


def _probability(p, who):
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
        raise ValueError(f"{who}: dropout is a probability in [0, 1), got {p!r}")
    return float(p)


def _check_3d(x, size, what, who):
    shape = tuple(x.shape)
    if len(shape) != 3 or (size is not None and shape[-1] != size):
        want = f"(N, L, {size})" if size is not None else "(N, L, E)"
        raise ValueError(f"{who}: {what} must have shape {want} (batch first), got {fmt_shape(shape)}")


def _as_bias(mask, shape, what, who, dtype):
    """A torch-convention mask (bool True = blocked, float = added) as an additive bias reshaped to
    broadcast over ``shape`` = (N, H, L, S)."""
    if mask is None:
        return None
    mv = _value(as_input(mask))
    n, h, lq, lk = shape
    if what == "key_padding_mask":
        if tuple(mv.shape) != (n, lk):
            raise ValueError(f"{who}: key_padding_mask must have shape (N, S) = ({n}, {lk}), got {tuple(mv.shape)}")
        new_shape = (n, 1, 1, lk)
    elif tuple(mv.shape) == (lq, lk):
        new_shape = (lq, lk)
    elif tuple(mv.shape) == (n * h, lq, lk):
        new_shape = (n, h, lq, lk)
    else:
        raise ValueError(f"{who}: attn_mask must have shape (L, S) = ({lq}, {lk}) or (N * num_heads, L, S) = "
                         f"({n * h}, {lq}, {lk}), got {tuple(mv.shape)}")
    if mv.dtype == bool:
        return array_namespace(mv).where(mv, dtype.type(-np.inf), dtype.type(0)).reshape(new_shape)
    if mv.dtype.kind != "f":
        raise TypeError(f"{who}: {what} must be bool (True: blocked) or float (added to the scores), "
                        f"got dtype {mv.dtype}")
    if isinstance(mask, Tensor):
        return ops.reshape(cast(mask, dtype), new_shape)
    return mv.astype(dtype, copy=False).reshape(new_shape)


class MultiHeadAttention(Layer):
    """Multi-head attention (Vaswani et al., 2017) as ``torch.nn.MultiheadAttention(batch_first=True)``.

    ``out, weights = mha(query, key, value)`` with query (N, L, embed_dim), key (N, S, kdim) and
    value (N, S, vdim) (key and value default to the query: self-attention). Each of ``num_heads``
    heads attends with its own embed_dim / num_heads slice of the projections ``q_proj``, ``k_proj``,
    ``v_proj`` (Dense layers, weights (in, embed_dim)); ``out_proj`` mixes the heads. ``out`` is
    (N, L, embed_dim); ``weights`` is (N, L, S) averaged over the heads, (N, num_heads, L, S) with
    ``average_attn_weights=False``, or None with ``need_weights=False``. ``dropout`` drops attention
    weights in training mode. Masks as described in the module docstring; ``is_causal=True`` blocks
    keys after the query's position.

    From PyTorch: ``in_proj_weight`` (3E, E) holds the transposes of ``q_proj.w``, ``k_proj.w`` and
    ``v_proj.w`` stacked, ``in_proj_bias`` their biases; ``out_proj.weight`` is ``out_proj.w`` transposed.
    """

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, kdim=None, vdim=None, name=None):
        super().__init__(name)
        who = "MultiHeadAttention"
        self.embed_dim = positive_int(embed_dim, "embed_dim", who)
        self.num_heads = positive_int(num_heads, "num_heads", who)
        if self.embed_dim % self.num_heads:
            raise ValueError(f"{who}: embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        self.head_dim = self.embed_dim // self.num_heads
        self.dropout = _probability(dropout, who)
        self.bias = bool(bias)
        self.kdim = self.embed_dim if kdim is None else positive_int(kdim, "kdim", who)
        self.vdim = self.embed_dim if vdim is None else positive_int(vdim, "vdim", who)
        e = self.embed_dim
        self.q_proj = Dense(e, n_in=e, bias=self.bias)
        self.k_proj = Dense(e, n_in=self.kdim, bias=self.bias)
        self.v_proj = Dense(e, n_in=self.vdim, bias=self.bias)
        self.out_proj = Dense(e, n_in=e, bias=self.bias)
        self.built = True

    def _heads(self, x):
        """(N, L, E) -> (N, H, L, E / H)."""
        n, length = x.shape[0], x.shape[1]
        return ops.transpose(ops.reshape(x, (n, length, self.num_heads, self.head_dim)), (0, 2, 1, 3))

    def forward(self, query, key=None, value=None, key_padding_mask=None, attn_mask=None, need_weights=True,
                average_attn_weights=True, is_causal=False):
        who = "MultiHeadAttention"
        query = as_input(query)
        key = query if key is None else as_input(key)
        value = key if value is None else as_input(value)
        _check_3d(query, self.embed_dim, "the query", who)
        _check_3d(key, self.kdim, "the key", who)
        _check_3d(value, self.vdim, "the value", who)
        n, lq, lk = query.shape[0], query.shape[1], key.shape[1]
        if key.shape[0] != n or tuple(value.shape[:2]) != tuple(key.shape[:2]):
            raise ValueError(f"{who}: query, key and value must share the batch size and key and value the "
                             f"length, got shapes {tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}")
        dtype = self.q_proj.w.dtype
        q = self._heads(self.q_proj(query))
        k = self._heads(self.k_proj(key))
        v = self._heads(self.v_proj(value))
        shape = (n, self.num_heads, lq, lk)
        bias = _as_bias(attn_mask, shape, "attn_mask", who, dtype)
        pad = _as_bias(key_padding_mask, shape, "key_padding_mask", who, dtype)
        if pad is not None:
            bias = pad if bias is None else bias + pad
        p = self.dropout if self.training else 0.0
        out, weights = scaled_dot_product_attention(q, k, v, mask=bias, causal=is_causal, dropout=p)
        out = self.out_proj(ops.reshape(ops.transpose(out, (0, 2, 1, 3)), (n, lq, self.embed_dim)))
        if not need_weights:
            return out, None
        return out, ops.mean(weights, axis=1) if average_attn_weights else weights

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {"embed_dim": self.embed_dim, "num_heads": self.num_heads, "dropout": self.dropout,
                "bias": self.bias, "kdim": self.kdim, "vdim": self.vdim, "name": self.name}

    __repr__ = config_repr


def sinusoidal_encoding(length, dim, base=10000.0, dtype=None):
    """The sinusoidal position table (length, dim) of Vaswani et al. (2017).

    ``table[pos, 2i] = sin(pos / base**(2i / dim))`` and ``table[pos, 2i + 1] = cos(...)`` of the same
    angle, so that each position is a point on circles of wavelengths from 2 pi to base * 2 pi.
    """
    length = positive_int(length, "length", "sinusoidal_encoding")
    dim = positive_int(dim, "dim", "sinusoidal_encoding")
    pos = np.arange(length, dtype=np.float64)[:, None]
    freq = base ** (-np.arange(0, dim, 2, dtype=np.float64) / dim)
    table = np.zeros((length, dim))
    table[:, 0::2] = np.sin(pos * freq)
    table[:, 1::2] = np.cos(pos * freq[: dim // 2])
    return table.astype(dtype or initializers.zeros(()).dtype)


class PositionalEncoding(Layer):
    """Add the fixed sinusoidal position table (:func:`sinusoidal_encoding`) to (N, L, E) inputs.

    No parameters: works for any length and size (the table is cached for the last one seen).
    """

    def __init__(self, base=10000.0, name=None):
        super().__init__(name)
        if isinstance(base, bool) or not isinstance(base, (int, float)) or not base > 1:
            raise ValueError(f"PositionalEncoding: base must be a number above 1, got {base!r}")
        self.base = float(base)
        self._table = None

    def forward(self, x):
        x = as_input(x)
        _check_3d(x, None, "the input", "PositionalEncoding")
        if _value(x).dtype.kind != "f":
            raise TypeError(f"PositionalEncoding expects floating inputs (embeddings), got dtype {_value(x).dtype}")
        length, dim = x.shape[1], x.shape[2]
        table = self._table
        xp = array_namespace(_value(x))
        if (table is None or table.shape[0] < length or table.shape[1] != dim or table.dtype != x.dtype
                or array_namespace(table) is not xp):
            table = sinusoidal_encoding(length, dim, self.base, x.dtype)
            table = self._table = table if xp is np else xp.asarray(table)  # cached: one copy to the device
        return x + table[:length]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {"base": self.base, "name": self.name}

    __repr__ = config_repr


class PositionalEmbedding(Layer):
    """Add a learned position vector to (N, L, dim) inputs: a table ``w`` (max_len, dim), row t added at
    position t. ``init`` draws it (normal with std 0.02 by default, as in GPT-2)."""

    def __init__(self, max_len, dim, init=None, name=None):
        super().__init__(name)
        self.max_len = positive_int(max_len, "max_len", "PositionalEmbedding")
        self.dim = positive_int(dim, "dim", "PositionalEmbedding")
        self.init = init
        draw = initializers.get(init) if init is not None else (
            lambda shape: initializers.normal(shape, std=0.02))
        self.w = Param(draw((self.max_len, self.dim)))
        self.built = True

    def forward(self, x):
        x = as_input(x)
        _check_3d(x, self.dim, "the input", "PositionalEmbedding")
        length = x.shape[1]
        if length > self.max_len:
            raise ValueError(f"PositionalEmbedding: sequences of length {length} are longer than max_len "
                             f"{self.max_len}")
        return cast(x, self.w.dtype) + self.w[:length]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {"max_len": self.max_len, "dim": self.dim,
                "init": None if self.init is None else initializers.serialize(self.init), "name": self.name}

    __repr__ = config_repr


class TransformerEncoderLayer(Layer):
    """A transformer encoder block, as ``torch.nn.TransformerEncoderLayer(batch_first=True)``.

    Self-attention (:class:`MultiHeadAttention` ``self_attn``) then a feed-forward network
    (``linear2(dropout(activation(linear1(x))))``), each wrapped in a residual connection with dropout
    and a LayerNorm: after the sum (``norm_first=False``, post-norm, the original transformer) or on
    the branch's input (``norm_first=True``, pre-norm, which trains more stably when deep).
    ``y = block(x, src_mask=None, src_key_padding_mask=None, is_causal=False)`` with x (N, L, d_model);
    masks as :class:`MultiHeadAttention`'s ``attn_mask`` and ``key_padding_mask``. With
    ``return_weights=True`` it returns ``(y, weights)``, the head-averaged attention weights (N, L, L).
    """

    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation="relu", layer_norm_eps=1e-5,
                 norm_first=False, bias=True, name=None):
        super().__init__(name)
        who = "TransformerEncoderLayer"
        self.d_model = positive_int(d_model, "d_model", who)
        self.nhead = positive_int(nhead, "nhead", who)
        self.dim_feedforward = positive_int(dim_feedforward, "dim_feedforward", who)
        self.dropout_p = _probability(dropout, who)
        self.activation = activation
        self._act = activations.get(activation)
        self.layer_norm_eps = float(layer_norm_eps)
        self.norm_first = bool(norm_first)
        self.bias = bool(bias)
        self.self_attn = MultiHeadAttention(d_model, nhead, dropout=dropout, bias=bias)
        self.linear1 = Dense(dim_feedforward, n_in=d_model, bias=bias)
        self.linear2 = Dense(d_model, n_in=dim_feedforward, bias=bias)
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout = Dropout(dropout)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.built = True

    def _attend(self, x, src_mask, src_key_padding_mask, is_causal, need_weights):
        out, weights = self.self_attn(x, x, x, key_padding_mask=src_key_padding_mask, attn_mask=src_mask,
                                      need_weights=need_weights, is_causal=is_causal)
        return self.dropout1(out), weights

    def _feed_forward(self, x):
        return self.dropout2(self.linear2(self.dropout(self._act(self.linear1(x)))))

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal=False, return_weights=False):
        x = as_input(src)
        _check_3d(x, self.d_model, "the input", "TransformerEncoderLayer")
        x = cast(x, self.linear1.w.dtype)
        if self.norm_first:
            attended, weights = self._attend(self.norm1(x), src_mask, src_key_padding_mask, is_causal, return_weights)
            x = x + attended
            x = x + self._feed_forward(self.norm2(x))
        else:
            attended, weights = self._attend(x, src_mask, src_key_padding_mask, is_causal, return_weights)
            x = self.norm1(x + attended)
            x = self.norm2(x + self._feed_forward(x))
        return (x, weights) if return_weights else x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {"d_model": self.d_model, "nhead": self.nhead, "dim_feedforward": self.dim_feedforward,
                "dropout": self.dropout_p, "activation": activations.serialize(self.activation),
                "layer_norm_eps": self.layer_norm_eps, "norm_first": self.norm_first, "bias": self.bias,
                "name": self.name}

    __repr__ = config_repr
