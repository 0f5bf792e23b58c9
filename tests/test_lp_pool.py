"""LP (power-average) pooling: op and layers, PyTorch parity, gradients, limits p = 1 and p -> infinity."""

import numpy as np
import pytest

import knetpy as kp
from knetpy.layers import LPPool1D, LPPool2D


def _x(shape, seed=0):
    return np.random.default_rng(seed).uniform(0.1, 2.0, shape)  # positive: any real p is defined


@pytest.mark.parametrize("p", [1, 2, 3, 2.5])
@pytest.mark.parametrize("window,stride", [(2, None), (3, 1), (3, 2)])
def test_lp_pool1d_matches_torch(torch, p, window, stride):
    x = _x((2, 3, 9))
    ours = kp.lp_pool(x, p, window, stride)
    theirs = torch.nn.functional.lp_pool1d(torch.tensor(x), p, window, stride)
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-12)


@pytest.mark.parametrize("p", [1, 2, 3.5])
@pytest.mark.parametrize("window,stride", [(2, None), ((2, 3), (1, 2))])
def test_lp_pool2d_layer_matches_torch_forward_and_backward(torch, p, window, stride):
    x = _x((2, 3, 6, 7), 1)
    layer = LPPool2D(p, window, stride)
    xk = kp.Param(x.copy())
    y = layer(xk)
    g = np.random.default_rng(2).standard_normal(y.shape)
    (y * g).sum().backward()
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.lp_pool2d(xt, p, window, stride)
    (yt * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(y.value, yt.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(xk.grad, xt.grad.numpy(), rtol=1e-10)
    assert layer.compute_output_shape(x.shape) == y.shape


@pytest.mark.parametrize("p", [1, 2, 3.5])
def test_lp_pool_gradcheck(p):
    assert kp.gradcheck(lambda x: kp.lp_pool(x, p, 2, 1), _x((1, 2, 5)))
    assert kp.gradcheck(lambda x: LPPool2D(p, 2)(x), _x((1, 2, 4, 4), 3))


def test_limits_sum_and_max():
    x = _x((2, 3, 8), 4)
    np.testing.assert_allclose(kp.lp_pool(x, 1, 2), kp.pool(x, 2, mode=1) * 2, rtol=1e-12)  # p = 1: sum
    np.testing.assert_allclose(kp.lp_pool(x, 200, 2), kp.pool(x, 2), rtol=5e-3)  # large p: max
    # the L_p norm falls monotonically in p towards the max
    norms = [kp.lp_pool(x, p, 4) for p in (1, 2, 4, 16)]
    assert all(np.all(a >= b) for a, b in zip(norms, norms[1:])) and np.all(norms[-1] >= kp.pool(x, 4))


def test_layer_config_and_errors():
    layer = LPPool1D(2, 3)
    assert layer(np.ones((1, 1, 7), np.float32)).shape == (1, 1, 2)
    assert LPPool1D(**{k: v for k, v in layer.get_config().items()}).get_config() == layer.get_config()
    for bad in (0, -1, float("inf"), True, "2"):
        with pytest.raises(ValueError, match="p must be a finite number"):
            LPPool1D(bad)
        with pytest.raises(ValueError, match="lp_pool: p must be"):
            kp.lp_pool(np.ones((1, 1, 4)), bad)
    with pytest.raises(ValueError, match=r"LPPool2D expects inputs of shape \(N, C, X, Y\)"):
        LPPool2D(2)(np.ones((1, 4, 4)))
