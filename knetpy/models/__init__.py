"""The model zoo: the CNN families of a deep-learning course, each a function returning a :class:`~knetpy.Model`.

Every function takes ``num_classes`` and ``input_shape`` (one image's (C, H, W), or an int for
square RGB images), and most a ``width`` multiplier and a ``stem`` ('small' keeps 32x32 images from
being downsampled away; 'auto' picks it below 64 pixels), so that small versions train on a CPU
while the full ones have the published parameter counts at 224x224 and 1000 classes. Networks are
built from shapes in the constructor (no data runs through), so ``count_params()`` and
``summary()`` work at once. :func:`load_torch_state` loads PyTorch weights from safetensors or
``.npz`` files.
"""

from . import blocks
from .blocks import (
    BasicBlock,
    Bottleneck,
    Chain,
    DenseLayer,
    Fire,
    Inception,
    PreActBlock,
    PreActBottleneck,
    SeparableBlock,
)
from .classic import (
    VGG,
    AlexNet,
    alexnet,
    lenet5,
    nin,
    vgg11,
    vgg11_bn,
    vgg13,
    vgg13_bn,
    vgg16,
    vgg16_bn,
    vgg19,
    vgg19_bn,
)
from .modern import (
    DenseNet,
    GoogLeNet,
    MobileNet,
    SqueezeNet,
    densenet121,
    googlenet,
    googlenet_naive,
    mobilenet,
    squeezenet1_0,
    squeezenet1_1,
)
from .resnet import (
    ResNet,
    preact_resnet18,
    preact_resnet50,
    resnet18,
    resnet20,
    resnet34,
    resnet50,
    resnet101,
    resnet152,
    resnext50_32x4d,
    wide_resnet,
    wide_resnet50_2,
)
from .torch_weights import load_torch_state, read_safetensors, torch_names
