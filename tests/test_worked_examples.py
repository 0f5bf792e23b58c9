"""Small examples worked by hand: each gradient is known in closed form or as a textbook number."""

import math

import numpy as np
import pytest

import knetpy as kp


def test_add_then_multiply_circuit():
    """f = (x + y) * z at x=-2, y=5, z=-4: f = -12, df/dx = df/dy = z = -4, df/dz = x + y = 3."""

    def f(x, y, z):
        return (x + y) * z

    x, y, z = np.array(-2.0), np.array(5.0), np.array(-4.0)
    value, (gx, gy, gz) = kp.value_and_grad(f, argnums=(0, 1, 2))(x, y, z)
    assert float(value) == -12.0
    assert (float(gx), float(gy), float(gz)) == (-4.0, -4.0, 3.0)
    # The same with tensors and backward().
    px, py, pz = kp.Param(x), kp.Param(y), kp.Param(z)
    f(px, py, pz).backward()
    assert (float(px.grad), float(py.grad), float(pz.grad)) == (-4.0, -4.0, 3.0)


def test_softmax_cross_entropy_of_three_logits():
    """Logits [3.2, 5.1, -1.7], true class 0: loss = -3.2 + log(e^3.2 + e^5.1 + e^-1.7) = 2.04."""
    logits = np.array([[3.2, 5.1, -1.7]])
    hand = -3.2 + math.log(math.exp(3.2) + math.exp(5.1) + math.exp(-1.7))
    loss = kp.nll(logits, np.array([0]))
    assert round(float(loss), 2) == 2.04
    assert float(loss) == pytest.approx(hand, rel=1e-14)
    # Unbatched: one row of scores and a single label.
    assert float(kp.nll(logits[0], 0)) == pytest.approx(hand, rel=1e-14)
    # In float32 too, to float32 accuracy.
    loss32 = kp.nll(logits.astype(np.float32), np.array([0]))
    assert np.asarray(loss32).dtype == np.float32
    assert float(loss32) == pytest.approx(hand, rel=1e-6)
    # d loss / d logits = softmax(logits) - onehot(0).
    e = np.exp(logits[0])
    p = e / e.sum()
    g = kp.grad(lambda s: kp.nll(s, np.array([0])))(logits)
    np.testing.assert_allclose(g[0], p - [1.0, 0.0, 0.0], rtol=1e-14)
    assert g[0].sum() == pytest.approx(0.0, abs=1e-15)  # softmax rows sum to one


def test_nll_averages_over_the_batch_and_sums_on_request():
    logits = np.array([[3.2, 5.1, -1.7], [0.0, 0.0, 0.0]])
    first = -3.2 + math.log(math.exp(3.2) + math.exp(5.1) + math.exp(-1.7))
    second = math.log(3.0)  # uniform over three classes
    labels = np.array([0, 2])
    assert float(kp.nll(logits, labels)) == pytest.approx((first + second) / 2, rel=1e-14)
    assert float(kp.nll(logits, labels, average=False)) == pytest.approx(first + second, rel=1e-14)
    # Row 0 predicts class 1; row 1 ties, and the first of the tied classes counts.
    assert kp.accuracy(logits, labels) == 0.0
    assert kp.accuracy(logits, np.array([1, 2])) == 0.5
    assert kp.accuracy(logits, np.array([1, 0]), average=False) == 2


def test_sigmoid_neuron():
    """f(w, x) = sigm(w0 x0 + w1 x1 + w2), w = [2, -3, -3], x = [-1, -2]: f = sigm(1) = 0.73;
    df/dw = f (1 - f) [x0, x1, 1] = [-0.20, -0.39, 0.20], df/dx = f (1 - f) [w0, w1] = [0.39, -0.59]."""

    def f(w, x):
        return kp.sigm(w[0] * x[0] + w[1] * x[1] + w[2])

    w, x = np.array([2.0, -3.0, -3.0]), np.array([-1.0, -2.0])
    value, (gw, gx) = kp.value_and_grad(f, argnums=(0, 1))(w, x)
    s = 1 / (1 + math.exp(-1.0))
    assert round(float(value), 2) == 0.73
    np.testing.assert_allclose(gw, s * (1 - s) * np.array([-1.0, -2.0, 1.0]), rtol=1e-14)
    np.testing.assert_allclose(np.round(gw, 2), [-0.20, -0.39, 0.20])
    np.testing.assert_allclose(np.round(gx, 2), [0.39, -0.59])


def test_known_values_of_the_knet_functions():
    assert float(kp.sigm(np.array(0.0))) == 0.5
    assert float(kp.grad(kp.sigm)(np.array(0.0))) == 0.25
    assert float(kp.logsumexp(np.array([0.0, math.log(3.0)]))) == pytest.approx(math.log(4.0), rel=1e-15)
    np.testing.assert_allclose(kp.softmax(np.log([1.0, 2.0, 5.0])), [0.125, 0.25, 0.625], rtol=1e-15)
    np.testing.assert_allclose(kp.logp(np.log([[1.0, 3.0]]), axis=1), np.log([[0.25, 0.75]]), rtol=1e-15)
    assert float(kp.bce(np.zeros(4), np.array([0.0, 1.0, 1.0, 0.0]))) == pytest.approx(
        math.log(2.0), rel=1e-15
    )
    assert float(kp.logistic(np.zeros(2), np.array([-1.0, 1.0]))) == pytest.approx(math.log(2.0), rel=1e-15)
    assert float(kp.softplus(np.array(0.0))) == pytest.approx(math.log(2.0), rel=1e-15)
    np.testing.assert_allclose(kp.invx(np.array([2.0, -0.5])), [0.5, -2.0])
    np.testing.assert_allclose(kp.elu(np.array([-1.0, 2.0])), [math.exp(-1) - 1, 2.0])
    np.testing.assert_allclose(kp.selu(np.array([1.0])), [1.0507009873554805])
    np.testing.assert_array_equal(kp.relu(np.array([-1.0, 0.0, 2.0])), [0.0, 0.0, 2.0])
    assert kp.mat(np.zeros((2, 3, 4))).shape == (2, 12)


def test_polynomial_derivatives():
    """f = x^3 at x = 2: f' = 3 x^2 = 12, f'' = 6 x = 12, f''' = 6."""
    f = lambda x: x**3  # noqa: E731
    x = np.array(2.0)
    assert float(kp.grad(f)(x)) == 12.0
    assert float(kp.grad(kp.grad(f))(x)) == 12.0
    assert float(kp.grad(kp.grad(kp.grad(f)))(x)) == 6.0


def test_least_squares_gradient_step():
    """For L(w) = mean((X w - y)^2) the gradient is 2/N X^T (X w - y)."""
    X = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    y = np.array([1.0, 0.0, -1.0])
    w = np.array([0.5, -0.25])
    g = kp.grad(lambda w: kp.mean((X @ w - y) ** 2))(w)
    np.testing.assert_allclose(g, 2 / 3 * X.T @ (X @ w - y), rtol=1e-14)
    # One exact step on this quadratic with the Newton matrix reaches the minimiser.
    hessian = 2 / 3 * X.T @ X
    w_star = w - np.linalg.solve(hessian, g)
    np.testing.assert_allclose(kp.grad(lambda w: kp.mean((X @ w - y) ** 2))(w_star), [0.0, 0.0], atol=1e-12)


def test_variance_and_norm_gradients():
    """d var(x) / dx = 2 (x - mean) / n;  d ||x|| / dx = x / ||x||."""
    x = np.array([1.0, 2.0, 6.0])
    np.testing.assert_allclose(kp.grad(kp.var)(x), 2 * (x - 3.0) / 3, rtol=1e-14)
    np.testing.assert_allclose(
        kp.grad(lambda a: kp.sqrt(kp.sum(a * a)))(x), x / np.linalg.norm(x), rtol=1e-14
    )


def test_product_gradient_with_a_zero():
    """d prod(x) / dx_i is the product of the others: [0*3, 2*3, 2*0] at x = [2, 0, 3]."""
    np.testing.assert_array_equal(kp.grad(kp.prod)(np.array([2.0, 0.0, 3.0])), [0.0, 6.0, 0.0])
    np.testing.assert_array_equal(kp.grad(kp.prod)(np.array([0.0, 0.0, 3.0])), [0.0, 0.0, 0.0])


def test_gather_with_repeats_counts_each_use():
    """Row 1 picked three times receives three times the gradient (an embedding lookup)."""
    table = np.arange(8.0).reshape(4, 2)
    g = kp.grad(lambda t: kp.sum(t[np.array([1, 3, 1, 1])]))(table)
    np.testing.assert_array_equal(g, [[0, 0], [3, 3], [0, 0], [1, 1]])
