"""Convolution layers: Conv1D, Conv2D, Conv3D and Conv2DTranspose.

Inputs are (N, C, *spatial). The layers compute cross-correlation (``conv4(..., mode=1)``), as
PyTorch and Keras do; the filter ``w`` is (filters, C_in / groups, *kernel) (for the transpose:
(C_in, filters / groups, *kernel), PyTorch's layout) and the bias ``b`` is (filters,). Input
channels are taken from the first input.
"""

from __future__ import annotations

import numpy as np

from .. import activations, ops
from .. import init as initializers
from ..autograd import Param, Tensor
from ..data._checks import require_real
from ..ops.conv import conv4_bias, per_axis
from ..ops.conv_pool import conv_relu_pool
from ._util import as_input, cast, config_repr, fmt_shape, positive_int
from .base import Layer
from .pooling import _MaxPool, _Pool


def _padding_option(padding, rank, layer, causal=False):
    """'valid', 'same' (or 'causal' where allowed), or ints per dimension -> that name | tuple."""
    if isinstance(padding, str):
        key = padding.lower()
        names = ("valid", "same", "causal") if causal else ("valid", "same")
        if key not in names:
            hint = "" if causal or key != "causal" else " ('causal' is for Conv1D only)"
            raise ValueError(
                f"{layer}: padding must be {', '.join(map(repr, names))} or an int / tuple of ints, "
                f"got {padding!r}{hint}"
            )
        return key
    return per_axis(padding, rank, "padding", layer, 0)


def _same_padding(size, kernel, stride, dilation):
    """(before, after) so that the output has ceil(size / stride) positions (extra after, like Keras)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)
    return total // 2, total - total // 2


class _Conv(Layer):
    """Shared by Conv1D/2D/3D: ``y = activation(conv4(w, x, mode=1) + b)``."""

    rank = None

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        dilation=1,
        groups=1,
        activation=None,
        use_bias=True,
        init="glorot_uniform",
        name=None,
    ):
        super().__init__(name)
        layer = type(self).__name__
        self.filters = positive_int(filters, "filters", layer)
        self.kernel_size = per_axis(kernel_size, self.rank, "kernel_size", layer, 1)
        self.strides = per_axis(strides, self.rank, "strides", layer, 1)
        self.dilation = per_axis(dilation, self.rank, "dilation", layer, 1)
        self.padding = _padding_option(padding, self.rank, layer, causal=self.rank == 1)
        self.groups = positive_int(groups, "groups", layer)
        if self.filters % self.groups:
            raise ValueError(f"{layer}: filters={self.filters} is not divisible by groups={self.groups}")
        self.activation = activation
        self._act = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.init = init
        self._init = initializers.get(init)
        self.w = None
        self.b = None

    def _expect(self, input_shape):
        layer = type(self).__name__
        if input_shape is None or len(input_shape) != self.rank + 2:
            dims = ", ".join(["N", "C"] + ["XYZ"[i] for i in range(self.rank)])
            got = "an input without a shape" if input_shape is None else fmt_shape(input_shape)
            raise ValueError(f"{layer} expects inputs of shape ({dims}), got {got}")
        channels = input_shape[1]
        if channels % self.groups:
            raise ValueError(f"{layer}: input has {channels} channels, not divisible by groups={self.groups}")
        return channels

    def build(self, input_shape):
        channels = self._expect(input_shape)
        shape = (self.filters, channels // self.groups, *self.kernel_size)
        self.w = Param(self._init(shape))
        self.b = Param(initializers.zeros((self.filters,))) if self.use_bias else None

    def _conv_padding(self, spatial):
        """(padding for conv4, explicit (before, after) pads or None)."""
        if self.padding == "valid":
            return 0, None
        if self.padding == "causal":  # all the padding before: output t sees inputs up to t only
            return 0, [(self.dilation[0] * (self.kernel_size[0] - 1), 0)]
        if self.padding != "same":
            return self.padding, None
        pads = [_same_padding(*a) for a in zip(spatial, self.kernel_size, self.strides, self.dilation)]
        if all(a == b for a, b in pads):
            return tuple(a for a, _ in pads), None
        return 0, pads

    def forward(self, x):
        x, args = self._prepare(x)
        if self.b is not None and self._act in (activations.linear, activations.relu):
            # bias and relu fused into the convolution: one pass fewer each way
            return conv4_bias(self.w, x, self.b, *args, relu=self._act is activations.relu)
        y = ops.conv4(self.w, x, *args)
        if self.b is not None:
            y = y + ops.reshape(self.b, (1, self.filters) + (1,) * self.rank)
        return self._act(y)

    def fuses_with(self, pool, x):
        """Whether :meth:`forward_pooled` computes ``pool(self(x))``: a built layer with bias and relu,
        and a built max-pooling layer of the same rank, neither with its own ``forward``; and no
        first device input to move the layer for (the unfused call does that)."""
        value = x.value if isinstance(x, Tensor) else x
        return (
            isinstance(pool, _MaxPool) and pool.rank == self.rank
            and self.built and pool.built and self.b is not None and self._act is activations.relu
            and type(self).forward is _Conv.forward and type(pool).forward is _Pool.forward
            and "forward" not in vars(self) and "forward" not in vars(pool)
            and (self._on_device or type(value) is np.ndarray)
        )

    def forward_pooled(self, x, pool):
        """``pool(self(x))`` as one op (:func:`knetpy.ops.conv_relu_pool`); see :meth:`fuses_with`."""
        require_real(x, "the input", type(self).__name__)
        x, args = self._prepare(x)
        return conv_relu_pool(self.w, x, self.b, *args, window=pool.pool_size, pool_padding=pool.padding,
                              pool_stride=pool.strides)

    def _prepare(self, x):
        """The input checked, cast and padded; the conv4 arguments after w and x."""
        x = as_input(x)
        channels = self._expect(x.shape)
        if channels != self.w.shape[1] * self.groups:
            want = self.w.shape[1] * self.groups
            raise ValueError(
                f"{type(self).__name__} was built for {want} input channels, got inputs of shape {fmt_shape(x.shape)}"
            )
        x = cast(x, self.w.dtype)
        padding, explicit = self._conv_padding(x.shape[2:])
        if explicit is not None:  # 'same' with an odd total (one more zero after than before), or 'causal'
            x = ops.pad(x, ((0, 0), (0, 0), *explicit))
        return x, (padding, self.strides, self.dilation, 1, self.groups)

    def compute_output_shape(self, input_shape):
        self._expect(input_shape)
        padding, explicit = self._conv_padding(input_shape[2:])
        pads = explicit or [(p, p) for p in per_axis(padding, self.rank, "padding", "", 0)]
        spatial = tuple(
            1 + (s + a + b - d * (k - 1) - 1) // st
            for s, (a, b), k, st, d in zip(
                input_shape[2:], pads, self.kernel_size, self.strides, self.dilation
            )
        )
        return (input_shape[0], self.filters, *spatial)

    def get_config(self):
        return {
            "filters": self.filters,
            "kernel_size": list(self.kernel_size),
            "strides": list(self.strides),
            "padding": self.padding if isinstance(self.padding, str) else list(self.padding),
            "dilation": list(self.dilation),
            "groups": self.groups,
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "init": initializers.serialize(self.init),
            "name": self.name,
        }

    __repr__ = config_repr


class Conv1D(_Conv):
    """1-D convolution over (N, C, X) inputs (cross-correlation; see :class:`Conv2D`).

    For sequences, ``padding='causal'`` pads ``dilation * (kernel_size - 1)`` zeros before the
    sequence only, so the output at step t depends on the inputs up to t and never on later ones
    (WaveNet's and temporal convolutional networks' layer); stack it with growing ``dilation``
    (1, 2, 4, ...) for a receptive field that grows exponentially with depth.
    """

    rank = 1


class Conv2D(_Conv):
    """2-D convolution ``y = activation(conv4(w, x, mode=1) + b)`` over (N, C, H, W) inputs.

    ``kernel_size``, ``strides`` and ``dilation`` are ints or per-dimension tuples; ``padding`` is
    'valid' (none), 'same' (output size ceil(X / stride); an odd total puts the extra zero after)
    or ints. ``groups`` splits the channels into independent convolutions. ``activation`` is a
    name or callable, ``init`` the filter initializer (the bias starts at zero).
    """

    rank = 2


class Conv3D(_Conv):
    """3-D convolution over (N, C, D, H, W) inputs (cross-correlation; see :class:`Conv2D`)."""

    rank = 3


class Conv2DTranspose(Layer):
    """Transposed 2-D convolution (``deconv4(..., mode=1)``): upsamples (N, C, H, W) inputs.

    The output size is (X - 1) S - 2P + D(K - 1) + output_padding + 1 with integer ``padding``;
    ``padding='same'`` gives X * S and 'valid' is padding 0. The filter is
    (C_in, filters / groups, kh, kw), as ``torch.nn.ConvTranspose2d``.
    """

    rank = 2

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        output_padding=0,
        dilation=1,
        groups=1,
        activation=None,
        use_bias=True,
        init="glorot_uniform",
        name=None,
    ):
        super().__init__(name)
        layer = type(self).__name__
        self.filters = positive_int(filters, "filters", layer)
        self.kernel_size = per_axis(kernel_size, self.rank, "kernel_size", layer, 1)
        self.strides = per_axis(strides, self.rank, "strides", layer, 1)
        self.dilation = per_axis(dilation, self.rank, "dilation", layer, 1)
        self.padding = _padding_option(padding, self.rank, layer)
        self.output_padding = per_axis(output_padding, self.rank, "output_padding", layer, 0)
        if self.padding == "same" and any(self.output_padding):
            raise ValueError(f"{layer}: output_padding is chosen by padding='same'; leave it 0")
        self.groups = positive_int(groups, "groups", layer)
        if self.filters % self.groups:
            raise ValueError(f"{layer}: filters={self.filters} is not divisible by groups={self.groups}")
        self.activation = activation
        self._act = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.init = init
        self._init = initializers.get(init)
        self.w = None
        self.b = None

    _expect = _Conv._expect

    def build(self, input_shape):
        channels = self._expect(input_shape)
        self.w = Param(self._init((channels, self.filters // self.groups, *self.kernel_size)))
        self.b = Param(initializers.zeros((self.filters,))) if self.use_bias else None

    def _geometry(self):
        """(padding, output_padding, crop at the end per axis) for deconv4."""
        if self.padding == "valid":
            return (0,) * self.rank, self.output_padding, (0,) * self.rank
        if self.padding != "same":
            return self.padding, self.output_padding, (0,) * self.rank
        per_axis_choice = []
        for k, s, d in zip(self.kernel_size, self.strides, self.dilation):
            excess = d * (k - 1) + 1 - s  # the 'valid' output is X * S + excess
            if excess < 0:
                per_axis_choice.append((0, -excess, 0))
            elif excess % 2 == 0:
                per_axis_choice.append((excess // 2, 0, 0))
            elif max(s, d) > 1:
                per_axis_choice.append((excess // 2 + 1, 1, 0))
            else:  # stride and dilation 1 with an even kernel: trim the one extra position
                per_axis_choice.append((excess // 2, 0, 1))
        pads, extras, crops = zip(*per_axis_choice)
        return pads, extras, crops

    def forward(self, x):
        x = as_input(x)
        channels = self._expect(x.shape)
        if channels != self.w.shape[0]:
            raise ValueError(
                f"{type(self).__name__} was built for {self.w.shape[0]} input channels, "
                f"got inputs of shape {fmt_shape(x.shape)}"
            )
        x = cast(x, self.w.dtype)
        padding, extra, crop = self._geometry()
        y = ops.deconv4(
            self.w, x, padding, self.strides, self.dilation, mode=1, groups=self.groups, output_padding=extra
        )
        if any(crop):
            y = y[(slice(None), slice(None)) + tuple(slice(0, n - c) for n, c in zip(y.shape[2:], crop))]
        if self.b is not None:
            y = y + ops.reshape(self.b, (1, self.filters) + (1,) * self.rank)
        return self._act(y)

    def compute_output_shape(self, input_shape):
        self._expect(input_shape)
        padding, extra, crop = self._geometry()
        spatial = tuple(
            (s - 1) * st - 2 * p + d * (k - 1) + e + 1 - c
            for s, k, st, d, p, e, c in zip(
                input_shape[2:], self.kernel_size, self.strides, self.dilation, padding, extra, crop
            )
        )
        return (input_shape[0], self.filters, *spatial)

    def get_config(self):
        config = _Conv.get_config(self)
        config["output_padding"] = list(self.output_padding)
        return config

    __repr__ = config_repr
