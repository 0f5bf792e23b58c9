"""Convolution, pooling and resizing layers against their PyTorch counterparts."""

import numpy as np
import pytest

import knetpy as kp
from knetpy import layers as L


def copy_weights(layer, tlayer, torch):
    with torch.no_grad():
        tlayer.weight.copy_(torch.tensor(layer.w.value))
        if layer.b is not None:
            tlayer.bias.copy_(torch.tensor(layer.b.value))


def check_layer(torch, layer, tlayer, x, rng):
    """Forward and parameter/input gradients of ``layer`` against ``tlayer`` (float64)."""
    xp = kp.Param(x)
    y = layer(xp)
    copy_weights(layer, tlayer, torch)
    xt = torch.tensor(x, requires_grad=True)
    yt = tlayer(xt)
    assert y.shape == tuple(yt.shape) == layer.compute_output_shape(x.shape)
    np.testing.assert_allclose(y.value, yt.detach().numpy(), rtol=1e-6, atol=1e-12)
    cot = rng.standard_normal(y.shape)
    kp.sum(y * cot).backward()
    (yt * torch.tensor(cot)).sum().backward()
    np.testing.assert_allclose(xp.grad, xt.grad.numpy(), rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(layer.w.grad, tlayer.weight.grad.numpy(), rtol=1e-6, atol=1e-12)
    if layer.b is not None:
        np.testing.assert_allclose(layer.b.grad, tlayer.bias.grad.numpy(), rtol=1e-6, atol=1e-12)


@pytest.fixture
def float64():
    kp.set_dtype("float64")


@pytest.mark.parametrize(
    "kwargs, torch_kwargs",
    [
        (dict(), dict()),
        (dict(strides=2, padding=1), dict(stride=2, padding=1)),
        (dict(padding="same", dilation=2), dict(padding="same", dilation=2)),
        (dict(kernel_size=(2, 4), padding="same"), dict(kernel_size=(2, 4), padding="same")),
        (dict(groups=2, use_bias=False), dict(groups=2, bias=False)),
    ],
)
@pytest.mark.filterwarnings("ignore:Using padding=.same. with even kernel")
def test_conv2d_matches_torch(torch, rng, float64, kwargs, torch_kwargs):
    kernel = kwargs.pop("kernel_size", 3)
    torch_kwargs.pop("kernel_size", None)
    layer = L.Conv2D(6, kernel, **kwargs)
    tlayer = torch.nn.Conv2d(4, 6, kernel, **torch_kwargs)
    check_layer(torch, layer, tlayer, rng.standard_normal((2, 4, 7, 8)), rng)


def test_conv1d_and_conv3d_match_torch(torch, rng, float64):
    check_layer(
        torch,
        L.Conv1D(5, 3, strides=2),
        torch.nn.Conv1d(3, 5, 3, stride=2),
        rng.standard_normal((2, 3, 9)),
        rng,
    )
    check_layer(
        torch,
        L.Conv3D(4, (2, 3, 2), padding=1),
        torch.nn.Conv3d(2, 4, (2, 3, 2), padding=1),
        rng.standard_normal((2, 2, 4, 5, 3)),
        rng,
    )


def test_conv2d_same_padding_with_stride_keeps_ceil_size(rng):
    layer = L.Conv2D(3, 3, strides=2, padding="same")
    for size in (7, 8):
        y = layer(rng.standard_normal((1, 2, size, size)).astype(np.float32))
        assert (
            y.shape == (1, 3, -(-size // 2), -(-size // 2)) == layer.compute_output_shape((1, 2, size, size))
        )
    even = L.Conv2D(1, 2, strides=2, padding="same")
    assert even(np.zeros((1, 1, 7, 7), np.float32)).shape == (1, 1, 4, 4)


def test_conv2d_activation_init_and_config(rng):
    layer = L.Conv2D(4, 3, activation="relu", init="he_normal", name="c1")
    y = layer(rng.standard_normal((2, 3, 6, 6)).astype(np.float32))
    assert y.dtype == np.float32 and (y.value >= 0).all()
    assert layer.w.shape == (4, 3, 3, 3) and layer.b.shape == (4,) and not layer.b.value.any()
    assert layer.count_params() == 4 * 3 * 9 + 4
    config = layer.get_config()
    assert config["activation"] == "relu" and config["kernel_size"] == [3, 3] and config["padding"] == "valid"
    clone = L.Conv2D(**config)
    assert clone.get_config() == config
    assert "Conv2D(filters=4" in repr(layer)


def test_conv2d_casts_integer_input(rng):
    layer = L.Conv2D(2, 3)
    y = layer(rng.integers(0, 255, (1, 1, 5, 5), dtype=np.uint8))
    assert y.dtype == np.float32


def test_conv_layer_errors(rng):
    with pytest.raises(ValueError, match=r"Conv2D expects inputs of shape \(N, C, X, Y\)"):
        L.Conv2D(2, 3)(np.zeros((2, 5, 5), np.float32))
    layer = L.Conv2D(2, 3)
    layer(np.zeros((1, 3, 5, 5), np.float32))
    with pytest.raises(ValueError, match="built for 3 input channels"):
        layer(np.zeros((1, 4, 5, 5), np.float32))
    with pytest.raises(ValueError, match="padding must be 'valid', 'same'"):
        L.Conv2D(2, 3, padding="full")
    with pytest.raises(ValueError, match="filters=3 is not divisible by groups=2"):
        L.Conv2D(3, 3, groups=2)
    with pytest.raises(ValueError, match="input has 3 channels, not divisible by groups=2"):
        L.Conv2D(4, 3, groups=2)(np.zeros((1, 3, 5, 5), np.float32))
    with pytest.raises(ValueError, match="unknown activation 'rleu'; did you mean 'relu'"):
        L.Conv2D(4, 3, activation="rleu")
    with pytest.raises(ValueError, match="kernel_size has 3 entries for 2 spatial dimensions"):
        L.Conv2D(4, (3, 3, 3))


@pytest.mark.parametrize(
    "kwargs, torch_kwargs",
    [
        (dict(strides=2), dict(stride=2)),
        (dict(strides=2, padding=1, output_padding=1), dict(stride=2, padding=1, output_padding=1)),
        (dict(groups=2, dilation=2), dict(groups=2, dilation=2)),
    ],
)
def test_conv2d_transpose_matches_torch(torch, rng, float64, kwargs, torch_kwargs):
    layer = L.Conv2DTranspose(4, 3, **kwargs)
    tlayer = torch.nn.ConvTranspose2d(4, 4, 3, **torch_kwargs)
    check_layer(torch, layer, tlayer, rng.standard_normal((2, 4, 5, 4)), rng)


@pytest.mark.parametrize("kernel, stride", [(3, 2), (4, 2), (2, 1), (3, 1), (1, 3), (5, 3)])
def test_conv2d_transpose_same_multiplies_the_size(rng, kernel, stride):
    layer = L.Conv2DTranspose(2, kernel, strides=stride, padding="same")
    y = layer(rng.standard_normal((1, 3, 5, 4)).astype(np.float32))
    assert y.shape == (1, 2, 5 * stride, 4 * stride) == layer.compute_output_shape((1, 3, 5, 4))
    assert layer.w.shape == (3, 2, kernel, kernel)
    assert L.Conv2DTranspose(**layer.get_config()).get_config() == layer.get_config()


# -- pooling layers -----------------------------------------------------------------------------------------
def test_pool_layers_match_torch(torch, rng):
    x = rng.standard_normal((2, 3, 7, 8))
    t = torch.tensor(x)
    F = torch.nn.functional
    cases = [
        (L.MaxPool2D(), F.max_pool2d(t, 2)),
        (L.MaxPool2D(3, strides=2, padding=1), F.max_pool2d(t, 3, 2, 1)),
        (L.AvgPool2D((2, 3)), F.avg_pool2d(t, (2, 3))),
        (L.AvgPool2D(3, 1, 1, count_include_pad=False), F.avg_pool2d(t, 3, 1, 1, count_include_pad=False)),
        (L.GlobalAvgPool2D(), F.adaptive_avg_pool2d(t, 1).reshape(2, 3)),
        (L.GlobalMaxPool2D(keepdims=True), F.adaptive_max_pool2d(t, 1)),
    ]
    for layer, expected in cases:
        y = layer(x)
        np.testing.assert_allclose(y, expected.numpy(), rtol=1e-6)
        assert y.shape == layer.compute_output_shape(x.shape)
        assert type(layer)(**layer.get_config()).get_config() == layer.get_config()
    x1, x3 = rng.standard_normal((2, 3, 9)), rng.standard_normal((1, 2, 4, 4, 6))
    np.testing.assert_allclose(L.MaxPool1D(3)(x1), F.max_pool1d(torch.tensor(x1), 3).numpy())
    np.testing.assert_allclose(L.AvgPool3D(2)(x3), F.avg_pool3d(torch.tensor(x3), 2).numpy())
    np.testing.assert_allclose(L.MaxPool3D((1, 2, 3))(x3), F.max_pool3d(torch.tensor(x3), (1, 2, 3)).numpy())
    np.testing.assert_allclose(L.GlobalMaxPool1D()(x1), x1.max(axis=2))
    np.testing.assert_allclose(L.GlobalAvgPool3D()(x3), x3.mean(axis=(2, 3, 4)))


def test_pool_layer_errors():
    with pytest.raises(ValueError, match=r"MaxPool2D expects inputs of shape \(N, C, X, Y\)"):
        L.MaxPool2D()(np.zeros((1, 4, 4)))
    with pytest.raises(ValueError, match="padding must be 'valid'"):
        L.AvgPool2D(padding="same")
    with pytest.raises(ValueError, match="pool_size must be >= 1"):
        L.MaxPool1D(0)


# -- resizing layers ---------------------------------------------------------------------------------------
def test_upsampling_and_zero_padding_match_torch(torch, rng):
    x = rng.standard_normal((2, 3, 4, 5))
    t = torch.tensor(x)
    F = torch.nn.functional
    up = L.UpSampling2D((2, 3))
    np.testing.assert_array_equal(up(x), F.interpolate(t, scale_factor=(2, 3)).numpy())
    bil = L.UpSampling2D(2, interpolation="bilinear")
    np.testing.assert_allclose(bil(x), F.interpolate(t, scale_factor=2, mode="bilinear").numpy(), rtol=1e-6)
    assert bil.compute_output_shape(x.shape) == (2, 3, 8, 10)
    pad = L.ZeroPadding2D(((1, 2), (0, 3)))
    np.testing.assert_array_equal(pad(x), F.pad(t, (0, 3, 1, 2)).numpy())
    assert pad.compute_output_shape(x.shape) == (2, 3, 7, 8)
    for layer in (up, bil, pad, L.ZeroPadding2D(2), L.ZeroPadding2D((1, 2))):
        assert type(layer)(**layer.get_config()).get_config() == layer.get_config()
    with pytest.raises(ValueError, match="did you mean 'bilinear'"):
        L.UpSampling2D(interpolation="bilnear")
    with pytest.raises(ValueError, match="padding must be an int"):
        L.ZeroPadding2D((1, 2, 3))


def test_small_cnn_trains(rng):
    # A conv -> pool -> dense network fits a toy task: the layers compose and learn.
    x = rng.standard_normal((64, 1, 8, 8)).astype(np.float32)
    y = (x[:, 0, :4].sum(axis=(1, 2)) > x[:, 0, 4:].sum(axis=(1, 2))).astype(np.int64)
    net = [L.Conv2D(4, 3, padding="same", activation="relu"), L.MaxPool2D(), L.Flatten(), L.Dense(2)]

    def loss():
        h = x
        for layer in net:
            h = layer(h)
        return kp.nll(h, y)

    first = float(loss().value)
    params = [p for layer in net for p in layer.parameters()]
    for _ in range(60):
        for p in params:
            p.zero_grad()
        loss().backward()
        for p in params:
            p -= 0.1 * p.grad
    assert float(loss().value) < 0.5 * first
