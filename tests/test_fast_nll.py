"""The compiled softmax cross-entropy (knetpy.ops.fast.nll) against the NumPy code it replaces.

Each case runs nll forward and backward with ``set_fast(False)`` (the reference) and ``set_fast(True)``
and compares within the dtype's rounding (the kernels call the C library's exp and log, NumPy its own),
checks that the kernels really ran, and that a compiled step replays them bit for bit.
"""


import numpy as np
import pytest
from fast_switch import kernels

import knetpy as kp
from knetpy.gradcheck import gradcheck
from knetpy.ops import fast
from knetpy.ops import nn as nn_ops

pytestmark = pytest.mark.skipif(not fast.available(), reason="numba (the [fast] extra) is not installed")


@pytest.fixture
def calls(monkeypatch):
    """Counts of the compiled kernels' calls (the module attributes the op imports at each call)."""
    from knetpy.ops.fast import nll as kernels_module

    seen = {"rows": 0, "grad": 0}

    def counted(name, fn):
        def wrapper(*args):
            seen[name] += 1
            return fn(*args)

        return wrapper

    monkeypatch.setattr(kernels_module, "nll_rows", counted("rows", kernels_module.nll_rows))
    monkeypatch.setattr(kernels_module, "nll_grad", counted("grad", kernels_module.nll_grad))
    return seen


def loss_and_grad(x, y, average=True):
    xt = kp.Tensor(x, requires_grad=True)
    loss = kp.nll(xt, y, average=average)
    loss.backward()
    return np.asarray(loss.value), xt.grad


def tol(dtype):
    return {"rtol": 2e-6, "atol": 2e-7} if dtype == np.float32 else {"rtol": 1e-13, "atol": 1e-15}


@pytest.mark.parametrize("shape", [(1, 1), (1, 13), (7, 3), (100, 10), (129, 13)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("average", [True, False])
def test_loss_and_gradient_match_numpy(rng, calls, shape, dtype, average):
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    y = rng.integers(0, shape[1], shape[0])
    with kernels(False):
        ref_loss, ref_grad = loss_and_grad(x, y, average)
    assert calls == {"rows": 0, "grad": 0}
    with kernels(True):
        loss, grad = loss_and_grad(x, y, average)
    assert calls == {"rows": 1, "grad": 1}  # the kernels ran, forward and backward
    assert loss.dtype == ref_loss.dtype == dtype and grad.dtype == dtype and grad.shape == shape
    np.testing.assert_allclose(loss, ref_loss, **tol(dtype))
    np.testing.assert_allclose(grad, ref_grad, **tol(dtype))


@pytest.mark.parametrize("label_dtype", [np.int64, np.int8, np.uint16])
def test_labels_of_every_integer_dtype(rng, calls, label_dtype):
    x = rng.standard_normal((20, 6)).astype(np.float32)
    y = rng.integers(0, 6, 20).astype(label_dtype)
    with kernels(False):
        ref = loss_and_grad(x, y)
    with kernels(True):
        got = loss_and_grad(x, y)
    assert calls["rows"] == 1
    for a, b in zip(ref, got):
        np.testing.assert_allclose(a, b, **tol(np.float32))


@pytest.mark.parametrize("bad", [-1, 10, 127])
def test_a_label_out_of_range_raises_the_same_error(bad):
    x = np.zeros((5, 10), np.float32)
    y = np.array([0, 3, bad, 9, 1])
    messages = []
    for on in (False, True):
        with kernels(on), pytest.raises(ValueError, match=f"label {bad} is out of range for 10 classes") as err:
            kp.nll(kp.Tensor(x, requires_grad=True), y)
        messages.append(str(err.value))
    assert messages[0] == messages[1]


def test_nan_and_infinite_scores_give_numpys_nans_and_infinities():
    x = np.array(
        [
            [1.0, np.nan, 3.0],  # NaN in a row: the row's log-probabilities are NaN
            [np.inf, 0.0, 1.0],  # +inf: no shift (as NumPy's where(isfinite(max), max, 0))
            [-np.inf, 0.0, 1.0],  # -inf: a log-probability of -inf, the rest finite
            [-np.inf, -np.inf, -np.inf],  # all -inf
            [np.nan, 2.0, 1.0],  # NaN first
            [88.0, 89.0, 90.0],  # large but finite: shifted, no overflow
        ],
        np.float32,
    )
    y = np.array([0, 1, 1, 2, 1, 2])
    for average in (True, False):
        with kernels(False):
            ref_loss, ref_grad = loss_and_grad(x, y, average)
        with kernels(True):
            loss, grad = loss_and_grad(x, y, average)
        np.testing.assert_array_equal(np.isnan(grad), np.isnan(ref_grad))
        np.testing.assert_allclose(grad, ref_grad, equal_nan=True, **tol(np.float32))
        np.testing.assert_allclose(loss, ref_loss, equal_nan=True)
    for i in range(len(x)):  # row by row, where the loss is not NaN for every row at once
        with kernels(False):
            ref = loss_and_grad(x[i : i + 1], y[i : i + 1])
        with kernels(True):
            got = loss_and_grad(x[i : i + 1], y[i : i + 1])
        for a, b in zip(ref, got):
            np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
            np.testing.assert_allclose(a, b, equal_nan=True, **tol(np.float32))


def test_views_that_are_not_contiguous(rng, calls):
    base = rng.standard_normal((30, 24)).astype(np.float64)
    y = rng.integers(0, 12, 12)
    for x in (base[::2, ::2][:12], base[:12, :12].T.copy().T, base[3:15, 5:17]):
        with kernels(False):
            ref = loss_and_grad(x, y)
        with kernels(True):
            got = loss_and_grad(x, y)
        for a, b in zip(ref, got):
            np.testing.assert_allclose(a, b, **tol(np.float64))
    assert calls["rows"] == 3


def test_finite_differences_through_the_kernels(rng, calls):
    x = rng.standard_normal((6, 5))
    y = rng.integers(0, 5, 6)
    with kernels(True):
        assert gradcheck(lambda s: kp.nll(s, y), x)
    assert calls["rows"] > 0 and calls["grad"] > 0


def test_large_arrays_stay_on_numpy(rng, calls):
    n = nn_ops.FAST_NLL_MAX // 10 + 1  # one row more than the kernels take
    x = rng.standard_normal((n, 10)).astype(np.float32)
    y = rng.integers(0, 10, n)
    with kernels(True):
        loss_and_grad(x, y)
        assert calls == {"rows": 0, "grad": 0}
        loss_and_grad(x[:-1], y[:-1])  # at the limit: compiled
        assert calls == {"rows": 1, "grad": 1}


def test_a_compiled_step_replays_the_kernels_bit_for_bit_and_retraces_when_they_are_switched(rng, calls):
    w0 = (rng.standard_normal((8, 5)) * 0.3).astype(np.float32)
    xs = [rng.standard_normal((16, 8)).astype(np.float32) for _ in range(4)]
    ys = [rng.integers(0, 5, 16) for _ in range(4)]

    def step(w, x, y):
        loss = kp.nll(kp.Tensor(x) @ w, y)
        loss.backward()
        return loss.value, w.grad

    def run(compiled, on):
        w = kp.Param(w0.copy())
        fn = kp.compile(step) if compiled else step
        out = []
        with kernels(on):
            for x, y in zip(xs, ys):
                w.grad = None
                loss, g = fn(w, x, y)
                out.append((np.asarray(loss).copy(), g.copy()))
                w.value -= 0.1 * g
        return out, fn

    eager, _ = run(False, True)
    replayed, fn = run(True, True)
    assert fn.replays >= 2
    for (l0, g0), (l1, g1) in zip(eager, replayed):
        assert l0.tobytes() == l1.tobytes() and g0.tobytes() == g1.tobytes()
    assert calls["rows"] == 8 and calls["grad"] == 8  # every call, eager and replayed, ran the kernels

    # the same compiled step with the kernels switched off retraces onto NumPy's path
    traces = fn.traces
    w = kp.Param(w0.copy())
    with kernels(False):
        eager_numpy = step(w, xs[0], ys[0])
        w.grad = None
        replay_numpy = fn(w, xs[0], ys[0])
    assert fn.traces == traces + 1
    assert calls["rows"] == 8
    assert np.asarray(eager_numpy[0]).tobytes() == np.asarray(replay_numpy[0]).tobytes()
    assert eager_numpy[1].tobytes() == replay_numpy[1].tobytes()


def test_warm_up_loads_the_kernels_ops_call_and_does_nothing_when_they_are_off():
    from knetpy.ops.fast import conv, nll, pool

    with kernels(False):
        assert fast.warm_up() == 0.0
    with kernels(True):
        assert fast.warm_up() >= 0.0
    for kernel in (nll.nll_rows, nll.nll_grad, conv.bias_relu, pool.max_pool2d):
        # each was loaded (compiled, or read from numba's cache) for float32 arrays as ops pass them
        assert any(str(sig[0]).startswith(("array(float32, 2d, C)", "array(float32, 4d, C)"))
                   for sig in kernel.signatures), kernel
