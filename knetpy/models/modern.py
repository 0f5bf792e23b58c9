"""GoogLeNet, DenseNet, SqueezeNet and MobileNet: networks made of multi-branch or cheap blocks.

GoogLeNet, DenseNet and SqueezeNet keep torchvision's layer names, so its checkpoints load with
:func:`knetpy.models.load_torch_state`. Each takes ``stem='small'`` (chosen by 'auto' below 64
pixels) to keep 32x32 images from being downsampled away in the first layers.
"""

from __future__ import annotations

from ..activations import relu
from ..layers import Activation, BatchNorm, Conv2D, Dense, Dropout, GlobalAvgPool2D, MaxPool2D
from ..layers._util import as_input
from ..model import Sequential
from ._base import ZooModel, channels, image_shape, small_stem
from .blocks import Chain, Fire, Inception, SeparableBlock, conv, conv_bn_relu, dense_block, transition

#: GoogLeNet's Inception modules: (c1, c3_reduce, c3, c5_reduce, c5, pool_proj), max pooling after 3b and 4e.
GOOGLENET_MODULES = {
    "inception3a": (64, 96, 128, 16, 32, 32), "inception3b": (128, 128, 192, 32, 96, 64),
    "inception4a": (192, 96, 208, 16, 48, 64), "inception4b": (160, 112, 224, 24, 64, 64),
    "inception4c": (128, 128, 256, 24, 64, 64), "inception4d": (112, 144, 288, 32, 64, 64),
    "inception4e": (256, 160, 320, 32, 128, 128), "inception5a": (256, 160, 320, 32, 128, 128),
    "inception5b": (384, 192, 384, 48, 128, 128),
}


class GoogLeNet(ZooModel):
    """GoogLeNet (Szegedy et al., 2014) without the auxiliary classifiers: a stem of three convolutions,
    nine :class:`~knetpy.models.blocks.Inception` modules, global average pooling, dropout and a
    dense layer. ``bottleneck=False`` uses the naive modules (no 1x1 reductions; channels grow
    quickly). ``kernel5`` is the kernel of the "5x5" branches: 3 as in torchvision, whose count
    6,624,904 (224x224, 1000 classes) it reproduces; 5 as in the paper. Convolutions carry BN.
    """

    def __init__(self, num_classes=1000, input_shape=(3, 224, 224), width=1.0, bottleneck=True, kernel5=3,
                 dropout=0.2, stem="auto", name=None):
        super().__init__(name)
        shape = image_shape(input_shape, "GoogLeNet")
        small = small_stem(stem, shape, "GoogLeNet")
        self.conv1 = conv_bn_relu(channels(64, width), 3, 1, 1) if small else conv_bn_relu(channels(64, width), 7, 2, 3)
        self.maxpool1 = None if small else MaxPool2D(3, strides=2, padding=1)
        self.conv2 = conv_bn_relu(channels(64, width), 1)
        self.conv3 = conv_bn_relu(channels(192, width), 3, padding=1)
        self.maxpool2 = MaxPool2D(3, strides=2, padding=1)
        self._order = ["conv1", "maxpool1", "conv2", "conv3", "maxpool2"]
        for key, sizes in GOOGLENET_MODULES.items():
            setattr(self, key, Inception(*(channels(c, width) for c in sizes), bottleneck=bottleneck, kernel5=kernel5))
            self._order.append(key)
            if key == "inception3b":
                self.maxpool3 = MaxPool2D(3, strides=2, padding=1)
                self._order.append("maxpool3")
            elif key == "inception4e":
                self.maxpool4 = MaxPool2D(2)
                self._order.append("maxpool4")
        self.avgpool = GlobalAvgPool2D()
        self.dropout = Dropout(dropout)
        self.fc = Dense(num_classes)
        self._order += ["avgpool", "dropout", "fc"]
        config = dict(num_classes=num_classes, input_shape=shape, width=width, bottleneck=bottleneck, kernel5=kernel5,
                      dropout=dropout, stem=stem, name=name)
        self._finish(config, self._parts(), shape)

    def _parts(self):
        return [getattr(self, key) for key in self._order if getattr(self, key) is not None]

    def forward(self, x):
        x = as_input(x)
        for part in self._parts():
            x = part(x)
        return x


def googlenet(**kwargs):
    """GoogLeNet with 1x1 bottlenecks, no auxiliary heads: 6,624,904 parameters (see :class:`GoogLeNet`)."""
    return GoogLeNet(**kwargs)


def googlenet_naive(**kwargs):
    """GoogLeNet of naive Inception modules (no 1x1 reductions), for comparing against the bottlenecked one."""
    return GoogLeNet(bottleneck=False, **kwargs)


class DenseNet(ZooModel):
    """DenseNet (Huang et al., 2017): dense blocks of ``block_config`` layers adding ``growth_rate``
    channels each, joined by transitions that halve the channels and the image; BN-ReLU, global
    pooling and a dense layer end it. DenseNet-121 is blocks (6, 12, 24, 16), growth 32, 64 initial
    channels: 7,978,856 parameters at 224x224 and 1000 classes.
    """

    def __init__(self, growth_rate=32, block_config=(6, 12, 24, 16), num_init_features=64, bn_size=4,
                 num_classes=1000, input_shape=(3, 224, 224), dropout=0.0, stem="auto", name=None):
        super().__init__(name)
        shape = image_shape(input_shape, "DenseNet")
        if small_stem(stem, shape, "DenseNet"):
            parts = [("conv0", conv(num_init_features, 3, 1, 1))]
        else:
            parts = [("conv0", conv(num_init_features, 7, 2, 3)), ("norm0", BatchNorm()),
                     ("relu0", Activation("relu")), ("pool0", MaxPool2D(3, strides=2, padding=1))]
        c = num_init_features
        for i, n in enumerate(block_config):
            parts.append((f"denseblock{i + 1}", dense_block(n, growth_rate, bn_size, dropout)))
            c += n * growth_rate
            if i != len(block_config) - 1:
                parts.append((f"transition{i + 1}", transition(c // 2)))
                c //= 2
        parts.append(("norm5", BatchNorm()))
        self.features = Chain(*parts)
        self.avgpool = GlobalAvgPool2D()
        self.classifier = Dense(num_classes)
        config = dict(growth_rate=growth_rate, block_config=tuple(block_config), num_init_features=num_init_features,
                      bn_size=bn_size, num_classes=num_classes, input_shape=shape, dropout=dropout, stem=stem,
                      name=name)
        self._finish(config, [self.features, self.avgpool, self.classifier], shape)

    def forward(self, x):
        return self.classifier(self.avgpool(relu(self.features(as_input(x)))))


def densenet121(**kwargs):
    """DenseNet-121: 7,978,856 parameters at 224x224 and 1000 classes (see :class:`DenseNet`)."""
    return DenseNet(32, (6, 12, 24, 16), 64, **kwargs)


#: SqueezeNet's feature layers: ("conv", filters, kernel), "M" (3x3 stride-2 max pooling), or a fire module.
SQUEEZENET_CONFIGS = {
    "1.0": (("conv", 96, 7), "M", (16, 64, 64), (16, 64, 64), (32, 128, 128), "M", (32, 128, 128),
            (48, 192, 192), (48, 192, 192), (64, 256, 256), "M", (64, 256, 256)),
    "1.1": (("conv", 64, 3), "M", (16, 64, 64), (16, 64, 64), "M", (32, 128, 128), (32, 128, 128), "M",
            (48, 192, 192), (48, 192, 192), (64, 256, 256), (64, 256, 256)),
}


class SqueezeNet(ZooModel):
    """SqueezeNet (Iandola et al., 2016) ``version`` '1.0' or '1.1': a convolution, eight
    :class:`~knetpy.models.blocks.Fire` modules with max pooling between them, and a 1x1
    convolution to one map per class (ReLU, global average pooling) instead of dense layers.
    1.1 has 1,235,496 parameters at 1000 classes (1.0: 1,248,424), AlexNet's accuracy at 1/50 the size.
    """

    def __init__(self, version="1.1", num_classes=1000, input_shape=(3, 224, 224), dropout=0.5, stem="auto",
                 name=None):
        super().__init__(name)
        if version not in SQUEEZENET_CONFIGS:
            raise ValueError(f"SqueezeNet: version must be '1.0' or '1.1', got {version!r}")
        shape = image_shape(input_shape, "SqueezeNet")
        small = small_stem(stem, shape, "SqueezeNet")
        layers = []
        for item in SQUEEZENET_CONFIGS[version]:
            if item == "M":
                layers.append(MaxPool2D(3, strides=2))
            elif item[0] == "conv":
                _, filters, kernel = item
                layers.append(Conv2D(filters, 3, padding=1) if small else Conv2D(filters, kernel, strides=2))
                layers.append(Activation("relu"))
            else:
                layers.append(Fire(*item))
        self.features = Sequential(layers)
        self.classifier = Sequential(Dropout(dropout), Conv2D(num_classes, 1), Activation("relu"), GlobalAvgPool2D())
        config = dict(version=version, num_classes=num_classes, input_shape=shape, dropout=dropout, stem=stem,
                      name=name)
        self._finish(config, [self.features, self.classifier], shape)

    def forward(self, x):
        return self.classifier(self.features(as_input(x)))


def squeezenet1_0(**kwargs):
    """SqueezeNet 1.0: 1,248,424 parameters at 1000 classes."""
    return SqueezeNet("1.0", **kwargs)


def squeezenet1_1(**kwargs):
    """SqueezeNet 1.1: 1,235,496 parameters at 1000 classes, 2.4 times less computation than 1.0."""
    return SqueezeNet("1.1", **kwargs)


#: MobileNet v1's separable blocks: (pointwise filters, stride).
MOBILENET_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1),
                    (512, 1), (512, 1), (1024, 2), (1024, 1))


class MobileNet(ZooModel):
    """MobileNet v1 (Howard et al., 2017): a 3x3 stride-2 convolution, thirteen depthwise-separable
    blocks (:class:`~knetpy.models.blocks.SeparableBlock`), global pooling, dropout, a dense layer.
    ``width`` is the width multiplier alpha; 4,231,976 parameters at alpha 1, 224x224, 1000 classes.
    The 'small' stem (stride 1, 'auto' below 64 pixels) fits 32x32 images.
    """

    def __init__(self, num_classes=1000, input_shape=(3, 224, 224), width=1.0, dropout=1e-3, stem="auto", name=None):
        super().__init__(name)
        shape = image_shape(input_shape, "MobileNet")
        strides = 1 if small_stem(stem, shape, "MobileNet") else 2
        self.conv1, self.bn1 = conv(channels(32, width), 3, strides, 1), BatchNorm()
        self.blocks = Sequential([SeparableBlock(channels(f, width), s) for f, s in MOBILENET_BLOCKS])
        self.avgpool = GlobalAvgPool2D()
        self.dropout = Dropout(dropout)
        self.fc = Dense(num_classes)
        config = dict(num_classes=num_classes, input_shape=shape, width=width, dropout=dropout, stem=stem, name=name)
        self._finish(config, [self.conv1, self.bn1, self.blocks, self.avgpool, self.dropout, self.fc], shape)

    def forward(self, x):
        x = relu(self.bn1(self.conv1(as_input(x))))
        return self.fc(self.dropout(self.avgpool(self.blocks(x))))


def mobilenet(**kwargs):
    """MobileNet v1 (see :class:`MobileNet`)."""
    return MobileNet(**kwargs)
