"""Causal and dilated 1-D convolutions for sequences: output at t independent of inputs after t."""

import numpy as np
import pytest

import knetpy as kp
from knetpy.layers import Conv1D, Conv2D


@pytest.mark.parametrize("kernel,dilation", [(2, 1), (3, 1), (3, 2), (2, 4)])
def test_causal_output_ignores_the_future_and_keeps_the_length(kernel, dilation):
    kp.set_dtype("float64")
    conv = Conv1D(4, kernel, padding="causal", dilation=dilation)
    x = np.random.default_rng(0).standard_normal((2, 3, 12))
    y = conv(x).value
    assert y.shape == (2, 4, 12) and conv.compute_output_shape(x.shape) == y.shape
    for t in range(12):
        changed = x.copy()
        changed[:, :, t + 1 :] = 7.0  # change every input after t
        np.testing.assert_array_equal(conv(changed).value[:, :, : t + 1], y[:, :, : t + 1])
    # ... and it does depend on the inputs it may see: x[t - dilation * j] for j < kernel
    changed = x.copy()
    changed[:, :, 5 - dilation * (kernel - 1)] += 1
    assert not np.allclose(conv(changed).value[:, :, 5], y[:, :, 5])


def test_causal_matches_torch_left_padded_conv(torch):
    kp.set_dtype("float64")
    conv = Conv1D(2, 3, padding="causal", dilation=2)
    x = np.random.default_rng(1).standard_normal((2, 3, 10))
    y = conv(x).value
    xt = torch.nn.functional.pad(torch.tensor(x), (4, 0))  # dilation * (kernel - 1) zeros before
    yt = torch.nn.functional.conv1d(xt, torch.tensor(conv.w.value), torch.tensor(conv.b.value), dilation=2)
    np.testing.assert_allclose(y, yt.numpy(), rtol=1e-12)


def test_stacked_dilations_grow_the_receptive_field():
    kp.set_dtype("float64")
    net = kp.Sequential(*(Conv1D(2, 2, padding="causal", dilation=d) for d in (1, 2, 4, 8)))
    x = np.zeros((1, 2, 32))
    base = net(x).value
    x[:, :, 16] = 1
    moved = np.abs(net(x).value - base).sum(axis=(0, 1)) > 0
    # inputs at 16 reach outputs 16..16+15 (receptive field 1 + 1 + 2 + 4 + 8 = 16), nothing before
    assert not moved[:16].any() and moved[16:32].any() and np.flatnonzero(moved).max() <= 31


def test_causal_gradcheck():
    kp.set_dtype("float64")
    conv = Conv1D(2, 3, padding="causal", dilation=2, activation="tanh")
    x = np.random.default_rng(2).standard_normal((1, 2, 7))
    assert kp.gradcheck(lambda x_: conv(x_), x)


def test_causal_only_for_1d_and_config_round_trip():
    with pytest.raises(ValueError, match="'causal' is for Conv1D only"):
        Conv2D(2, 3, padding="causal")
    conv = Conv1D(2, 3, padding="CAUSAL", dilation=2)
    assert conv.get_config()["padding"] == "causal"
    assert Conv1D(**conv.get_config()).padding == "causal"


def test_causal_weight_gradients_match_torch(torch):
    kp.set_dtype("float64")
    conv = Conv1D(2, 2, padding="causal", dilation=3)
    x = np.random.default_rng(3).standard_normal((2, 3, 9))
    (conv(x) ** 2).sum().backward()
    w = torch.tensor(conv.w.value, requires_grad=True)
    b = torch.tensor(conv.b.value, requires_grad=True)
    (torch.nn.functional.conv1d(torch.nn.functional.pad(torch.tensor(x), (3, 0)), w, b, dilation=3) ** 2).sum().backward()
    np.testing.assert_allclose(conv.w.grad, w.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(conv.b.grad, b.grad.numpy(), rtol=1e-10)
