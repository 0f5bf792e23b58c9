"""Dropout2D (whole channels) and AlphaDropout (keeps SELU's mean 0 / variance 1), against PyTorch's formulas."""

import numpy as np
import pytest

import knetpy as kp
from knetpy.layers import AlphaDropout, Dropout2D


def val(y):
    """The array of a layer's output (raw arrays in give raw arrays out)."""
    return getattr(y, "value", y)


def test_dropout2d_drops_whole_channels_and_scales():
    kp.set_seed(0)
    layer = Dropout2D(0.5)
    x = np.ones((64, 16, 3, 5), np.float32)
    y = val(layer(x))
    per_channel = y.reshape(64, 16, -1)
    assert np.all(per_channel.min(-1) == per_channel.max(-1))  # each map all kept or all dropped
    assert set(np.unique(y)) <= {0.0, 2.0} and 0.4 < (y == 0).mean() < 0.6
    layer.eval()
    np.testing.assert_array_equal(val(layer(x)), x)
    assert Dropout2D(0.3)(np.ones((2, 3, 4), np.float32)).shape == (2, 3, 4)  # 1-D maps too
    with pytest.raises(ValueError, match=r"Dropout2D expects inputs of shape \(N, C, \*spatial\)"):
        Dropout2D(0.5)(np.ones((4, 3), np.float32))


def test_dropout2d_gradient_is_the_mask():
    kp.set_seed(1)
    x = kp.Param(np.random.default_rng(0).standard_normal((4, 6, 5)))
    y = Dropout2D(0.25)(x)
    y.sum().backward()
    np.testing.assert_allclose(x.grad * x.value, y.value, rtol=1e-12)  # grad = mask / (1 - p)


def test_dropout2d_matches_torch_statistics(torch):
    kp.set_seed(2)
    x = np.ones((4000, 8, 2, 2))
    ours = val(Dropout2D(0.3)(x))
    theirs = torch.nn.functional.dropout2d(torch.tensor(x), 0.3, training=True).numpy()
    for y in (ours, theirs):
        assert set(np.unique(y)) == {0.0, 1 / 0.7}
    assert abs((ours == 0).mean() - (theirs == 0).mean()) < 0.01


@pytest.mark.parametrize("p", [0.05, 0.2, 0.5])
def test_alpha_dropout_keeps_selu_mean_and_variance(torch, p):
    kp.set_seed(3)
    x = np.random.default_rng(4).standard_normal((400, 1000))  # mean 0, variance 1: SELU's fixed point
    y = val(AlphaDropout(p)(x))
    assert abs(y.mean()) < 0.01 and abs(y.var() - 1) < 0.02
    yt = torch.nn.functional.alpha_dropout(torch.tensor(x), p, training=True).numpy()
    assert abs(y.mean() - yt.mean()) < 0.01 and abs(y.var() - yt.var()) < 0.02
    # dropped units all take one value (the most frequent one), the same in both frameworks
    def dropped(a):
        values, counts = np.unique(a, return_counts=True)
        return values[counts.argmax()], counts.max() / a.size

    (ours, share), (theirs, their_share) = dropped(y), dropped(yt)
    assert ours == pytest.approx(theirs, rel=1e-6) and share == pytest.approx(their_share, abs=0.01)


def test_alpha_dropout_is_affine_with_torchs_constants():
    kp.set_seed(5)
    p, sat = 0.2, -1.7580993408473766
    a = ((1 - p) * (1 + p * sat**2)) ** -0.5
    x = kp.Param(np.random.default_rng(6).standard_normal((50, 40)))
    y = AlphaDropout(p)(x)
    y.sum().backward()
    kept = x.grad != 0
    np.testing.assert_allclose(x.grad[kept], a)
    np.testing.assert_allclose(y.value[kept], a * x.value[kept] - a * sat * p)
    np.testing.assert_allclose(y.value[~kept], a * sat - a * sat * p)
    assert 0.15 < (~kept).mean() < 0.25


def test_alpha_dropout_eval_and_through_a_selu_net():
    kp.set_seed(7)
    layer = AlphaDropout(0.1)
    x = np.random.default_rng(8).standard_normal((8, 4)).astype(np.float32)
    layer.eval()
    np.testing.assert_array_equal(val(layer(x)), x)
    layer.train()
    y = layer(x)
    assert y.dtype == np.float32
    # a deep SELU stack with AlphaDropout keeps activations normalised (lecun-normal weights)
    h = np.random.default_rng(9).standard_normal((2000, 256))
    g = np.random.default_rng(10)
    for _ in range(8):
        h = val(AlphaDropout(0.1)(val(kp.selu(h @ (g.standard_normal((256, 256)) / 16)))))
    assert abs(h.mean()) < 0.1 and abs(h.var() - 1) < 0.15
