"""Residual networks: ResNet-18/34/50/101/152, pre-activation ResNets, Wide ResNets, ResNeXt, ResNet-20.

One class, :class:`ResNet`, builds them all from a block type and the number of blocks per stage;
the functions below fix those for the published networks. Layer names follow torchvision
(``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer1.0.downsample.0``, ``fc``), so torchvision's
checkpoints load with :func:`knetpy.models.load_torch_state`.
"""

from __future__ import annotations

from ..layers import BatchNorm, Dense, GlobalAvgPool2D, MaxPool2D
from ..layers._util import as_input
from ..model import Sequential
from ._base import ZooModel, channels, image_shape, small_stem
from .blocks import BasicBlock, Bottleneck, PreActBlock, PreActBottleneck, conv

BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}
PREACT_BLOCKS = {"basic": PreActBlock, "bottleneck": PreActBottleneck}


class ResNet(ZooModel):
    """A residual network (He et al., 2015) of ``block`` ('basic' or 'bottleneck') blocks.

    ``layers``: blocks per stage; ``widths``: each stage's base channels (a bottleneck stage outputs
    4 times as many), the first stage at stride 1 and each later one halving the image; ``width``
    scales every channel count. ``stem``: 'imagenet' (7x7 stride-2 convolution and 3x3 max pooling,
    for 224x224 images), 'small' (one 3x3 convolution, for 32x32 images: CIFAR ResNets) or 'auto'
    (small below 64 pixels). ``preact`` uses pre-activation blocks (He et al., 2016: BN and ReLU
    before each convolution, a final BN-ReLU before pooling). ``groups`` and ``width_per_group``
    make bottlenecks grouped (ResNeXt) or wider (Wide ResNet-50-2); ``dropout`` sits inside
    pre-activation basic blocks (Wide ResNets). Global average pooling and a dense layer to
    ``num_classes`` logits end it.
    """

    def __init__(self, block="basic", layers=(2, 2, 2, 2), num_classes=1000, input_shape=(3, 224, 224),
                 widths=(64, 128, 256, 512), width=1.0, stem="auto", stem_width=None, preact=False,
                 groups=1, width_per_group=64, dropout=0.0, name=None):
        super().__init__(name)
        who = "ResNet"
        table = PREACT_BLOCKS if preact else BLOCKS
        if block not in table:
            raise ValueError(f"{who}: block must be 'basic' or 'bottleneck', got {block!r}")
        if len(layers) != len(widths) or not all(int(n) >= 1 for n in layers):
            raise ValueError(f"{who}: layers (blocks per stage, each >= 1) and widths need one entry per stage, "
                             f"got layers={layers!r}, widths={widths!r}")
        if block == "basic" and (groups != 1 or width_per_group != 64):
            raise ValueError(f"{who}: groups and width_per_group are for bottleneck blocks (ResNeXt, Wide ResNet-50-2)")
        if dropout and not (preact and block == "basic"):
            raise ValueError(f"{who}: dropout sits in pre-activation basic blocks (Wide ResNets); use preact=True")
        shape = image_shape(input_shape, who)
        small = small_stem(stem, shape, who)
        sizes = [channels(w, width) for w in widths]
        first = channels(stem_width, width) if stem_width is not None else sizes[0]
        self.preact = bool(preact)
        if small:
            self.conv1 = conv(first, 3, 1, 1)
            self.maxpool = None
        else:
            self.conv1 = conv(first, 7, 2, 3)
            self.maxpool = MaxPool2D(3, strides=2, padding=1)
        self.bn1 = None if preact else BatchNorm()
        cls = table[block]
        extra = {}
        if block == "bottleneck":
            extra = {"groups": groups, "base_width": width_per_group}
        elif dropout:
            extra = {"dropout": dropout}
        self._stages = []
        for i, (n, filters) in enumerate(zip(layers, sizes)):
            stage = Sequential([cls(filters, 1 if i == 0 or j else 2, **extra) for j in range(int(n))])
            setattr(self, f"layer{i + 1}", stage)
            self._stages.append(f"layer{i + 1}")
        self.post_bn = BatchNorm() if preact else None
        self.avgpool = GlobalAvgPool2D()
        self.fc = Dense(num_classes)
        config = dict(block=block, layers=tuple(layers), num_classes=num_classes, input_shape=shape,
                      widths=tuple(widths), width=width, stem=stem, stem_width=stem_width, preact=preact,
                      groups=groups, width_per_group=width_per_group, dropout=dropout, name=name)
        parts = [self.conv1, self.bn1, self.maxpool, *(getattr(self, s) for s in self._stages),
                 self.post_bn, self.avgpool, self.fc]
        self._finish(config, [p for p in parts if p is not None], shape)

    def features(self, x):
        """The last stage's feature maps (N, C, h, w) of images ``x``."""
        x = self.conv1(as_input(x))
        if self.bn1 is not None:
            x = self.bn1(x, relu=True)  # fused: keeps one array, not two
        if self.maxpool is not None:
            x = self.maxpool(x)
        for stage in self._stages:
            x = getattr(self, stage)(x)
        if self.post_bn is not None:
            x = self.post_bn(x, relu=True)
        return x

    def forward(self, x):
        return self.fc(self.avgpool(self.features(x)))


def _resnet(block, layers, preact=False, **kwargs):
    return ResNet(block, layers, preact=preact, **kwargs)


def resnet18(**kwargs):
    """ResNet-18: basic blocks (2, 2, 2, 2); 11,689,512 parameters at 1000 classes."""
    return _resnet("basic", (2, 2, 2, 2), **kwargs)


def resnet34(**kwargs):
    """ResNet-34: basic blocks (3, 4, 6, 3); 21,797,672 parameters at 1000 classes."""
    return _resnet("basic", (3, 4, 6, 3), **kwargs)


def resnet50(**kwargs):
    """ResNet-50: bottleneck blocks (3, 4, 6, 3); 25,557,032 parameters at 1000 classes."""
    return _resnet("bottleneck", (3, 4, 6, 3), **kwargs)


def resnet101(**kwargs):
    """ResNet-101: bottleneck blocks (3, 4, 23, 3); 44,549,160 parameters at 1000 classes."""
    return _resnet("bottleneck", (3, 4, 23, 3), **kwargs)


def resnet152(**kwargs):
    """ResNet-152: bottleneck blocks (3, 8, 36, 3); 60,192,808 parameters at 1000 classes."""
    return _resnet("bottleneck", (3, 8, 36, 3), **kwargs)


def preact_resnet18(**kwargs):
    """Pre-activation ResNet-18 (He et al., 2016, "Identity mappings in deep residual networks")."""
    return _resnet("basic", (2, 2, 2, 2), preact=True, **kwargs)


def preact_resnet50(**kwargs):
    """Pre-activation ResNet-50 (bottleneck blocks (3, 4, 6, 3))."""
    return _resnet("bottleneck", (3, 4, 6, 3), preact=True, **kwargs)


def resnext50_32x4d(**kwargs):
    """ResNeXt-50 32x4d (Xie et al., 2017): bottlenecks with 32 groups of 4 channels; 25,028,904 parameters."""
    return _resnet("bottleneck", (3, 4, 6, 3), groups=32, width_per_group=4, **kwargs)


def wide_resnet50_2(**kwargs):
    """Wide ResNet-50-2: ResNet-50 with bottlenecks twice as wide; 68,883,240 parameters."""
    return _resnet("bottleneck", (3, 4, 6, 3), width_per_group=128, **kwargs)


def wide_resnet(depth=28, k=10, num_classes=10, input_shape=(3, 32, 32), dropout=0.0, **kwargs):
    """WRN-``depth``-``k`` (Zagoruyko & Komodakis, 2016), the CIFAR form: a 3x3 stem of 16 channels,
    three stages of (depth - 4) / 6 pre-activation basic blocks of 16k, 32k and 64k channels."""
    if (depth - 4) % 6 or depth < 10:
        raise ValueError(f"wide_resnet: depth must be 6n + 4 (10, 16, 22, 28, 40, ...), got {depth}")
    n = (depth - 4) // 6
    return ResNet("basic", (n, n, n), num_classes=num_classes, input_shape=input_shape,
                  widths=(16 * k, 32 * k, 64 * k), stem="small", stem_width=16, preact=True, dropout=dropout,
                  **kwargs)


def resnet20(num_classes=10, input_shape=(3, 32, 32), width=1.0, **kwargs):
    """A ResNet-20-style CIFAR network (He et al., 2015, section 4.2): a 3x3 stem, three stages of
    three basic blocks with 16, 32 and 64 channels (shortcuts by 1x1 projection where the shape
    changes), global pooling, a dense layer; about 0.27 million parameters."""
    return ResNet("basic", (3, 3, 3), num_classes=num_classes, input_shape=input_shape, widths=(16, 32, 64),
                  width=width, stem="small", **kwargs)
