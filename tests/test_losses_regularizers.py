"""Regularizers: l1, l2, elastic_net over parameter collections, differentiable inside a loss."""

import numpy as np
import pytest

import knetpy as kp
from knetpy import layers
from knetpy import regularizers as R


def _params():
    return {"w": np.array([[1.0, -2.0], [0.5, 0.0]]), "b": [np.array([-3.0]), (np.array(4.0),)]}


def test_worked_values_over_a_nested_tree():
    p = _params()
    assert R.l1(p) == pytest.approx(1 + 2 + 0.5 + 3 + 4)
    assert R.l2(p) == pytest.approx(1 + 4 + 0.25 + 9 + 16)
    assert R.l2(p, scale=0.1) == pytest.approx(3.025)
    assert R.elastic_net(p, l1_ratio=0.25, scale=2.0) == pytest.approx(2 * (0.25 * 10.5 + 0.75 * 30.25))
    assert R.elastic_net(p, l1_ratio=1.0) == pytest.approx(R.l1(p))
    assert R.elastic_net(p, l1_ratio=0.0) == pytest.approx(R.l2(p))


def test_gradients_in_a_loss(torch):
    w = kp.Param(np.array([[1.0, -2.0], [0.5, 3.0]]))
    b = kp.Param(np.array([0.5, -0.25]))
    loss = kp.sum(w) + R.elastic_net([w, b], scale=0.1, l1_ratio=0.3)
    loss.backward()
    tw = torch.tensor(w.value, requires_grad=True)
    tb = torch.tensor(b.value, requires_grad=True)
    tl = tw.sum() + 0.1 * (0.3 * (tw.abs().sum() + tb.abs().sum()) + 0.7 * ((tw**2).sum() + (tb**2).sum()))
    tl.backward()
    np.testing.assert_allclose(loss.item(), tl.item())
    np.testing.assert_allclose(w.grad, tw.grad.numpy())
    np.testing.assert_allclose(b.grad, tb.grad.numpy())


def test_gradcheck_through_kp_grad():
    assert kp.gradcheck(lambda w, b: R.l2({"w": w, "b": b}, scale=0.5), np.array([[1.0, -2.0]]), np.array([0.3]))
    assert kp.gradcheck(lambda w: R.elastic_net([w]), np.array([[1.0, -2.0], [0.7, 0.2]]))


def test_a_layer_or_its_params_can_be_passed():
    d = layers.Dense(3, n_in=4)
    expected = float((d.w.value.astype(np.float64) ** 2).sum())  # the bias starts at zero
    assert float(R.l2(d)) == pytest.approx(expected, rel=1e-6)
    assert float(R.l2(d.params)) == pytest.approx(expected, rel=1e-6)
    assert float(R.l2(d.parameters())) == pytest.approx(expected, rel=1e-6)
    reg = R.l1(d)
    assert isinstance(reg, kp.Tensor) and reg.requires_grad and reg.dtype == np.float32


def test_arrays_give_arrays_and_errors_are_clear():
    out = R.l2([np.ones(3, dtype=np.float32)])
    assert not isinstance(out, kp.Tensor) and out.dtype == np.float32
    assert R.l1([]) == 0.0
    with pytest.raises(TypeError, match="dtype int64"):
        R.l2([np.ones(3, dtype=np.int64)])
    with pytest.raises(ValueError, match="l1_ratio"):
        R.elastic_net([np.ones(3)], l1_ratio=2.0)
