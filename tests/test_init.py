"""Initializers: shapes, dtypes, fans (dense and convolution), distributions, lookup by name."""

import json
import math

import numpy as np
import pytest

import knetpy as kp
from knetpy import init as I

ALL = ["zeros", "ones", "constant", "uniform", "normal", "truncated_normal", "orthogonal", "glorot_uniform",
       "glorot_normal", "he_uniform", "he_normal", "lecun_uniform", "lecun_normal"]
# A truncated standard normal on [-2, 2] has variance 1 - 2 * 2 * phi(2) / (2 * Phi(2) - 1).
_PHI2 = math.exp(-2.0) / math.sqrt(2 * math.pi)
TRUNC2_VAR = 1 - 4 * _PHI2 / math.erf(2 / math.sqrt(2))


@pytest.mark.parametrize("name", ALL)
def test_shape_and_default_dtype(name):
    fn = I.get(name)
    w = fn((7, 5))
    assert isinstance(w, np.ndarray) and w.shape == (7, 5) and w.dtype == np.float32
    kp.set_dtype("float64")
    assert fn((3, 4, 2)).dtype == np.float64
    kp.set_dtype("float32")
    assert fn((4, 3), dtype=np.float16).dtype == np.float16
    assert fn((4, 3), np.float64).dtype == np.float64


def test_bad_shapes_and_dtypes_are_clear_errors():
    with pytest.raises(ValueError, match="negative"):
        I.normal((3, -1))
    with pytest.raises(TypeError, match="floating"):
        I.glorot_uniform((3, 3), dtype=np.int32)
    with pytest.raises(TypeError, match="shape must be"):
        I.zeros("abc")
    with pytest.raises(ValueError, match="at least 2"):
        I.orthogonal((5,))
    with pytest.raises(ValueError, match="low <= high"):
        I.uniform((2,), low=1.0, high=0.0)
    assert I.zeros(4).shape == (4,)


def test_constant_values():
    np.testing.assert_array_equal(I.zeros((2, 2)), 0)
    np.testing.assert_array_equal(I.ones((2, 2)), 1)
    np.testing.assert_array_equal(I.constant((2, 3), value=0.25), 0.25)


def test_fans_for_dense_and_convolution_layouts(torch):
    assert I.compute_fans((784, 100)) == (784, 100)  # dense (n_in, n_out)
    assert I.compute_fans((10,)) == (10, 10)
    assert I.compute_fans(()) == (1, 1)
    # convolution (C_out, C_in / groups, kh, kw): fans scale with the receptive field
    assert I.compute_fans((64, 32, 3, 3)) == (32 * 9, 64 * 9)
    assert I.compute_fans((64, 8, 5)) == (40, 320)  # 1-D conv, groups = 4 of 32 channels
    for shape in ((64, 32, 3, 3), (16, 3, 5), (8, 4, 2, 3, 3)):
        want = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
        assert I.compute_fans(shape) == want
    # torch lays a dense weight out as (out, in): the transpose of ours
    assert I.compute_fans((30, 20)) == torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(20, 30))


def _check_moments(w, mean, var, rtol_var=0.04):
    w = np.asarray(w, dtype=np.float64)
    sd = math.sqrt(var)
    # the sample mean has standard error sd / sqrt(n); 5 standard errors never fails by chance
    assert abs(w.mean() - mean) < 5 * sd / math.sqrt(w.size) + 1e-12
    assert w.var() == pytest.approx(var, rel=rtol_var)


@pytest.mark.parametrize(
    "name, shape, var, limit",
    [
        ("glorot_uniform", (300, 500), 2 / 800, math.sqrt(6 / 800)),
        ("glorot_normal", (300, 500), 2 / 800, None),
        ("he_uniform", (400, 300), 2 / 400, math.sqrt(6 / 400)),
        ("he_normal", (400, 300), 2 / 400, None),
        ("lecun_uniform", (250, 400), 1 / 250, math.sqrt(3 / 250)),
        ("lecun_normal", (250, 400), 1 / 250, None),
        # a convolution kernel (C_out, C_in, 3, 3): fan_in = 16 * 9, fan_out = 32 * 9
        ("he_normal", (32, 16, 3, 3), 2 / 144, None),
        ("glorot_uniform", (32, 16, 3, 3), 2 / (144 + 288), math.sqrt(6 / (144 + 288))),
        ("lecun_uniform", (64, 8, 5, 5), 1 / 200, math.sqrt(3 / 200)),
    ],
)
def test_variance_scaling_statistics(name, shape, var, limit):
    w = I.get(name)(shape)
    _check_moments(w, 0.0, var, rtol_var=0.06 if w.size < 100_000 else 0.04)
    if limit is not None:
        assert np.abs(w).max() <= limit
        assert np.abs(w).max() > 0.98 * limit  # the whole range is used


def test_plain_distributions_statistics():
    _check_moments(I.uniform((200, 500), low=-1.0, high=3.0), 1.0, 16 / 12)
    u = I.uniform((1000,), low=2.0, high=2.5)
    assert u.min() >= 2.0 and u.max() < 2.5
    _check_moments(I.normal((200, 500), mean=0.5, std=2.0), 0.5, 4.0)
    _check_moments(I.uniform((300, 300)), 0.5, 1 / 12)  # PyTorch's defaults: U[0, 1), N(0, 1)
    _check_moments(I.normal((300, 300)), 0.0, 1.0)


def test_truncated_normal_bounds_and_variance():
    w = I.truncated_normal((400, 500), mean=1.0, std=0.5)
    assert w.min() >= 1.0 - 2 * 0.5 and w.max() <= 1.0 + 2 * 0.5
    _check_moments(w, 1.0, 0.25 * TRUNC2_VAR)
    w3 = I.truncated_normal((100, 1000), bound=3.0, dtype=np.float64)
    assert np.abs(w3).max() <= 3.0 and np.abs(w3).max() > 2.5


@pytest.mark.parametrize("shape", [(64, 64), (30, 80), (80, 30), (16, 8, 3, 3)])
def test_orthogonal_is_orthonormal(shape):
    w = I.orthogonal(shape, dtype=np.float64, gain=1.5)
    m = w.reshape(shape[0], -1)
    rows, cols = m.shape
    gram = m @ m.T if rows <= cols else m.T @ m
    np.testing.assert_allclose(gram, 1.5**2 * np.eye(min(rows, cols)), atol=1e-12)


def test_orthogonal_is_not_always_the_same_matrix_and_has_no_sign_bias():
    a, b = I.orthogonal((50, 50)), I.orthogonal((50, 50))
    assert not np.allclose(a, b)
    # with the QR signs fixed the diagonal is symmetric about 0
    diags = np.concatenate([np.diag(I.orthogonal((50, 50), dtype=np.float64)) for _ in range(20)])
    assert abs(diags.mean()) < 5 * diags.std() / math.sqrt(diags.size)


def test_draws_come_from_the_knetpy_generator():
    kp.set_seed(42)
    a = I.glorot_uniform((5, 5))
    b = I.truncated_normal((5, 5))
    kp.set_seed(42)
    np.testing.assert_array_equal(a, I.glorot_uniform((5, 5)))
    np.testing.assert_array_equal(b, I.truncated_normal((5, 5)))


def test_get_names_parameters_and_suggestions():
    assert I.get("Xavier_Uniform") is I.glorot_uniform
    assert I.get("kaiming_normal") is I.he_normal
    w = I.get("constant", value=3.0)((2, 2))
    np.testing.assert_array_equal(w, 3.0)
    w = I.get({"name": "uniform", "low": -0.1, "high": 0.1})((100,))
    assert np.abs(w).max() <= 0.1
    with pytest.raises(ValueError, match="did you mean 'he_normal'"):
        I.get("he_norml")
    with pytest.raises(TypeError, match="no parameter 'lo'"):
        I.get("uniform", lo=0.0)
    assert set(ALL) <= set(I.names())


def test_serialize_round_trips_through_json():
    for fn in (I.he_normal, I.get("orthogonal", gain=2.0), I.get("constant", value=0.5), "zeros"):
        spec = json.loads(json.dumps(I.serialize(fn)))
        kp.set_seed(1)
        a = I.get(spec)((4, 4))
        kp.set_seed(1)
        b = I.get(fn)((4, 4))
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="custom initializer"):
        I.serialize(lambda shape, dtype=None: np.zeros(shape))
