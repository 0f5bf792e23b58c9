"""Normalization layers: BatchNorm and LayerNorm, sharing one fused normalize-scale-shift op."""

from __future__ import annotations

import math

import numpy as np

from .. import init as initializers
from .. import ops
from ..autograd import Param, Tensor, primitive, replayable
from ..backend import array_namespace
from ..ops import fast
from ..ops.nn import _relu_vjp
from ._util import as_input, cast, config_repr, fmt_shape
from .base import Layer


def _value(x):
    return x.value if isinstance(x, Tensor) else x


# -- the fused op ---------------------------------------------------------------------------------------
def _xhat(x, mean, inv_std):
    """``(x - mean) * inv_std`` in one new array (in place when the dtypes allow: the same values)."""
    xhat = x - mean
    return _scale(xhat, inv_std)


def _scale(a, b):
    """``a * b``, into ``a`` (a temporary of the caller's) unless that would change the result's dtype."""
    if array_namespace(a, b).result_type(a, b) != a.dtype:
        return a * b
    a *= b
    return a


# -- compiled kernels (numba) for one kept axis (batch norm), with the NumPy code below as the reference ----


def _fast_bn(x, axes, pshape, vectors, arrays=()):
    """(A, C, B) views of ``x`` and ``arrays``, the function that lays out an output like ``x``
    (:func:`~knetpy.ops.fast.batchnorm.views`) and the flat per-channel ``vectors`` (None stays None) for
    :mod:`knetpy.ops.fast.batchnorm`, or None when it does not take them: kernels off, not NumPy arrays of
    one float dtype, or statistics over other than all axes but one."""
    if not fast.enabled() or type(x) is not np.ndarray or x.dtype not in fast.FLOATS or axes is None or not x.size:
        return None
    axes = tuple(a % x.ndim for a in axes)
    if any(v is not None and (type(v) is not np.ndarray or v.dtype != x.dtype) for v in (*vectors, *arrays)):
        return None
    if pshape is not None and any(pshape[i] != 1 for i in axes):
        return None
    from ..ops.fast.batchnorm import views

    found = views(x, axes, *arrays)
    if found is None:
        return None
    return (*found, [None if v is None else v.reshape(-1) for v in vectors])


@primitive(saves=True)
def normalize(x, gamma, beta, mean=None, inv_std=None, axes=None, pshape=None, eps=None, relu=False):
    """``(x - mean) * inv_std * gamma + beta`` (then a ReLU with ``relu``) where ``mean`` and
    ``inv_std = 1 / sqrt(var + eps)`` are the statistics of ``x`` itself over ``axes`` (given
    precomputed, keepdims-shaped).

    ``gamma`` and ``beta`` (either may be None) broadcast through ``pshape``, the input's shape
    with 1 on the axes they do not span. The gradient accounts for the statistics depending on
    ``x``; with tensors in the backward pass (higher order) it is rebuilt from differentiable ops.

    The normalised ``xhat`` is not kept for the backward pass (x already is): the VJPs compute it
    again, as PyTorch does, which saves one activation per layer. The saved value is a small cache
    through which the VJP of ``x`` hands its ``xhat`` to the VJP of ``gamma`` (run right after),
    and the gradient through the ReLU goes to all three. The fused ReLU saves one more activation: the
    values before it are not kept (its gradient needs only the output's sign).
    """
    found = _fast_bn(x, axes, pshape, (mean, inv_std, gamma, beta))
    if found is not None:
        from ..ops.fast.batchnorm import forward

        (x3,), back, vecs = found
        y3 = np.empty_like(x3)
        forward(x3, *vecs, bool(relu), y3)
        return back(y3), [None, None, None]
    y = _xhat(x, mean, inv_std)
    if gamma is not None:
        y = _scale(y, gamma.reshape(pshape))
    if beta is not None:
        b = beta.reshape(pshape)
        if array_namespace(y, b).result_type(y, b) == y.dtype:
            y += b
        else:
            y = y + b
    if relu:
        array_namespace(y).maximum(y, 0, out=y)  # y is a new array of this op's own
    return y, [None, None, None]


def _through_relu(g, ans, cache, relu):
    """The incoming gradient ``g`` through the fused ReLU, computed once for the three VJPs."""
    if not relu:
        return g
    if cache[1] is None or cache[1][0] is not g:  # (a second backward pass brings another g)
        cache[1] = (g, _relu_vjp(g, ans, None))
    return cache[1][1]


def _fast_sums(g, ans, cache, x, gamma, mean, inv_std, axes, pshape, relu):
    """The compiled backward's views and per-channel sums of g' and g' * xhat (g' through the ReLU),
    computed once per backward pass for the three VJPs; None when the kernels do not take these arrays."""
    if cache[2] is not None and cache[2][0] is g:
        return cache[2][1]
    if isinstance(x, Tensor) or type(g) is not np.ndarray or g.shape != x.shape:
        return None
    found = _fast_bn(x, axes, pshape, (mean, inv_std, gamma), (g, ans) if relu else (g,))
    if found is None:
        return None
    from ..ops.fast.batchnorm import backward_sums

    arrays, back, (mean, inv_std, gamma) = found
    x3, g3, a3 = arrays[0], arrays[1], arrays[-1]  # (a3: unused without the ReLU)
    done = (x3, g3, a3, back, mean, inv_std, gamma, backward_sums(g3, x3, a3, mean, inv_std, bool(relu)))
    cache[2] = (g, done)
    return done


def _differentiable_stats(x, axes, eps):
    """xhat and 1 / sqrt(var + eps) as functions of ``x`` on the graph (biased variance)."""
    centred = x - ops.mean(x, axis=axes, keepdims=True)
    inv_std = 1.0 / ops.sqrt(ops.mean(centred * centred, axis=axes, keepdims=True) + eps)
    return centred * inv_std, inv_std


def _normalize_vjp_x(
    g, ans, cache, x, gamma, beta, mean=None, inv_std=None, axes=None, pshape=None, eps=None, relu=False
):
    done = _fast_sums(g, ans, cache, x, gamma, mean, inv_std, axes, pshape, relu)
    if done is not None:
        from ..ops.fast.batchnorm import input_grad

        x3, g3, a3, back, m, s, gm, sums = done
        dx3 = np.empty_like(x3)
        input_grad(g3, x3, a3, m, s, gm, sums, bool(relu), dx3)
        return back(dx3)
    g = _through_relu(g, ans, cache, relu)
    if isinstance(x, Tensor):
        xhat, inv_std = _differentiable_stats(x, axes, eps)
    else:
        xhat = _xhat(x, mean, inv_std)
        if gamma is not None:
            cache[0] = xhat  # the VJP of gamma (next) takes it; dropped with the node otherwise
    dxhat = g if gamma is None else g * ops.reshape(gamma, pshape)
    # d/dx of (x - mean) / std with mean and std of x: remove the mean and the xhat-direction
    # component of the incoming gradient (the biased-variance batch-norm backward).
    mean_g = ops.mean(dxhat, axis=axes, keepdims=True)
    mean_gx = ops.mean(dxhat * xhat, axis=axes, keepdims=True)
    return (dxhat - mean_g - xhat * mean_gx) * inv_std


def _normalize_vjp_gamma(
    g, ans, cache, x, gamma, beta, mean=None, inv_std=None, axes=None, pshape=None, eps=None, relu=False
):
    done = _fast_sums(g, ans, cache, x, gamma, mean, inv_std, axes, pshape, relu)
    if done is not None:
        return done[-1][1].astype(x.dtype).reshape(gamma.shape)
    g = _through_relu(g, ans, cache, relu)
    if isinstance(x, Tensor):
        xhat, _ = _differentiable_stats(x, axes, eps)
    else:
        xhat, cache[0] = cache[0], None
        if xhat is None:  # x needed no gradient
            xhat = _xhat(x, mean, inv_std)
    return ops.reshape(ops.sum_to(g * xhat, pshape), gamma.shape)


def _normalize_vjp_beta(
    g, ans, cache, x, gamma, beta, mean=None, inv_std=None, axes=None, pshape=None, eps=None, relu=False
):
    done = _fast_sums(g, ans, cache, x, gamma, mean, inv_std, axes, pshape, relu)
    if done is not None:
        return done[-1][0].astype(x.dtype).reshape(beta.shape)
    g = _through_relu(g, ans, cache, relu)
    return ops.reshape(ops.sum_to(g, pshape), beta.shape)


normalize.defvjp(_normalize_vjp_x, _normalize_vjp_gamma, _normalize_vjp_beta)


@replayable  # computed outside the primitives: a compiled step must compute it again on every replay
def _stats(xv, axes, eps):
    """Mean (keepdims) and biased variance of the raw array ``xv`` over ``axes``, and 1/sqrt(var + eps)."""
    found = _fast_bn(xv, axes, None, ())
    if found is not None:
        from ..ops.fast.batchnorm import batch_stats

        shape = tuple(1 if i in axes or i - xv.ndim in axes else n for i, n in enumerate(xv.shape))
        return tuple(v.reshape(shape) for v in batch_stats(found[0][0], eps))
    mean = xv.mean(axis=axes, keepdims=True)
    var = xv.var(axis=axes, keepdims=True)
    return mean, var, 1.0 / (var + eps) ** 0.5


def _check_eps(eps, layer):
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise ValueError(f"{layer}: eps must be a positive number, got {eps!r}")
    return float(eps)


@replayable  # a side effect outside the primitives: a compiled step repeats it on every replay
def _update_running(layer, mean, var, count):
    layer._update_running(mean.reshape(-1), var.reshape(-1) * (count / (count - 1)))


@replayable  # reads the running statistics: a compiled step reads them again on every replay
def _folded(layer):
    """The fixed statistics folded into one scale and shift: two full-size ops instead of four."""
    scale = 1.0 / (layer.running_var.value + layer.eps) ** 0.5
    return scale, -layer.running_mean.value * scale


# -- BatchNorm -----------------------------------------------------------------------------------------
class BatchNorm(Layer):
    """Batch normalization (Ioffe & Szegedy, 2015) over the features on ``axis`` (1: (N, F) or (N, C, ...)).

    Training mode normalises with the batch mean and biased variance and updates the running
    averages ``running = (1 - momentum) * running + momentum * batch`` (the unbiased variance for
    ``running_var``), as PyTorch does; ``momentum=None`` keeps a plain cumulative average. Eval mode
    normalises with the running statistics. With ``affine``, a learned scale ``gamma`` (ones) and
    shift ``beta`` (zeros) follow.
    """

    def __init__(self, axis=1, momentum=0.1, eps=1e-5, affine=True, name=None):
        super().__init__(name)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise TypeError(f"BatchNorm: axis must be an int (the feature axis), got {axis!r}")
        if momentum is not None and (isinstance(momentum, bool) or not 0.0 <= momentum <= 1.0):
            raise ValueError(f"BatchNorm: momentum must be in [0, 1] or None, got {momentum!r}")
        self.axis = axis
        self.momentum = None if momentum is None else float(momentum)
        self.eps = _check_eps(eps, "BatchNorm")
        self.affine = bool(affine)
        self.num_features = None

    def build(self, input_shape):
        if input_shape is None or len(input_shape) < 2:
            raise ValueError(f"BatchNorm expects inputs of shape (N, C, ...), got {input_shape}")
        if not -len(input_shape) <= self.axis < len(input_shape) or self.axis % len(input_shape) == 0:
            raise ValueError(
                f"BatchNorm: axis {self.axis} is not a feature axis of inputs of shape {fmt_shape(input_shape)}"
            )
        c = input_shape[self.axis]
        self.num_features = c
        if self.affine:
            self.gamma = Param(initializers.ones((c,)))
            self.beta = Param(initializers.zeros((c,)))
        else:
            self.gamma = self.beta = None
        self.running_mean = Tensor(initializers.zeros((c,)))
        self.running_var = Tensor(initializers.ones((c,)))
        self.batches_seen = Tensor(initializers.zeros(()))

    def _layout(self, x):
        """(feature axis, the other axes, the shape (C,) broadcasts through), checking the input."""
        if x.ndim < 2:
            raise ValueError(f"BatchNorm expects inputs of shape (N, C, ...), got shape {tuple(x.shape)}")
        ax = self.axis % x.ndim if -x.ndim <= self.axis < x.ndim else None
        if ax is None or ax == 0 or x.shape[ax] != self.num_features:
            raise ValueError(
                f"BatchNorm expects {self.num_features} features on axis {self.axis}, "
                f"got inputs of shape {fmt_shape(x.shape)}"
            )
        pshape = [1] * x.ndim
        pshape[ax] = self.num_features
        return ax, tuple(i for i in range(x.ndim) if i != ax), tuple(pshape)

    def forward(self, x, relu=False):
        """Normalise ``x``; ``relu=True`` applies a ReLU after it in the same op, which keeps one array
        for the backward pass where ``relu(bn(x))`` keeps two."""
        x = cast(as_input(x), self.running_mean.dtype)
        ax, axes, pshape = self._layout(x)
        if not self.training:
            y = self._inference(x, pshape)
            return ops.relu(y) if relu else y
        count = math.prod(x.shape[i] for i in axes)
        if count < 2:
            raise ValueError(
                f"BatchNorm: training needs more than one value per feature, got inputs of shape "
                f"{tuple(x.shape)}; use eval() to apply it to a single sample"
            )
        mean, var, inv_std = _stats(_value(x), axes, self.eps)
        y = normalize(
            x, self.gamma, self.beta, mean=mean, inv_std=inv_std, axes=axes, pshape=pshape, eps=self.eps,
            relu=bool(relu),
        )
        _update_running(self, mean, var, count)
        return y

    def _update_running(self, mean, unbiased_var):
        # (mean and unbiased_var flat, shape (C,))
        self.batches_seen.value += 1  # in place: the counter stays a 0-d array
        seen = self.batches_seen.value
        m = self.momentum
        if m is None:  # on a device the count stays there: no host read in a training step
            m = 1.0 / float(seen) if array_namespace(seen) is np else (1.0 / seen).astype(mean.dtype)
        self.running_mean.value = self.running_mean.value * (1 - m) + mean * m
        self.running_var.value = self.running_var.value * (1 - m) + unbiased_var * m

    def _inference(self, x, pshape):
        scale, shift = _folded(self)
        if self.affine:
            scale = self.gamma * scale
            shift = self.beta + self.gamma * shift
        return x * ops.reshape(scale, pshape) + ops.reshape(shift, pshape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {
            "axis": self.axis,
            "momentum": self.momentum,
            "eps": self.eps,
            "affine": self.affine,
            "name": self.name,
        }

    __repr__ = config_repr


# -- LayerNorm -----------------------------------------------------------------------------------------
class LayerNorm(Layer):
    """Layer normalization (Ba et al., 2016): normalise each sample over its last axes.

    ``normalized_shape`` (an int or tuple, as in PyTorch) names the trailing axes and the shape of
    the learned ``gamma`` and ``beta``; without it, ``axis`` (an int or tuple, -1 by default)
    names the axes and their sizes are taken from the first input.
    """

    def __init__(self, normalized_shape=None, axis=-1, eps=1e-5, affine=True, name=None):
        super().__init__(name)
        if normalized_shape is not None:
            ns = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
            if not ns or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in ns):
                raise ValueError(
                    f"LayerNorm: normalized_shape must hold positive ints, got {normalized_shape!r}"
                )
            normalized_shape = ns
            axis = tuple(range(-len(ns), 0))
        axes = (axis,) if isinstance(axis, int) else tuple(axis)
        if (
            not axes
            or any(isinstance(a, bool) or not isinstance(a, int) for a in axes)
            or len(set(axes)) != len(axes)
        ):
            raise ValueError(f"LayerNorm: axis must be an int or a tuple of distinct ints, got {axis!r}")
        self._shape_given = normalized_shape is not None
        self.normalized_shape = normalized_shape
        self.axis = axis if isinstance(axis, int) else tuple(axis)
        self.eps = _check_eps(eps, "LayerNorm")
        self.affine = bool(affine)
        self._axes = axes
        if normalized_shape is not None:
            self._make_params(normalized_shape)

    def _make_params(self, shape):
        self.normalized_shape = tuple(shape)
        if self.affine:
            self.gamma = Param(initializers.ones(shape))
            self.beta = Param(initializers.zeros(shape))
        else:
            self.gamma = self.beta = None

    def _layout(self, shape):
        """(normalised axes as positive ints, the shape gamma broadcasts through), checking ``shape``."""
        nd = len(shape)
        if any(not -nd <= a < nd for a in self._axes) or any(a % nd == 0 for a in self._axes):
            raise ValueError(
                f"LayerNorm: axis {self.axis} does not name non-batch axes of inputs of shape {fmt_shape(shape)}"
            )
        axes = tuple(sorted(a % nd for a in self._axes))
        if self.normalized_shape is not None and tuple(shape[a] for a in axes) != self.normalized_shape:
            want = "(N, ..., " + ", ".join(str(s) for s in self.normalized_shape) + ")"
            raise ValueError(f"LayerNorm expects inputs of shape {want}, got {fmt_shape(shape)}")
        pshape = tuple(shape[i] if i in axes else 1 for i in range(nd))
        return axes, pshape

    def build(self, input_shape):
        if input_shape is None or len(input_shape) < 2:
            raise ValueError(f"LayerNorm expects inputs with a batch axis, got {input_shape}")
        if self.normalized_shape is None:
            axes, _ = self._layout(input_shape)
            self._make_params(tuple(input_shape[a] for a in axes))

    def forward(self, x):
        x = as_input(x)
        if x.dtype.kind != "f":
            x = cast(x, initializers.zeros(()).dtype)
        elif self.gamma is not None:
            x = cast(x, self.gamma.dtype)
        axes, pshape = self._layout(x.shape)
        mean, _, inv_std = _stats(_value(x), axes, self.eps)
        return normalize(
            x, self.gamma, self.beta, mean=mean, inv_std=inv_std, axes=axes, pshape=pshape, eps=self.eps
        )

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        # an inferred normalized_shape is left out: rebuilt from ``axis`` it is inferred again
        ns = list(self.normalized_shape) if self._shape_given else None
        axis = self.axis if isinstance(self.axis, int) else list(self.axis)
        return {
            "normalized_shape": ns,
            "axis": axis,
            "eps": self.eps,
            "affine": self.affine,
            "name": self.name,
        }

    __repr__ = config_repr
