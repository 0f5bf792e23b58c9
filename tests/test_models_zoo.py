"""The model zoo: published parameter counts at 224x224 and 1000 classes, small versions that run
forward and backward on 32x32 images, summaries, save/load, and clear errors."""

import numpy as np
import pytest

import knetpy as kp
from knetpy import models

# Published counts (torchvision's, for the one-GPU AlexNet and GoogLeNet without auxiliary heads).
PUBLISHED = {
    "vgg16": 138_357_544, "resnet18": 11_689_512, "resnet50": 25_557_032, "densenet121": 7_978_856,
    "squeezenet1_1": 1_235_496, "alexnet": 61_100_840, "googlenet": 6_624_904,
}
PUBLISHED_MORE = {
    "vgg11": 132_863_336, "vgg13": 133_047_848, "vgg19": 143_667_240, "vgg11_bn": 132_868_840,
    "vgg13_bn": 133_053_736, "vgg16_bn": 138_365_992, "vgg19_bn": 143_678_248, "resnet34": 21_797_672,
    "resnet101": 44_549_160, "resnet152": 60_192_808, "resnext50_32x4d": 25_028_904,
    "wide_resnet50_2": 68_883_240, "squeezenet1_0": 1_248_424, "mobilenet": 4_231_976,
}


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_published_parameter_counts(name):
    model = getattr(models, name)()  # 224x224, 1000 classes; built from shapes, no forward pass
    assert model.count_params() == PUBLISHED[name]
    assert model.output_shape == (None, 1000)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PUBLISHED_MORE))
def test_more_published_parameter_counts(name):
    assert getattr(models, name)().count_params() == PUBLISHED_MORE[name]


def test_lenet5_count_and_mnist_size():
    assert models.lenet5().count_params() == 61_706
    assert models.lenet5(input_shape=(1, 28, 28)).count_params() == 61_706  # padded to LeNet's 32x32 sizes


SMALL = {
    "lenet5": lambda: models.lenet5(input_shape=(3, 28, 28), activation="relu", pool="max"),
    "alexnet": lambda: models.alexnet(num_classes=10, input_shape=32, width=0.125, hidden=32),
    "vgg11": lambda: models.vgg11(num_classes=10, input_shape=32, width=0.125, hidden=32),
    "vgg16_bn": lambda: models.vgg16_bn(num_classes=10, input_shape=32, width=0.0625, hidden=16),
    "nin": lambda: models.nin(num_classes=10, input_shape=28, width=0.125),
    "googlenet": lambda: models.googlenet(num_classes=10, input_shape=32, width=0.0625),
    "googlenet_naive": lambda: models.googlenet_naive(num_classes=10, input_shape=32, width=0.0625),
    "resnet18": lambda: models.resnet18(num_classes=10, input_shape=32, width=0.125),
    "resnet50": lambda: models.resnet50(num_classes=10, input_shape=32, width=0.0625),
    "preact_resnet18": lambda: models.preact_resnet18(num_classes=10, input_shape=32, width=0.125),
    "preact_resnet50": lambda: models.preact_resnet50(num_classes=10, input_shape=32, width=0.0625),
    "wide_resnet": lambda: models.wide_resnet(depth=10, k=2, dropout=0.3),
    "resnext": lambda: models.resnext50_32x4d(num_classes=10, input_shape=32, width=0.125),
    "resnet20": lambda: models.resnet20(width=0.5),
    "densenet": lambda: models.DenseNet(8, (2, 2, 2), 16, num_classes=10, input_shape=32),
    "squeezenet1_0": lambda: models.squeezenet1_0(num_classes=10, input_shape=32),
    "squeezenet1_1": lambda: models.squeezenet1_1(num_classes=10, input_shape=28),
    "mobilenet": lambda: models.mobilenet(num_classes=10, input_shape=32, width=0.25),
}


@pytest.mark.parametrize("name", list(SMALL))
def test_small_versions_forward_backward_and_summary(name):
    kp.set_seed(0)
    model = SMALL[name]()
    c, h, w = model.input_shape[1:]
    x = np.random.default_rng(0).standard_normal((3, c, h, w)).astype(np.float32)
    out = model(x)
    assert tuple(out.shape) == (3, 10) and model.output_shape == (None, 10)
    kp.losses.get("cross_entropy")(out, np.array([0, 4, 9])).backward()
    params = model.parameters()
    assert params and all(p.grad is not None and p.grad.shape == p.shape for p in params)
    assert any(np.abs(p.grad).sum() > 0 for p in params)
    text = model.summary(print_fn=None)
    assert f"Total params: {model.count_params():,}" in text
    assert "(None, 10)" in text  # the output shape is in the table
    assert model.count_params() < 2_000_000  # small enough to train on a CPU


def test_summary_lists_blocks_with_shapes():
    text = models.resnet20().summary(print_fn=None)
    assert "layer3 (Sequential)" in text and "(None, 64, 8, 8)" in text and "fc (Dense)" in text
    assert "Total params: 272,474" in text


def test_zoo_network_saves_and_loads(tmp_path):
    model = models.DenseNet(8, (2, 2), 16, num_classes=5, input_shape=(3, 16, 16))
    x = np.random.default_rng(1).standard_normal((2, 3, 16, 16)).astype(np.float32)
    model.compile(loss="cross_entropy", optimizer="sgd")
    model.fit(x, np.array([1, 3]), epochs=1, batch_size=2, verbose=0)  # running statistics move
    kp.save(tmp_path / "m.ckpt", model)
    back = kp.load(tmp_path / "m.ckpt")
    assert type(back) is models.DenseNet and back.get_config() == model.get_config()
    np.testing.assert_allclose(back.predict(x), model.predict(x), rtol=1e-6)


def test_small_cifar_resnet_learns():
    kp.set_seed(0)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 64)
    x = rng.standard_normal((64, 3, 16, 16)).astype(np.float32) * 0.3
    x[:, 0] += (y * 2 - 1)[:, None, None]  # the class is the red channel's sign
    model = models.resnet20(num_classes=2, input_shape=(3, 16, 16), width=0.25)
    model.compile(loss="cross_entropy", optimizer=kp.optim.Adam(lr=3e-3), metrics=["accuracy"])
    history = model.fit(x, y, epochs=6, batch_size=16, verbose=0)
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert model.evaluate(x, y)["accuracy"] > 0.9


def test_clear_errors():
    with pytest.raises(ValueError, match="too small"):
        models.vgg16(input_shape=(3, 16, 16))
    with pytest.raises(ValueError, match="stem must be"):
        models.resnet18(stem="tiny")
    with pytest.raises(ValueError, match="depth must be one of"):
        models.VGG(depth=12)
    with pytest.raises(ValueError, match="groups and width_per_group are for bottleneck"):
        models.ResNet("basic", (1, 1), widths=(8, 16), groups=4)
    with pytest.raises(ValueError, match="input_shape is one image's"):
        models.resnet18(input_shape=(224, 224))
    with pytest.raises(ValueError, match="6n \\+ 4"):
        models.wide_resnet(depth=12)
