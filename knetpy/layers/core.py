"""Core layers: Dense, Dropout, Flatten, Reshape, Activation, PReLU, Maxout, Lambda, Embedding.

Inputs are batch-first. Layers with weights infer their input size on the first call (or take it
up front), create their parameters in the default dtype, and cast inputs to it.
"""

from __future__ import annotations

import math

import numpy as np

from .. import activations, backend, ops, parallel
from .. import init as initializers
from ..autograd import Param, Tensor, primitive, replayable
from ..backend import array_namespace
from ..ops.nn import dropout_mask
from ._util import as_input, cast, config_repr, fmt_shape, positive_int
from .base import Layer


def _value(x):
    return x.value if isinstance(x, Tensor) else x


# -- the affine map y = x @ w + b, fused into one op ---------------------------------------------------
@primitive
def affine(x, w, b):
    """``x @ w + b`` over the last axis of ``x``: one op instead of two, the bias added in place."""
    y = parallel.matmul(x, w)
    y += b
    return y


def _affine_vjp_w(g, ans, x, w, b):
    if x.ndim == 2:
        return ops.matmul(ops.transpose(x), g)
    # (N, ..., n_in): fold the leading axes into one batch axis
    return ops.matmul(ops.transpose(ops.reshape(x, (-1, w.shape[0]))), ops.reshape(g, (-1, w.shape[1])))


affine.defvjp(
    lambda g, ans, x, w, b: ops.matmul(g, ops.transpose(w)),
    _affine_vjp_w,
    lambda g, ans, x, w, b: ops.sum(g, axis=tuple(range(g.ndim - 1))),
)


class Dense(Layer):
    """Fully connected layer ``y = activation(x @ w + b)`` on the last axis of (N, ..., n_in) inputs.

    The weight ``w`` has shape (n_in, n_out) and the bias ``b`` shape (n_out,). ``n_in`` is taken
    from the first input unless given. ``activation`` is a name, a callable or None (linear);
    ``init`` names the weight initializer (the bias starts at zero).
    """

    def __init__(self, n_out, n_in=None, activation=None, init="glorot_uniform", bias=True, name=None):
        super().__init__(name)
        self.n_out = positive_int(n_out, "n_out", "Dense")
        self.n_in = None if n_in is None else positive_int(n_in, "n_in", "Dense")
        self.activation = activation
        self._act = activations.get(activation)
        self._linear = self._act is activations.linear
        self.init = init
        self._init = initializers.get(init)
        self.bias = bool(bias)
        if self.n_in is not None:
            self.build((None, self.n_in))
            self.built = True
            self.input_shape = (None, self.n_in)

    def build(self, input_shape):
        if input_shape is None or len(input_shape) < 2:
            raise ValueError(f"Dense expects inputs of shape (N, n_in), got {_shape_text(input_shape)}")
        n_in = input_shape[-1]
        if self.n_in is not None and n_in != self.n_in:
            raise ValueError(f"Dense expects inputs of shape (N, {self.n_in}), got {fmt_shape(input_shape)}")
        if getattr(self, "w", None) is not None and self.w.shape == (n_in, self.n_out):
            return  # already built for this size (e.g. a config rebuilt, then loaded)
        self.n_in = n_in
        self.w = Param(self._init((n_in, self.n_out)))
        self.b = Param(initializers.zeros((self.n_out,))) if self.bias else None

    def forward(self, x):
        x = as_input(x)
        shape = x.shape
        if len(shape) < 2 or shape[-1] != self.n_in:
            want = (None, *shape[1:-1], self.n_in) if len(shape) >= 2 else (None, self.n_in)
            raise ValueError(f"Dense expects inputs of shape {fmt_shape(want)}, got {_shape_text(shape)}")
        x = cast(x, self.w.dtype)
        y = affine(x, self.w, self.b) if self.bias else ops.matmul(x, self.w)
        return y if self._linear else self._act(y)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.n_out)

    def get_config(self):
        return {
            "n_out": self.n_out,
            "n_in": self.n_in,
            "activation": activations.serialize(self.activation),
            "init": initializers.serialize(self.init),
            "bias": self.bias,
            "name": self.name,
        }

    __repr__ = config_repr


def _shape_text(shape):
    """A shape for messages: (N, ...) when it has a batch axis, as it is otherwise."""
    if shape is None:
        return "an input without a shape"
    return fmt_shape(shape) if len(shape) >= 2 else str(tuple(shape))


class Dropout(Layer):
    """Inverted dropout: in training, zero each element with probability ``p`` and scale the rest
    by 1 / (1 - p); in eval mode, the identity. The same mask multiplies the gradient."""

    def __init__(self, p=0.5, name=None):
        super().__init__(name)
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p is the probability of dropping an element, in [0, 1]; got {p!r}")
        self.p = float(p)

    def forward(self, x):
        x = as_input(x)
        if not self.training or self.p == 0.0:
            return x
        xv = _floating(self, x)
        xp = array_namespace(xv)
        if self.p == 1.0:
            mask = xp.zeros(xv.shape, xv.dtype)
        else:
            mask = dropout_mask(xp, xv.shape, self.p, xv.dtype)
        return x * mask

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {"p": self.p, "name": self.name}

    __repr__ = config_repr


@replayable
def _keep_draws(xp, shape, p, dtype):
    return (backend.rng(xp).random(shape, dtype=np.float32) >= p).astype(dtype)


def _floating(layer, x):
    """``x``'s value, refused unless floating."""
    xv = _value(x)
    if xv.dtype.kind != "f":
        raise TypeError(f"{type(layer).__name__} expects floating inputs, got dtype {xv.dtype}")
    return xv


@replayable  # the mask and its scaling: a fresh draw on every replay of a compiled step
def _channel_mask(xp, shape, p, dtype):
    return _keep_draws(xp, shape, p, dtype) * dtype.type(0.0 if p == 1.0 else 1.0 / (1.0 - p))


@replayable
def _alpha_masks(xp, shape, p, dtype):
    """AlphaDropout's ``(a * keep, (1 - keep) * a * sat + b)``: the output is ``x * scale + shift``."""
    keep = _keep_draws(xp, shape, p, dtype)
    sat, t = _SELU_SATURATION, dtype.type
    a = ((1 - p) * (1 + p * sat**2)) ** -0.5
    b = -a * sat * p
    # a * (keep * x + (1 - keep) * sat) + b, gradient a * keep
    return keep * t(a), (1 - keep) * t(a * sat) + t(b)


class Dropout2D(Dropout):
    """Channel dropout (PyTorch's ``Dropout2d``, Keras' ``SpatialDropout2D``): in training, zero whole
    channels of (N, C, *spatial) inputs with probability ``p`` and scale the rest by 1 / (1 - p).

    Neighbouring pixels of a feature map are strongly correlated, so dropping single pixels barely
    regularises a convolutional net; dropping the whole map does. Eval mode: the identity.
    """

    def forward(self, x):
        x = as_input(x)
        if not self.training or self.p == 0.0:
            return x
        shape = tuple(_value(x).shape)
        if len(shape) < 3:
            raise ValueError(f"Dropout2D expects inputs of shape (N, C, *spatial), got {_shape_text(shape)}")
        xv = _floating(self, x)
        return x * _channel_mask(array_namespace(xv), shape[:2] + (1,) * (len(shape) - 2), self.p, xv.dtype)


#: SELU's negative saturation value, -scale * alpha: what AlphaDropout sets dropped units to.
_SELU_SATURATION = -1.0507009873554804934193349852946 * 1.6732632423543772848170429916717


class AlphaDropout(Dropout):
    """Dropout for self-normalising (SELU) networks (Klambauer et al. 2017; PyTorch's ``AlphaDropout``).

    In training, each element is set with probability ``p`` to SELU's saturation value
    alpha' = -scale * alpha (about -1.758) rather than to 0, then the result is mapped affinely,
    ``a * x' + b`` with ``a = ((1 - p) (1 + p alpha'^2))^(-1/2)`` and ``b = -a alpha' p``, so inputs of
    mean 0 and variance 1 keep mean 0 and variance 1. Eval mode: the identity.
    """

    def forward(self, x):
        x = as_input(x)
        if not self.training or self.p == 0.0:
            return x
        if self.p == 1.0:  # PyTorch's limit: everything dropped, a = 0
            return x * 0.0
        xv = _floating(self, x)
        scale, shift = _alpha_masks(array_namespace(xv), xv.shape, self.p, xv.dtype)
        return x * scale + shift


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1 * d2 * ...), keeping the batch axis."""

    def __init__(self, name=None):
        super().__init__(name)

    def forward(self, x):
        x = as_input(x)
        if x.ndim < 1:
            raise ValueError(f"Flatten expects inputs with a batch axis, got shape {tuple(x.shape)}")
        return ops.reshape(x, (x.shape[0], math.prod(x.shape[1:])))  # not -1: a batch of 0 is valid

    def compute_output_shape(self, input_shape):
        return (input_shape[0], math.prod(input_shape[1:]))

    def get_config(self):
        return {"name": self.name}

    __repr__ = config_repr


class Reshape(Layer):
    """Reshape each sample to ``shape`` (the batch axis is kept; one entry may be -1)."""

    def __init__(self, shape, name=None):
        super().__init__(name)
        shape = (shape,) if isinstance(shape, int) else tuple(int(s) for s in shape)
        if sum(s == -1 for s in shape) > 1 or any(s < -1 or s == 0 for s in shape):
            raise ValueError(f"Reshape: target shape {shape} must have positive sizes and at most one -1")
        self.shape = shape

    def _per_sample(self, input_shape):
        size = math.prod(input_shape[1:])
        known = math.prod(s for s in self.shape if s != -1)
        if (-1 in self.shape and size % known) or (-1 not in self.shape and size != known):
            raise ValueError(
                f"Reshape{self.shape} cannot reshape inputs of shape {fmt_shape(input_shape)}: "
                f"a sample has {size} elements, the target shape holds {known}"
                + (" times a whole number" if -1 in self.shape else "")
            )
        return tuple(size // known if s == -1 else s for s in self.shape)

    def forward(self, x):
        x = as_input(x)
        if x.ndim < 1:
            raise ValueError(f"Reshape expects inputs with a batch axis, got shape {tuple(x.shape)}")
        return ops.reshape(x, (x.shape[0], *self._per_sample(x.shape)))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self._per_sample(input_shape))

    def get_config(self):
        return {"shape": list(self.shape), "name": self.name}

    __repr__ = config_repr


class Activation(Layer):
    """Apply an activation function: a name (``"relu"``), a dict with parameters
    (``{"name": "leaky_relu", "alpha": 0.2}``) or a function from ``kp.activations``."""

    def __init__(self, activation, name=None):
        super().__init__(name)
        self.activation = activation
        self._act = activations.get(activation)

    def forward(self, x):
        return self._act(as_input(x))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {"activation": activations.serialize(self.activation), "name": self.name}

    __repr__ = config_repr


class PReLU(Layer):
    """Parametric ReLU: x for x > 0, a * x otherwise, with a learned slope ``a``.

    ``num_parameters`` is 1 (one slope shared by all) or the number of channels on axis 1 (one
    slope per channel), as in PyTorch; the slopes start at ``init``.
    """

    def __init__(self, num_parameters=1, init=0.25, name=None):
        super().__init__(name)
        self.num_parameters = positive_int(num_parameters, "num_parameters", "PReLU")
        self.init = float(init)
        self.alpha = Param(initializers.constant((self.num_parameters,), value=self.init))

    def forward(self, x):
        x = as_input(x)
        n = self.num_parameters
        if n > 1 and (x.ndim < 2 or x.shape[1] != n):
            raise ValueError(
                f"PReLU with {n} parameters expects {n} channels on axis 1, got inputs of shape {_shape_text(x.shape)}"
            )
        x = cast(x, self.alpha.dtype)
        slope = self.alpha if n == 1 else ops.reshape(self.alpha, (n,) + (1,) * (x.ndim - 2))
        return ops.where(ops.greater(x, 0), x, x * slope)  # an op, so that a compiled step compares afresh

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {"num_parameters": self.num_parameters, "init": self.init, "name": self.name}

    __repr__ = config_repr


class Maxout(Layer):
    """Maxout (Goodfellow et al., 2013): ``pieces`` affine maps per output, keep the largest.

    ``w`` is (n_in, n_out * pieces); output unit i takes the maximum of columns
    i * pieces ... (i + 1) * pieces - 1 of ``x @ w + b``.
    """

    def __init__(self, n_out, pieces, n_in=None, init="glorot_uniform", bias=True, name=None):
        super().__init__(name)
        self.n_out = positive_int(n_out, "n_out", "Maxout")
        self.pieces = positive_int(pieces, "pieces", "Maxout")
        self.n_in = None if n_in is None else positive_int(n_in, "n_in", "Maxout")
        self.init = init
        self._init = initializers.get(init)
        self.bias = bool(bias)
        if self.n_in is not None:
            self.build((None, self.n_in))
            self.built = True
            self.input_shape = (None, self.n_in)

    def build(self, input_shape):
        if input_shape is None or len(input_shape) < 2:
            raise ValueError(f"Maxout expects inputs of shape (N, n_in), got {_shape_text(input_shape)}")
        n_in = input_shape[-1]
        if self.n_in is not None and n_in != self.n_in:
            raise ValueError(f"Maxout expects inputs of shape (N, {self.n_in}), got {fmt_shape(input_shape)}")
        width = self.n_out * self.pieces
        if getattr(self, "w", None) is not None and self.w.shape == (n_in, width):
            return
        self.n_in = n_in
        self.w = Param(self._init((n_in, width)))
        self.b = Param(initializers.zeros((width,))) if self.bias else None

    def forward(self, x):
        x = as_input(x)
        shape = x.shape
        if len(shape) < 2 or shape[-1] != self.n_in:
            want = (None, *shape[1:-1], self.n_in) if len(shape) >= 2 else (None, self.n_in)
            raise ValueError(f"Maxout expects inputs of shape {fmt_shape(want)}, got {_shape_text(shape)}")
        x = cast(x, self.w.dtype)
        z = affine(x, self.w, self.b) if self.bias else ops.matmul(x, self.w)
        z = ops.reshape(z, (*shape[:-1], self.n_out, self.pieces))
        return ops.max(z, axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.n_out)

    def get_config(self):
        return {
            "n_out": self.n_out,
            "pieces": self.pieces,
            "n_in": self.n_in,
            "init": initializers.serialize(self.init),
            "bias": self.bias,
            "name": self.name,
        }

    __repr__ = config_repr


class Lambda(Layer):
    """Wrap a function of the input, ``y = fn(x)``, as a layer (no parameters).

    ``fn`` is a callable, or the name of an activation or of a ``kp`` op (``"flatten"``); only a
    named function can be saved in a config (custom code is never stored in checkpoints).
    ``output_shape`` (a function of the input shape) answers :meth:`compute_output_shape`;
    without it the function is run on a one-sample zero input to find out.
    """

    def __init__(self, fn, output_shape=None, name=None):
        super().__init__(name)
        if isinstance(fn, str):
            fn = _named_function(fn)
        if not callable(fn):
            raise TypeError(f"Lambda expects a function, got {type(fn).__name__}")
        self.fn = fn
        self.output_shape = output_shape

    def forward(self, x):
        return self.fn(as_input(x))

    def compute_output_shape(self, input_shape):
        if self.output_shape is not None:
            return tuple(self.output_shape(tuple(input_shape)))
        from ..autograd import no_grad

        probe = np.zeros((1, *input_shape[1:]), dtype=backend.get_dtype())
        with no_grad():
            out = _value(self.fn(probe))
        return (input_shape[0], *out.shape[1:])

    def _fn_name(self):
        try:
            return activations.serialize(self.fn)
        except ValueError:
            pass
        name = getattr(self.fn, "__name__", None)
        if name is not None and getattr(ops, name, None) is self.fn:
            return name
        return None

    def get_config(self):
        name = self._fn_name()
        if name is None:
            raise ValueError(
                f"Lambda({getattr(self.fn, '__name__', self.fn)!r}) cannot be saved in a config: only "
                "activations and kp ops can be named; write a Layer subclass to save custom code"
            )
        if self.output_shape is not None:
            raise ValueError("Lambda with an output_shape function cannot be saved in a config")
        return {"fn": name, "name": self.name}

    def __repr__(self):
        name = self._fn_name() or getattr(self.fn, "__name__", repr(self.fn))
        return f"Lambda({name!r})" if self.name is None else f"Lambda({name!r}, name={self.name!r})"


def _named_function(name):
    """An activation (``"relu"``, ``{"name": ..}``) or, failing that, a ``kp`` op by name."""
    if name in activations.names() or not hasattr(ops, name):
        return activations.get(name)  # raises with a suggestion for unknown names
    return getattr(ops, name)


class Embedding(Layer):
    """A lookup table: integer indices of any shape (...) -> vectors of shape (..., dim).

    The table ``w`` is (vocab, dim), drawn from ``init`` (standard normal by default, as in
    PyTorch). Repeated indices accumulate their gradients. Indices out of range raise IndexError
    for NumPy inputs; indices on a device are not read back to be checked (that would stall every
    step), so check them on the host before moving them.
    """

    def __init__(self, vocab, dim, init="normal", name=None):
        super().__init__(name)
        self.vocab = positive_int(vocab, "vocab", "Embedding")
        self.dim = positive_int(dim, "dim", "Embedding")
        self.init = init
        self.w = Param(initializers.get(init)((self.vocab, self.dim)))

    def forward(self, indices):
        idx = _value(as_input(indices))
        if idx.dtype.kind not in "iu":
            raise TypeError(f"Embedding expects integer indices, got dtype {idx.dtype}")
        if idx.size and type(idx) is np.ndarray:
            lo, hi = int(idx.min()), int(idx.max())
            if lo < 0 or hi >= self.vocab:
                bad = lo if lo < 0 else hi
                raise IndexError(
                    f"Embedding: index {bad} is out of range for a vocabulary of {self.vocab} (0..{self.vocab - 1})"
                )
        return self.w[idx]

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.dim)

    def get_config(self):
        return {
            "vocab": self.vocab,
            "dim": self.dim,
            "init": initializers.serialize(self.init),
            "name": self.name,
        }

    __repr__ = config_repr
