"""The compiled batch-norm kernels (knetpy.ops.fast.batchnorm) equal the NumPy reference within rounding:
forward, statistics, running averages and every gradient, in both memory layouts, relu on and off."""

import numpy as np
import pytest

import knetpy as kp
from knetpy.layers import normalization
from knetpy.ops import fast

pytest.importorskip("numba", reason="the compiled kernels need numba (the [fast] extra)")


@pytest.fixture(autouse=True)
def _restore_fast():
    prev = fast.enabled()
    yield
    fast.set_fast(prev)


def _input(shape, layout, dtype, seed=0):
    x = (np.random.default_rng(seed).standard_normal(shape) * 3 + 1).astype(dtype)
    if layout == "channels_last":  # an (N, C, H, W) view of (N, H, W, C) memory, as the convolutions give
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
        x = np.moveaxis(x, -1, 1)
        assert not x.flags.c_contiguous or x.shape[1] == 1
    elif layout == "f":
        x = np.asfortranarray(x)
    return x


def _run(on, x, g, relu, training=True, steps=2):
    """Output, gradients and running statistics of a fresh BatchNorm, with the kernels ``on`` or off."""
    fast.set_fast(on)
    kp.set_seed(0)
    prev = kp.backend.get_dtype()
    kp.set_dtype(x.dtype)  # the layer's own dtype: it casts its inputs to it
    try:
        bn = kp.layers.BatchNorm()
        bn(x[:2])  # builds it
        bn.running_mean.value[:] = 0  # (the call above did one update; start again)
        bn.running_var.value[:] = 1
        bn.batches_seen.value[...] = 0
        bn.gamma.value = np.linspace(0.5, 1.5, x.shape[1]).astype(x.dtype)
        bn.beta.value = np.linspace(-0.3, 0.3, x.shape[1]).astype(x.dtype)
        bn.train(training)
        for _ in range(steps):
            xt = kp.Param(x.copy())
            y = bn(xt, relu=relu)
            kp.sum(y * g).backward()
    finally:
        kp.set_dtype(prev)
    return {
        "y": y.value, "dx": xt.grad, "dgamma": bn.gamma.grad, "dbeta": bn.beta.grad,
        "running_mean": bn.running_mean.value, "running_var": bn.running_var.value,
    }


def _assert_close(a, b, dtype):
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for k in a:
        assert a[k].dtype == b[k].dtype == dtype, k
        scale = np.abs(b[k]).max()
        np.testing.assert_allclose(a[k], b[k], rtol=tol, atol=tol * scale, err_msg=k)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize(
    "shape,layout",
    [((64, 7), "c"), ((6, 5, 4, 3), "c"), ((6, 5, 4, 3), "channels_last"), ((4, 3, 10), "c"),
     ((3, 1, 8, 8), "channels_last"), ((3, 1, 8, 8), "c"), ((64, 7), "f")],
)
def test_training_equals_the_numpy_path(shape, layout, relu, dtype):
    x = _input(shape, layout, dtype)
    g = np.random.default_rng(1).standard_normal(shape).astype(dtype)
    _assert_close(_run(True, x, g, relu), _run(False, x, g, relu), dtype)


def test_gradient_laid_out_unlike_the_input():
    # a size-1 channel axis (its stride ties with another's) and an NCHW gradient for a channels-last input
    for shape in ((3, 1, 8, 8), (4, 6, 5, 3)):
        x = _input(shape, "channels_last", np.float32)
        g = _input(shape, "c", np.float32, seed=1)
        _assert_close(_run(True, x, g, True), _run(False, x, g, True), np.float32)


@pytest.mark.parametrize("layout", ["c", "channels_last"])
def test_eval_equals_the_numpy_path(layout):
    x = _input((6, 5, 4, 3), layout, np.float32)
    g = np.random.default_rng(1).standard_normal(x.shape).astype(np.float32)
    _assert_close(_run(True, x, g, True, training=False), _run(False, x, g, True, training=False), np.float32)


def test_the_kernels_are_taken_and_not_taken_when_they_should_be(monkeypatch):
    calls = []
    from knetpy.ops.fast import batchnorm

    for name in ("batch_stats", "forward", "backward_sums", "input_grad"):
        fn = getattr(batchnorm, name)
        monkeypatch.setattr(batchnorm, name, lambda *a, _f=fn, _n=name: calls.append(_n) or _f(*a))
    x = _input((6, 5, 4, 3), "channels_last", np.float32)
    g = np.ones(x.shape, np.float32)
    _run(True, x, g, True, steps=1)
    assert calls[-4:] == ["batch_stats", "forward", "backward_sums", "input_grad"]  # (after the build call)
    calls.clear()
    _run(False, x, g, True, steps=1)
    assert calls == []
    # a LayerNorm keeps more than one axis or scales per normalised position: the reference
    fast.set_fast(True)
    ln = kp.layers.LayerNorm()
    kp.sum(ln(kp.Param(np.ones((4, 6, 3), np.float32)))).backward()
    assert calls == []


def test_normalize_gradients_without_gamma_beta_and_with_frozen_input():
    # gamma/beta None, and each VJP alone (the others' inputs need no gradient)
    rng = np.random.default_rng(2)
    x = _input((6, 5, 4, 3), "channels_last", np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    axes, pshape = (0, 2, 3), (1, 5, 1, 1)
    gamma, beta = rng.standard_normal(5).astype(np.float32), rng.standard_normal(5).astype(np.float32)
    results = []
    for on in (True, False):
        fast.set_fast(on)
        mean, _, inv_std = normalization._stats(x, axes, 1e-5)
        kw = dict(mean=mean, inv_std=inv_std, axes=axes, pshape=pshape, eps=1e-5, relu=True)
        xt = kp.Param(x.copy())
        kp.sum(normalization.normalize(xt, None, None, **kw) * g).backward()
        gt, bt = kp.Param(gamma), kp.Param(beta)
        y = normalization.normalize(x, gt, bt, **kw)
        kp.sum(y * g).backward()
        results.append({"y": y.value, "dx": xt.grad, "dgamma": gt.grad, "dbeta": bt.grad})
    _assert_close(*results, np.float32)


def test_statistics_of_large_offset_data_do_not_cancel():
    # mean 1000, std 0.01: a naive one-pass sum of squares in float32 would lose the variance
    x = (1000 + 0.01 * np.random.default_rng(3).standard_normal((256, 4, 8, 8))).astype(np.float32)
    fast.set_fast(True)
    mean, var, _ = normalization._stats(x, (0, 2, 3), 1e-5)
    ref = x.astype(np.float64).var(axis=(0, 2, 3), keepdims=True)
    np.testing.assert_allclose(var, ref, rtol=1e-3)
    np.testing.assert_allclose(mean, x.astype(np.float64).mean(axis=(0, 2, 3), keepdims=True), rtol=1e-6)


def test_split_over_threads_equals_one_thread(monkeypatch):
    x = _input((64, 8, 32, 32), "channels_last", np.float32)  # over MIN_ELEMENTS: split
    g = np.random.default_rng(1).standard_normal(x.shape).astype(np.float32)
    prev = "auto" if kp.parallel.is_auto() else kp.get_num_threads()
    split = []
    run = kp.parallel.run
    monkeypatch.setattr(kp.parallel, "run", lambda fn, parts: split.append(len(parts)) or run(fn, parts))
    try:
        kp.set_num_threads(2)
        two = _run(True, x, g, True, steps=1)
        assert split and all(k == 2 for k in split)  # the kernels' work was cut in two
        kp.set_num_threads(1)
        one = _run(True, x, g, True, steps=1)
    finally:
        kp.set_num_threads(prev)
    _assert_close(two, one, np.float32)


def test_stats_with_negative_axes_equal_the_numpy_path():
    x = _input((5, 3, 4), "c", np.float32)
    fast.set_fast(True)
    mine = normalization._stats(x, (0, -1), 1e-5)
    fast.set_fast(False)
    ref = normalization._stats(x, (0, -1), 1e-5)
    for a, b in zip(mine, ref):
        assert a.shape == b.shape == (1, 3, 1)
        np.testing.assert_allclose(a, b, rtol=1e-5)
