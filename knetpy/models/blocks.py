"""The blocks the model zoo is made of: residual, inception, fire, dense and depthwise-separable blocks.

Each block is a :class:`~knetpy.layers.base.Layer` whose children are created in ``build`` (when the
number of input channels is known) and built right there from shapes alone, without running data,
so that even a 138-million-parameter network is built (and counted) in the time it takes to
initialize its weights. Children are named as in torchvision (``conv1``, ``bn1``, ``downsample``,
``squeeze``, ``expand3x3``, ``norm1``, ...), so that :func:`knetpy.models.load_torch_state` maps a
PyTorch ``state_dict`` onto them name by name.
"""

from __future__ import annotations

from .. import ops
from ..activations import relu
from ..layers import Activation, AvgPool2D, BatchNorm, Conv2D, Dropout, MaxPool2D
from ..layers._util import as_input, config_repr
from ..layers.base import Layer
from ..model import Sequential

#: Convolutions followed by batch norm carry no bias (the norm's shift replaces it), as in torchvision.
CONV_INIT = "he_normal"


def build_through(layer, shape):
    """Build ``layer`` for inputs of ``shape`` (batch axis included) without running data; its output shape.

    A :class:`~knetpy.Sequential` is built layer by layer; every other layer answers
    ``compute_output_shape``.
    """
    if isinstance(layer, Sequential):
        first = shape
        for inner in layer:
            shape = build_through(inner, shape)
        layer.built, layer.input_shape = True, tuple(first)
        return shape
    if not layer.built:
        layer.build(shape)
        layer.built, layer.input_shape = True, tuple(shape)
    out = tuple(layer.compute_output_shape(shape))
    if any(d is not None and d < 1 for d in out[1:]):
        raise ValueError(f"{type(layer).__name__} gets inputs of shape {tuple(shape)} and would output {out}: "
                         "the images are too small for this network (give a larger input_shape)")
    return out


def output_shape(layer, shape):
    """The output shape of a built ``layer`` (a Sequential included) for inputs of ``shape``."""
    if isinstance(layer, Sequential):
        for inner in layer:
            shape = output_shape(inner, shape)
        return shape
    return tuple(layer.compute_output_shape(shape))


def conv(filters, kernel, strides=1, padding=0, groups=1, bias=False):
    """A 2-D convolution with He initialization (no bias by default: a BatchNorm follows)."""
    return Conv2D(filters, kernel, strides=strides, padding=padding, groups=groups, use_bias=bias, init=CONV_INIT)


class Chain(Layer):
    """Named layers applied in order: ``Chain(("conv0", Conv2D(...)), ("norm0", BatchNorm()), ...)``.

    A Sequential with names instead of positions: each layer is an attribute of that name, so its
    parameters are ``conv0.w``, ``norm0.gamma``, ... (torchvision's ``OrderedDict`` Sequentials).
    """

    def __init__(self, *named, name=None):
        super().__init__(name)
        self._names = []
        for key, layer in named:
            if not key.isidentifier() or hasattr(self, key):
                raise ValueError(f"Chain: {key!r} cannot name a layer (an identifier not used already)")
            setattr(self, key, layer)
            self._names.append(key)

    def build(self, input_shape):
        for key in self._names:
            input_shape = build_through(getattr(self, key), input_shape)

    def forward(self, x):
        for key in self._names:
            x = getattr(self, key)(x)
        return x

    def compute_output_shape(self, input_shape):
        for key in self._names:
            input_shape = output_shape(getattr(self, key), input_shape)
        return input_shape

    def get_config(self):
        return {"named": [(key, getattr(self, key)) for key in self._names], "name": self.name}

    def __repr__(self):
        return f"Chain({', '.join(self._names)})"


class _Block(Layer):
    """A block whose children depend on the input channels: they are created and built in ``build``."""

    def build(self, input_shape):
        if input_shape is None or len(input_shape) != 4:
            raise ValueError(f"{type(self).__name__} expects inputs of shape (N, C, H, W), got {input_shape}")
        self._make(input_shape[1])
        self._shape_of(tuple(input_shape), build=True)

    def compute_output_shape(self, input_shape):
        return self._shape_of(tuple(input_shape), build=False)

    def _path(self, layers, shape, build):
        walk = build_through if build else output_shape
        for layer in layers:
            if layer is not None:
                shape = walk(layer, shape)
        return shape

    def _residual(self, main, shortcut, shape, build):
        """The output shape of the ``main`` path; the ``shortcut`` (if any) is walked from the same input."""
        out = self._path(main, shape, build)
        if shortcut is not None:
            self._path([shortcut], shape, build)
        return out

    __repr__ = config_repr


# -- residual blocks -------------------------------------------------------------------------------------
class BasicBlock(_Block):
    """ResNet's basic block (He et al., 2015): 3x3 conv-BN-ReLU, 3x3 conv-BN, plus the shortcut, ReLU.

    The shortcut is the identity, or a 1x1 convolution with BN (``downsample``) when ``strides`` or
    the number of channels changes. ``expansion`` is 1: the block outputs ``filters`` channels.
    """

    expansion = 1

    def __init__(self, filters, strides=1, name=None):
        super().__init__(name)
        self.filters, self.strides = int(filters), int(strides)

    def _make(self, channels):
        out = self.filters * self.expansion
        self.conv1, self.bn1 = conv(self.filters, 3, self.strides, 1), BatchNorm()
        self.conv2, self.bn2 = conv(out, 3, 1, 1), BatchNorm()
        self.downsample = None
        if self.strides != 1 or channels != out:
            self.downsample = Sequential(conv(out, 1, self.strides), BatchNorm())

    def _shape_of(self, shape, build):
        return self._residual([self.conv1, self.bn1, self.conv2, self.bn2], self.downsample, shape, build)

    def forward(self, x):
        x = as_input(x)
        identity = x if self.downsample is None else self.downsample(x)
        y = self.bn1(self.conv1(x), relu=True)
        return relu(self.bn2(self.conv2(y)) + identity)

    def get_config(self):
        return {"filters": self.filters, "strides": self.strides, "name": self.name}


class _Bottleneck(_Block):
    """What the two bottleneck blocks share: their options, the 3x3 width, the 4x expansion."""

    expansion = 4

    def __init__(self, filters, strides=1, groups=1, base_width=64, name=None):
        super().__init__(name)
        self.filters, self.strides = int(filters), int(strides)
        self.groups, self.base_width = int(groups), int(base_width)

    def _width(self):
        return max(1, int(self.filters * (self.base_width / 64.0))) * self.groups  # at least 1 per group

    def get_config(self):
        return {"filters": self.filters, "strides": self.strides, "groups": self.groups,
                "base_width": self.base_width, "name": self.name}


class Bottleneck(_Bottleneck):
    """ResNet's bottleneck block: 1x1 conv to ``width``, 3x3 conv (grouped for ResNeXt), 1x1 conv to
    ``4 * filters``, each with BN, plus the shortcut, ReLU.

    ``width = filters * base_width / 64 * groups``: 64 and 1 give ResNet-50; ``groups=32,
    base_width=4`` ResNeXt-50 32x4d; ``base_width=128`` Wide ResNet-50-2. The stride sits on the 3x3
    convolution (torchvision's "ResNet v1.5").
    """

    def _make(self, channels):
        width = self._width()
        out = self.filters * self.expansion
        self.conv1, self.bn1 = conv(width, 1), BatchNorm()
        self.conv2, self.bn2 = conv(width, 3, self.strides, 1, groups=self.groups), BatchNorm()
        self.conv3, self.bn3 = conv(out, 1), BatchNorm()
        self.downsample = None
        if self.strides != 1 or channels != out:
            self.downsample = Sequential(conv(out, 1, self.strides), BatchNorm())

    def _shape_of(self, shape, build):
        return self._residual([self.conv1, self.bn1, self.conv2, self.bn2, self.conv3, self.bn3], self.downsample, shape, build)

    def forward(self, x):
        x = as_input(x)
        identity = x if self.downsample is None else self.downsample(x)
        y = self.bn1(self.conv1(x), relu=True)
        y = self.bn2(self.conv2(y), relu=True)
        return relu(self.bn3(self.conv3(y)) + identity)


class PreActBlock(_Block):
    """Pre-activation basic block (He et al., 2016, "Identity mappings"): BN-ReLU-conv3x3, BN-ReLU-conv3x3,
    plus the shortcut (a bare 1x1 convolution of the pre-activated input when the shape changes).

    ``dropout`` between the two convolutions gives the Wide ResNet block (Zagoruyko & Komodakis, 2016).
    """

    expansion = 1

    def __init__(self, filters, strides=1, dropout=0.0, name=None):
        super().__init__(name)
        self.filters, self.strides, self.dropout = int(filters), int(strides), float(dropout)

    def _make(self, channels):
        self.bn1, self.conv1 = BatchNorm(), conv(self.filters, 3, self.strides, 1)
        self.drop = Dropout(self.dropout) if self.dropout else None
        self.bn2, self.conv2 = BatchNorm(), conv(self.filters, 3, 1, 1)
        self.shortcut = None
        if self.strides != 1 or channels != self.filters:
            self.shortcut = conv(self.filters, 1, self.strides)

    def _shape_of(self, shape, build):
        return self._residual([self.bn1, self.conv1, self.drop, self.bn2, self.conv2], self.shortcut, shape, build)

    def forward(self, x):
        x = as_input(x)
        pre = self.bn1(x, relu=True)
        identity = x if self.shortcut is None else self.shortcut(pre)
        y = self.conv1(pre)
        if self.drop is not None:
            y = self.drop(y)
        return self.conv2(self.bn2(y, relu=True)) + identity

    def get_config(self):
        return {"filters": self.filters, "strides": self.strides, "dropout": self.dropout, "name": self.name}


class PreActBottleneck(_Bottleneck):
    """Pre-activation bottleneck: BN-ReLU-conv1x1, BN-ReLU-conv3x3, BN-ReLU-conv1x1 (4x), plus the shortcut."""


    def _make(self, channels):
        width = self._width()
        out = self.filters * self.expansion
        self.bn1, self.conv1 = BatchNorm(), conv(width, 1)
        self.bn2, self.conv2 = BatchNorm(), conv(width, 3, self.strides, 1, groups=self.groups)
        self.bn3, self.conv3 = BatchNorm(), conv(out, 1)
        self.shortcut = None
        if self.strides != 1 or channels != out:
            self.shortcut = conv(out, 1, self.strides)

    def _shape_of(self, shape, build):
        return self._residual([self.bn1, self.conv1, self.bn2, self.conv2, self.bn3, self.conv3], self.shortcut, shape, build)

    def forward(self, x):
        x = as_input(x)
        pre = self.bn1(x, relu=True)
        identity = x if self.shortcut is None else self.shortcut(pre)
        y = self.conv1(pre)
        y = self.conv2(self.bn2(y, relu=True))
        return self.conv3(self.bn3(y, relu=True)) + identity


# -- multi-branch blocks ---------------------------------------------------------------------------------
class _Branches(_Block):
    """Branches applied to the same input, their outputs concatenated on the channel axis."""

    def _branches(self):
        raise NotImplementedError

    def _shape_of(self, shape, build):
        outs = [self._path([b], shape, build) for b in self._branches()]
        return (shape[0], sum(o[1] for o in outs), *outs[0][2:])

    def forward(self, x):
        x = as_input(x)
        return ops.concatenate([b(x) for b in self._branches()], axis=1)


def conv_bn_relu(filters, kernel, strides=1, padding=0, eps=1e-3):
    """GoogLeNet's ``BasicConv2d``: convolution without bias, BN, ReLU (named conv, bn, relu)."""
    return Chain(("conv", conv(filters, kernel, strides, padding)), ("bn", BatchNorm(eps=eps)),
                 ("relu", Activation("relu")))


class Inception(_Branches):
    """GoogLeNet's Inception module (Szegedy et al., 2014): 1x1, 3x3, 5x5 and 3x3-max-pool branches.

    With ``bottleneck`` (the GoogLeNet module) 1x1 convolutions reduce the channels before the 3x3
    (to ``c3_reduce``) and 5x5 (to ``c5_reduce``) convolutions and project the pooled branch (to
    ``pool_proj``); without it (the naive module) the pooled input passes through whole and the
    reductions are unused. Output channels: ``c1 + c3 + c5 + (pool_proj or the input's)``.
    ``kernel5`` is the "5x5" branch's kernel: torchvision's GoogLeNet, whose published parameter
    count (6,624,904) this zoo reproduces, uses 3.
    """

    def __init__(self, c1, c3_reduce, c3, c5_reduce, c5, pool_proj, bottleneck=True, kernel5=5, name=None):
        super().__init__(name)
        self.sizes = [int(v) for v in (c1, c3_reduce, c3, c5_reduce, c5, pool_proj)]
        self.bottleneck, self.kernel5 = bool(bottleneck), int(kernel5)

    def _make(self, channels):
        c1, c3r, c3, c5r, c5, pp = self.sizes
        k5 = self.kernel5
        if self.bottleneck:
            self.branch1 = conv_bn_relu(c1, 1)
            self.branch2 = Sequential(conv_bn_relu(c3r, 1), conv_bn_relu(c3, 3, padding=1))
            self.branch3 = Sequential(conv_bn_relu(c5r, 1), conv_bn_relu(c5, k5, padding=k5 // 2))
            self.branch4 = Sequential(MaxPool2D(3, strides=1, padding=1), conv_bn_relu(pp, 1))
        else:
            self.branch1 = conv_bn_relu(c1, 1)
            self.branch2 = conv_bn_relu(c3, 3, padding=1)
            self.branch3 = conv_bn_relu(c5, k5, padding=k5 // 2)
            self.branch4 = MaxPool2D(3, strides=1, padding=1)

    def _branches(self):
        return [self.branch1, self.branch2, self.branch3, self.branch4]

    def get_config(self):
        return {**dict(zip(("c1", "c3_reduce", "c3", "c5_reduce", "c5", "pool_proj"), self.sizes)),
                "bottleneck": self.bottleneck, "kernel5": self.kernel5, "name": self.name}


class Fire(_Block):
    """SqueezeNet's fire module (Iandola et al., 2016): a 1x1 ``squeeze`` convolution, then 1x1 and 3x3
    ``expand`` convolutions side by side, concatenated; ReLU after each, biases kept."""

    def __init__(self, squeeze, expand1x1, expand3x3, name=None):
        super().__init__(name)
        self.sizes = (int(squeeze), int(expand1x1), int(expand3x3))

    def _make(self, channels):
        s, e1, e3 = self.sizes
        self.squeeze = Conv2D(s, 1, activation="relu", init=CONV_INIT)
        self.expand1x1 = Conv2D(e1, 1, activation="relu", init=CONV_INIT)
        self.expand3x3 = Conv2D(e3, 3, padding=1, activation="relu", init=CONV_INIT)

    def _shape_of(self, shape, build):
        mid = self._path([self.squeeze], shape, build)
        a, b = self._path([self.expand1x1], mid, build), self._path([self.expand3x3], mid, build)
        return (shape[0], a[1] + b[1], *a[2:])

    def forward(self, x):
        s = self.squeeze(as_input(x))
        return ops.concatenate([self.expand1x1(s), self.expand3x3(s)], axis=1)

    def get_config(self):
        return {"squeeze": self.sizes[0], "expand1x1": self.sizes[1], "expand3x3": self.sizes[2], "name": self.name}


class DenseLayer(_Block):
    """One layer of a DenseNet dense block (Huang et al., 2017): BN-ReLU-conv1x1 (to ``bn_size * growth``),
    BN-ReLU-conv3x3 (to ``growth``), its output concatenated after its input."""

    def __init__(self, growth, bn_size=4, dropout=0.0, name=None):
        super().__init__(name)
        self.growth, self.bn_size, self.dropout = int(growth), int(bn_size), float(dropout)

    def _make(self, channels):
        self.norm1, self.conv1 = BatchNorm(), conv(self.bn_size * self.growth, 1)
        self.norm2, self.conv2 = BatchNorm(), conv(self.growth, 3, 1, 1)
        self.drop = Dropout(self.dropout) if self.dropout else None

    def _shape_of(self, shape, build):
        out = self._path([self.norm1, self.conv1, self.norm2, self.conv2], shape, build)
        return (shape[0], shape[1] + out[1], *shape[2:])

    def forward(self, x):
        x = as_input(x)
        y = self.conv1(relu(self.norm1(x)))
        y = self.conv2(relu(self.norm2(y)))
        if self.drop is not None:
            y = self.drop(y)
        return ops.concatenate([x, y], axis=1)

    def get_config(self):
        return {"growth": self.growth, "bn_size": self.bn_size, "dropout": self.dropout, "name": self.name}


def dense_block(layers, growth, bn_size=4, dropout=0.0):
    """``layers`` dense layers in a row (named denselayer1, denselayer2, ...): the input's channels plus
    ``layers * growth`` come out."""
    return Chain(*((f"denselayer{i + 1}", DenseLayer(growth, bn_size, dropout)) for i in range(layers)))


def transition(filters):
    """DenseNet's transition: BN-ReLU-conv1x1 to ``filters`` channels, 2x2 average pooling."""
    return Chain(("norm", BatchNorm()), ("relu", Activation("relu")), ("conv", conv(filters, 1)),
                 ("pool", AvgPool2D(2)))


class SeparableBlock(_Block):
    """MobileNet's depthwise-separable convolution (Howard et al., 2017): a 3x3 depthwise convolution
    (one filter per channel, ``groups`` = channels) with BN and ReLU, then a 1x1 pointwise convolution
    to ``filters`` channels with BN and ReLU. About 8-9 times fewer multiply-adds than a full 3x3
    convolution."""

    def __init__(self, filters, strides=1, name=None):
        super().__init__(name)
        self.filters, self.strides = int(filters), int(strides)

    def _make(self, channels):
        self.depthwise, self.bn1 = conv(channels, 3, self.strides, 1, groups=channels), BatchNorm()
        self.pointwise, self.bn2 = conv(self.filters, 1), BatchNorm()

    def _shape_of(self, shape, build):
        return self._path([self.depthwise, self.bn1, self.pointwise, self.bn2], shape, build)

    def forward(self, x):
        y = relu(self.bn1(self.depthwise(as_input(x))))
        return relu(self.bn2(self.pointwise(y)))

    def get_config(self):
        return {"filters": self.filters, "strides": self.strides, "name": self.name}
