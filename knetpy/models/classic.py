"""The plain convolutional networks: LeNet-5, AlexNet, VGG-11/13/16/19 (with and without BatchNorm),
Network-in-Network.

AlexNet and VGG keep torchvision's layout (``features.<i>``, ``classifier.<i>``, with the ReLU,
pooling and dropout layers counted in the positions), so torchvision's checkpoints load with
:func:`knetpy.models.load_torch_state`. Where torchvision pools adaptively to a fixed 6x6 or 7x7
grid before the classifier, these flatten whatever the features give (the same at 224x224),
so small images need no upsampling.
"""

from __future__ import annotations

from .. import ops
from ..layers import (
    Activation,
    AvgPool2D,
    BatchNorm,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool2D,
    MaxPool2D,
)
from ..layers._util import as_input
from ..model import Sequential
from ._base import ZooModel, channels, image_shape, small_stem
from .blocks import build_through


def _flat(x):
    """(N, C, H, W) -> (N, C * H * W), the order of ``torch.flatten(x, 1)``."""
    return ops.reshape(x, (x.shape[0], -1))


def _built(model, shape):
    """``model`` (a Sequential) built for images of ``shape`` from shapes alone."""
    model.output_shape = build_through(model, (None, *shape))
    return model


def lenet5(num_classes=10, input_shape=(1, 32, 32), activation="tanh", pool="avg"):
    """LeNet-5 (LeCun et al., 1998): conv 5x5 6, pool, conv 5x5 16, pool, dense 120, 84, ``num_classes``.

    61,706 parameters on 32x32 images and 10 classes. 28x28 images (MNIST) are padded by 2 in the
    first convolution, which gives the same sizes. ``activation='relu', pool='max'`` is the modern form.
    """
    shape = image_shape(input_shape, "lenet5")
    if pool not in ("avg", "max"):
        raise ValueError(f"lenet5: pool must be 'avg' or 'max', got {pool!r}")
    pooling = AvgPool2D if pool == "avg" else MaxPool2D
    pad = 2 if min(shape[1:]) < 32 else 0
    return _built(Sequential(
        Conv2D(6, 5, padding=pad, activation=activation), pooling(2),
        Conv2D(16, 5, activation=activation), pooling(2),
        Flatten(), Dense(120, activation=activation), Dense(84, activation=activation), Dense(num_classes),
    ), shape)


class AlexNet(ZooModel):
    """AlexNet (Krizhevsky et al., 2012) in its one-GPU form ("One weird trick", 2014; torchvision's):
    five convolutions (64, 192, 384, 256, 256 channels), three max poolings, and a classifier of two
    dropout-regularised dense layers of ``hidden`` units; 61,100,840 parameters at 224x224 and 1000
    classes. The 'small' stem (3x3 stride-1 first convolution and 2x2 poolings, 'auto' below 64
    pixels) fits 32x32 images; ``width`` scales the channels.
    """

    def __init__(self, num_classes=1000, input_shape=(3, 224, 224), width=1.0, hidden=4096, dropout=0.5,
                 stem="auto", name=None):
        super().__init__(name)
        shape = image_shape(input_shape, "AlexNet")
        c = [channels(n, width) for n in (64, 192, 384, 256, 256)]
        if small_stem(stem, shape, "AlexNet"):
            first, pool = Conv2D(c[0], 3, padding=1), (lambda: MaxPool2D(2))
        else:
            first, pool = Conv2D(c[0], 11, strides=4, padding=2), (lambda: MaxPool2D(3, strides=2))
        relu = lambda: Activation("relu")  # noqa: E731
        self.features = Sequential(
            first, relu(), pool(),
            Conv2D(c[1], 5, padding=2), relu(), pool(),
            Conv2D(c[2], 3, padding=1), relu(),
            Conv2D(c[3], 3, padding=1), relu(),
            Conv2D(c[4], 3, padding=1), relu(), pool(),
        )
        self.classifier = Sequential(Dropout(dropout), Dense(hidden), relu(), Dropout(dropout), Dense(hidden), relu(),
                                     Dense(num_classes))
        config = dict(num_classes=num_classes, input_shape=shape, width=width, hidden=hidden, dropout=dropout,
                      stem=stem, name=name)
        self._finish(config, [self.features, Flatten(), self.classifier], shape)

    def forward(self, x):
        return self.classifier(_flat(self.features(as_input(x))))


def alexnet(**kwargs):
    """AlexNet, one-GPU form; 61,100,840 parameters at 224x224 and 1000 classes (see :class:`AlexNet`)."""
    return AlexNet(**kwargs)


#: VGG configurations (Simonyan & Zisserman, 2014): channels of 3x3 convolutions, "M" for 2x2 max pooling.
VGG_CONFIGS = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    13: (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
}


class VGG(ZooModel):
    """VGG-``depth`` (11, 13, 16 or 19), with BatchNorm after each convolution when ``batch_norm``.

    3x3 convolutions (padding 1, ReLU) in five stages, each ending in 2x2 max pooling, then dense
    layers of ``hidden`` units with dropout. 224x224 images leave 7x7 maps, 32x32 images 1x1;
    ``width`` scales the channels. VGG-16 has 138,357,544 parameters at 224x224 and 1000 classes.
    """

    def __init__(self, depth=16, batch_norm=False, num_classes=1000, input_shape=(3, 224, 224), width=1.0,
                 hidden=4096, dropout=0.5, name=None):
        super().__init__(name)
        if depth not in VGG_CONFIGS:
            raise ValueError(f"VGG: depth must be one of {sorted(VGG_CONFIGS)}, got {depth!r}")
        shape = image_shape(input_shape, "VGG")
        layers = []
        for item in VGG_CONFIGS[depth]:
            if item == "M":
                layers.append(MaxPool2D(2))
                continue
            layers.append(Conv2D(channels(item, width), 3, padding=1))
            if batch_norm:
                layers.append(BatchNorm())
            layers.append(Activation("relu"))
        self.features = Sequential(layers)
        self.classifier = Sequential(Dense(hidden), Activation("relu"), Dropout(dropout), Dense(hidden),
                                     Activation("relu"), Dropout(dropout), Dense(num_classes))
        config = dict(depth=depth, batch_norm=batch_norm, num_classes=num_classes, input_shape=shape, width=width,
                      hidden=hidden, dropout=dropout, name=name)
        self._finish(config, [self.features, Flatten(), self.classifier], shape)

    def forward(self, x):
        return self.classifier(_flat(self.features(as_input(x))))


def vgg11(**kwargs):
    """VGG-11 (configuration A): 132,863,336 parameters at 224x224 and 1000 classes."""
    return VGG(11, **kwargs)


def vgg13(**kwargs):
    """VGG-13 (configuration B): 133,047,848 parameters."""
    return VGG(13, **kwargs)


def vgg16(**kwargs):
    """VGG-16 (configuration D): 138,357,544 parameters."""
    return VGG(16, **kwargs)


def vgg19(**kwargs):
    """VGG-19 (configuration E): 143,667,240 parameters."""
    return VGG(19, **kwargs)


def vgg11_bn(**kwargs):
    """VGG-11 with BatchNorm: 132,868,840 parameters."""
    return VGG(11, batch_norm=True, **kwargs)


def vgg13_bn(**kwargs):
    """VGG-13 with BatchNorm: 133,053,736 parameters."""
    return VGG(13, batch_norm=True, **kwargs)


def vgg16_bn(**kwargs):
    """VGG-16 with BatchNorm: 138,365,992 parameters."""
    return VGG(16, batch_norm=True, **kwargs)


def vgg19_bn(**kwargs):
    """VGG-19 with BatchNorm: 143,678,248 parameters."""
    return VGG(19, batch_norm=True, **kwargs)


def _mlpconv(filters, kernel, strides, padding, last="relu"):
    """NiN's "mlpconv" block: a convolution, then two 1x1 convolutions (a per-pixel MLP), ReLU after each
    (the last one's ``last``: None for the block that gives the class scores)."""
    return Sequential(Conv2D(filters, kernel, strides=strides, padding=padding, activation="relu"),
                      Conv2D(filters, 1, activation="relu"), Conv2D(filters, 1, activation=last))


def nin(num_classes=1000, input_shape=(3, 224, 224), width=1.0, dropout=0.5, stem="auto"):
    """Network in Network (Lin et al., 2013): four mlpconv blocks (96, 256, 384 channels, then one per
    class), 3x3 max pooling between them, and global average pooling instead of dense layers.

    The 'small' stem (3x3 stride-1 first convolution, 'auto' below 64 pixels) fits 32x32 images.
    """
    shape = image_shape(input_shape, "nin")
    c = [channels(n, width) for n in (96, 256, 384)]
    first = (c[0], 3, 1, 1) if small_stem(stem, shape, "nin") else (c[0], 11, 4, 0)
    return _built(Sequential(
        _mlpconv(*first), MaxPool2D(3, strides=2),
        _mlpconv(c[1], 5, 1, 2), MaxPool2D(3, strides=2),
        _mlpconv(c[2], 3, 1, 1), MaxPool2D(3, strides=2),
        Dropout(dropout),
        _mlpconv(num_classes, 3, 1, 1, last=None), GlobalAvgPool2D(),
    ), shape)
