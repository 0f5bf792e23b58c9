"""Activations: PyTorch parity (forward and gradient, float64), gradcheck, erf, lookup by name."""

import json
import math

import numpy as np
import pytest

import knetpy as kp
from knetpy import activations as A
from knetpy.special import erf, erfc

RTOL, ATOL = 1e-6, 1e-12

# name -> (knetpy function with bound parameters, the PyTorch reference)
CASES = {
    "linear": (A.linear, lambda t, x: x * 1),
    "sigmoid": (A.sigmoid, lambda t, x: t.sigmoid(x)),
    "tanh": (A.tanh, lambda t, x: t.tanh(x)),
    "relu": (A.relu, lambda t, x: t.relu(x)),
    "leaky_relu": (A.get("leaky_relu", alpha=0.1), lambda t, x: t.nn.functional.leaky_relu(x, 0.1)),
    "leaky_relu_default": (A.leaky_relu, lambda t, x: t.nn.functional.leaky_relu(x)),
    "elu": (A.get("elu", alpha=0.7), lambda t, x: t.nn.functional.elu(x, 0.7)),
    "selu": (A.selu, lambda t, x: t.nn.functional.selu(x)),
    "gelu": (A.gelu, lambda t, x: t.nn.functional.gelu(x)),
    "swish": (A.swish, lambda t, x: t.nn.functional.silu(x)),
    "softplus": (A.softplus, lambda t, x: t.nn.functional.softplus(x)),
    "softsign": (A.softsign, lambda t, x: t.nn.functional.softsign(x)),
    "elliot": (A.get("elliot", steepness=1.7), lambda t, x: 0.5 * (1.7 * x) / (1 + (1.7 * x).abs()) + 0.5),
    "symmetric_elliot": (A.get("symmetric_elliot", steepness=0.6), lambda t, x: 0.6 * x / (1 + (0.6 * x).abs())),
    "hard_sigmoid": (A.hard_sigmoid, lambda t, x: t.nn.functional.hardsigmoid(x)),
    "softmax": (A.softmax, lambda t, x: t.softmax(x, dim=-1)),
    "log_softmax": (A.log_softmax, lambda t, x: t.log_softmax(x, dim=-1)),
}


def _inputs():
    x = np.random.default_rng(7).standard_normal((6, 7)) * 3
    x[0, :4] = [-7.5, 7.5, -0.01, 0.02]  # tails and values near the kinks
    return x


def assert_torch_parity(torch, fn, torch_fn, x):
    """Forward values and the vector-Jacobian product for a random cotangent agree with PyTorch."""
    cot = np.random.default_rng(3).standard_normal(x.shape)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch_fn(torch, tx)
    (tg,) = torch.autograd.grad((ty * torch.tensor(cot)).sum(), tx)
    value, g = kp.value_and_grad(lambda a: kp.sum(fn(a) * cot))(x)
    np.testing.assert_allclose(fn(x), ty.detach().numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(g, tg.numpy(), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_and_gradient_match_pytorch(torch, name):
    fn, torch_fn = CASES[name]
    assert_torch_parity(torch, fn, torch_fn, _inputs())


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradcheck(name):
    fn, _ = CASES[name]
    x = np.random.default_rng(11).standard_normal((3, 5)) * 2
    x[np.abs(np.abs(x) - 3) < 1e-3] += 0.01  # keep away from the kinks of hard_sigmoid
    x[np.abs(x) < 1e-3] += 0.01
    assert kp.gradcheck(fn, x)


@pytest.mark.parametrize("name", sorted(CASES))
def test_float32_stays_float32(name):
    fn, _ = CASES[name]
    x = np.linspace(-4, 4, 12, dtype=np.float32).reshape(3, 4)
    assert fn(x).dtype == np.float32
    g = kp.grad(lambda a: kp.sum(fn(a)))(x)
    assert g.dtype == np.float32


def test_tensors_in_tensors_out_and_arrays_in_arrays_out():
    x = np.array([[-1.0, 0.5]])
    assert isinstance(A.gelu(x), np.ndarray)
    assert isinstance(A.gelu(kp.Param(x)), kp.Tensor)
    assert isinstance(A.elliot(kp.tensor(x)), kp.Tensor)


# -- worked values ------------------------------------------------------------------------------------
def test_elliot_functions_worked_values():
    x = np.array([-3.0, 0.0, 1.0, 2.0])
    # 0.5 * s x / (1 + |s x|) + 0.5 with s = 1: at 1 -> 0.5 * 0.5 + 0.5 = 0.75; at -3 -> 0.5 * -0.75 + 0.5
    np.testing.assert_allclose(A.elliot(x), [0.125, 0.5, 0.75, 5 / 6])
    # s = 0.5: s x / (1 + |s x|) at 2 -> 1 / 2; at -3 -> -1.5 / 2.5
    np.testing.assert_allclose(A.symmetric_elliot(x, steepness=0.5), [-0.6, 0.0, 1 / 3, 0.5])


def test_hard_sigmoid_worked_values_and_flat_gradient_outside():
    x = np.array([-4.0, -3.0, 0.0, 1.5, 3.0, 5.0])
    np.testing.assert_allclose(A.hard_sigmoid(x), [0.0, 0.0, 0.5, 0.75, 1.0, 1.0])
    g = kp.grad(lambda a: kp.sum(A.hard_sigmoid(a)))(x)
    np.testing.assert_allclose(g, [0, 0, 1 / 6, 1 / 6, 0, 0])  # like torch: zero at +-3


def test_gelu_known_values():
    # x * Phi(x): Phi(1) = 0.841344746068543, Phi(-2) = 0.0227501319481792
    np.testing.assert_allclose(A.gelu(np.array([1.0, -2.0, 0.0])), [0.841344746068543, -0.0455002638963584, 0.0])
    # far in the tails: x for large x, and for very negative x a tiny value that is still accurate
    # (computed through erfc: 1 + erf(x) would cancel to 0)
    far = A.gelu(np.array([40.0, -20.0]))
    assert far[0] == 40.0
    np.testing.assert_allclose(far[1], -20.0 * 0.5 * math.erfc(20.0 / math.sqrt(2.0)), rtol=1e-12)
    assert far[1] < -1e-90


def test_gelu_second_derivative_matches_pytorch(torch):
    x = np.linspace(-3, 3, 9)
    d2 = kp.grad(lambda a: kp.sum(kp.grad(lambda b: kp.sum(A.gelu(b)))(a)))(x)
    tx = torch.tensor(x, requires_grad=True)
    (g,) = torch.autograd.grad(torch.nn.functional.gelu(tx).sum(), tx, create_graph=True)
    (want,) = torch.autograd.grad(g.sum(), tx)
    np.testing.assert_allclose(d2, want.numpy(), rtol=1e-9, atol=1e-12)


# -- erf --------------------------------------------------------------------------------------------------
def test_erf_and_erfc_match_the_standard_library_across_regimes():
    x = np.concatenate([np.linspace(-9, 9, 2001), [0.0, 1e-300, -1e-10, 1.999999, 2.0, 2.000001, 27.0]])
    want_erf = np.array([math.erf(v) for v in x])
    want_erfc = np.array([math.erfc(v) for v in x])
    np.testing.assert_allclose(erf(x), want_erf, rtol=1e-14, atol=1e-300)
    np.testing.assert_allclose(erfc(x), want_erfc, rtol=1e-12, atol=1e-300)


def test_erf_float32_accuracy_and_special_values():
    x = np.linspace(-6, 6, 1001, dtype=np.float32)
    want = np.array([math.erf(float(v)) for v in x])
    out = erf(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(erf(np.array([np.inf, -np.inf])), [1.0, -1.0])
    assert np.isnan(erf(np.array([np.nan])))[0]
    assert erf(np.array(0.5)).shape == ()


def test_erf_matches_pytorch_and_gradchecks(torch):
    x = np.linspace(-5, 5, 41)
    for fn, tfn in ((erf, torch.special.erf), (erfc, torch.special.erfc)):
        assert_torch_parity(torch, fn, lambda t, a, tfn=tfn: tfn(a), x)
        assert kp.gradcheck(fn, x)


# -- lookup by name ---------------------------------------------------------------------------------------
def test_get_by_name_alias_case_and_none():
    assert A.get("ReLU") is kp.relu
    assert A.get("silu") is A.swish
    assert A.get("hard-sigmoid") is A.hard_sigmoid
    assert A.get(None) is A.linear
    assert A.get(np.tanh) is np.tanh
    assert set(CASES) - {"leaky_relu_default"} <= set(A.names())


def test_get_suggests_the_closest_name():
    with pytest.raises(ValueError, match="did you mean 'gelu'"):
        A.get("gleu")
    with pytest.raises(ValueError, match="did you mean 'leaky_relu'"):
        A.get("leaky_rel")


def test_get_binds_parameters_and_rejects_unknown_ones():
    f = A.get("leaky_relu", alpha=0.2)
    np.testing.assert_allclose(f(np.array([-1.0, 1.0])), [-0.2, 1.0])
    g = A.get({"name": "elu", "alpha": 2.0})
    np.testing.assert_allclose(g(np.array([-1.0])), [2.0 * math.expm1(-1.0)])
    with pytest.raises(TypeError, match="'relu' has no parameter 'alpha'"):
        A.get("relu", alpha=0.1)
    with pytest.raises(TypeError, match="its parameters are alpha"):
        A.get("leaky_relu", slope=0.1)
    with pytest.raises(TypeError, match="must be a name"):
        A.get(3)


def test_serialize_round_trips_through_json():
    for fn in (A.gelu, A.get("sigm"), A.get("leaky_relu", alpha=0.3), A.get("elliot", steepness=2.0)):
        spec = json.loads(json.dumps(A.serialize(fn)))
        x = np.linspace(-2, 2, 5)
        np.testing.assert_allclose(A.get(spec)(x), fn(x))
    assert A.serialize(A.get("sigm")) == "sigmoid"
    with pytest.raises(ValueError, match="custom activation"):
        A.serialize(lambda x: x)
