"""Convolution + bias + relu + max pooling as one op, against the three ops it replaces.

``conv_relu_pool`` must equal ``pool(conv4_bias(..., relu=True))`` bit for bit, forward and every
gradient, with the compiled kernels on and off and with knetpy's threads on and off (the filter and
bias gradients on planes, which sum in another order, are held to the reference in
test_conv_planes.py and kept off here); Sequential must
take it for a Conv2D(relu) directly followed by MaxPool2D and give what the layers give one by one;
and it must run on the strict backend without a trip through NumPy.
"""

import contextlib

import numpy as np
import pytest

import knetpy as kp
from knetpy import layers as L
from knetpy.ops import conv_pool, fast
from knetpy.summary import summarize
from knetpy.testing import strict


@contextlib.contextmanager
def setting(kernels, n_threads):
    auto, prev_threads = kp.parallel.is_auto(), kp.get_num_threads()
    prev = fast.set_fast(kernels)
    kp.set_num_threads(n_threads)
    try:
        yield
    finally:
        fast.set_fast(prev)
        kp.set_num_threads("auto" if auto else prev_threads)


KERNELS = [False, True] if fast.available() else [False]

CASES = [  # x shape, filters, kernel, conv options, pool options
    ((3, 1, 11, 9), 5, 3, {}, {}),  # one input channel, odd sizes: the last row/column in no window
    ((2, 4, 12, 13), 6, 3, {"padding": 1, "stride": 2}, {"window": 3, "pool_padding": 1, "pool_stride": 2}),
    ((4, 3, 10, 10), 8, 5, {"padding": 2}, {"window": 2}),
    ((2, 3, 9, 8), 4, (3, 2), {"dilation": (2, 1), "mode": 0}, {"window": (2, 3), "pool_stride": 1}),
]


def _unfused(w, x, b, conv, pool):
    y = kp.ops.conv4_bias(w, x, b, relu=True, **conv)
    return kp.pool(y, pool.get("window", 2), pool.get("pool_padding", 0), pool.get("pool_stride"))


def _fused(w, x, b, conv, pool):
    return kp.ops.conv_relu_pool(w, x, b, **conv, **pool)


def _value_and_grads(f, w, x, b, gy):
    wt, xt, bt = (kp.Param(a) for a in (w, x, b))
    y = f(wt, xt, bt)
    kp.sum(y * gy).backward()
    return [y.value, wt.grad, xt.grad, bt.grad]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_equals_unfused_bit_for_bit(monkeypatch, case, kernels, n_threads, dtype):
    shape, filters, kernel, conv, pool = case
    monkeypatch.setattr(conv_pool, "PLANES_MAX_CHANNELS", 0)
    if kernels and filters >= conv_pool.FAST_MIN_CHANNELS:  # compiled: pooled inside the convolution

        def not_here(*args):
            raise AssertionError("the fused op pooled the full activation afterwards")

        monkeypatch.setattr(conv_pool, "_max_windows", not_here)
    rng = np.random.default_rng(0)
    k = kernel if isinstance(kernel, tuple) else (kernel, kernel)
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal((filters, shape[1], *k)).astype(dtype)
    b = rng.standard_normal(filters).astype(dtype)
    b[0] = -50.0  # one channel all below zero: relu's zeros tie in every window
    with setting(kernels, n_threads):
        ref_y = _unfused(w, x, b, conv, pool)
        gy = rng.standard_normal(ref_y.shape).astype(dtype)
        ref = _value_and_grads(lambda *a: _unfused(*a, conv, pool), w, x, b, gy)
        got = _value_and_grads(lambda *a: _fused(*a, conv, pool), w, x, b, gy)
        plain = _fused(w, x, b, conv, pool)  # raw arrays, no recording
    np.testing.assert_array_equal(plain, ref_y)
    for name, r, g in zip(["output", "dw", "dx", "db"], ref, got):
        assert g.dtype == r.dtype and g.shape == r.shape, name
        np.testing.assert_array_equal(g, r, err_msg=name)
    assert np.any(ref[1] != 0) and np.any(ref[2] != 0)


def test_second_order_gradients_match_unfused():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 2, 8, 8))
    w = rng.standard_normal((3, 2, 3, 3))
    b = rng.standard_normal(3)
    v = rng.standard_normal(w.shape)
    conv, pool = {"padding": 1}, {"window": 2}

    def hvp(f):
        return kp.hvp(lambda w: kp.sum(f(w, x, b, conv, pool) ** 2), w, v)

    (ref_loss, ref), (loss, got) = hvp(_unfused), hvp(_fused)
    assert float(loss) == float(ref_loss)
    assert np.any(ref != 0)
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-10)


def test_errors_name_the_op_and_the_problem():
    x = np.zeros((1, 2, 6, 6), np.float32)
    w = np.zeros((3, 2, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"conv_relu_pool: b must have shape \(3,\)"):
        kp.ops.conv_relu_pool(w, x, np.zeros(4, np.float32))
    with pytest.raises(TypeError, match="conv_relu_pool: b has dtype float64"):
        kp.ops.conv_relu_pool(w, x, np.zeros(3))
    with pytest.raises(ValueError, match="conv_relu_pool: window 5 .* larger than the padded input"):
        kp.ops.conv_relu_pool(w, x, np.zeros(3, np.float32), window=5)
    with pytest.raises(ValueError, match="conv_relu_pool: x has 1 channels"):
        kp.ops.conv_relu_pool(w, x[:, :1], np.zeros(3, np.float32))


# -- Sequential takes the fused op ----------------------------------------------------------------------------
def _model():
    kp.set_seed(0)
    return kp.Sequential(
        L.Conv2D(6, 3, activation="relu"),
        L.MaxPool2D(),
        L.Conv2D(5, 3, activation="relu", padding="same"),
        L.MaxPool2D(3, strides=2, padding=1),
        L.Conv2D(4, 2, activation="tanh"),  # not relu: stays unfused
        L.MaxPool2D(),
        L.Flatten(),
        L.Dense(3),
    )


def _train_step(model, x, one_by_one):
    for p in model.params.values():
        p.zero_grad()
    if one_by_one:
        y = x
        for layer in model:
            y = layer(y)
    else:
        y = model(x)
    kp.sum(y * y).backward()
    return [y.value] + [p.grad for p in model.params.values()]


@pytest.mark.parametrize("kernels", KERNELS)
def test_sequential_fuses_conv_relu_and_max_pool(monkeypatch, kernels):
    x = np.random.default_rng(2).standard_normal((5, 2, 17, 15)).astype(np.float32)
    model = _model()
    calls = []

    def counted(*args, **kwargs):
        calls.append(1)
        return conv_pool.conv_relu_pool(*args, **kwargs)

    monkeypatch.setattr("knetpy.layers.conv.conv_relu_pool", counted)
    monkeypatch.setattr(conv_pool, "PLANES_MAX_CHANNELS", 0)  # bit for bit: the GEMM's sums
    with setting(kernels, 1):
        model(x)  # builds the layers (unfused)
        calls.clear()
        ref = _train_step(model, x, one_by_one=True)
        assert calls == []
        got = _train_step(model, x, one_by_one=False)
    assert len(calls) == 2  # the two relu convolutions, not the tanh one
    for r, g in zip(ref, got):
        np.testing.assert_array_equal(g, r)


def test_summary_and_parameter_names_unchanged_by_fusion():
    x = np.zeros((2, 2, 17, 15), np.float32)
    model = _model()
    model(x)
    before = summarize(model)
    model(x)  # fused now
    assert summarize(model) == before
    assert "1 (MaxPool2D)" in before and "0 (Conv2D)" in before
    assert list(model.params) == ["0.w", "0.b", "2.w", "2.b", "4.w", "4.b", "7.w", "7.b"]


def test_a_layer_with_its_own_forward_is_not_fused():
    class Logged(L.MaxPool2D):
        seen = 0

        def forward(self, x):
            Logged.seen += 1
            return super().forward(x)

    kp.set_seed(0)
    model = kp.Sequential(L.Conv2D(3, 3, activation="relu"), Logged())
    x = np.ones((1, 1, 6, 6), np.float32)
    model(x)
    model(x)
    assert Logged.seen == 2


# -- the strict backend: the NumPy-free reference path ---------------------------------------------------------
def test_fused_op_on_strict_matches_numpy_without_host_copies():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 9, 10)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    gy = rng.standard_normal((2, 4, 3, 3)).astype(np.float32)
    conv, pool = {"padding": 1}, {"window": 3, "pool_stride": 3}
    ref = _value_and_grads(lambda *a: _fused(*a, conv, pool), w, x, b, gy)
    strict.reset_transfers()
    got = _value_and_grads(lambda *a: _fused(*a, conv, pool), *(strict.asarray(a) for a in (w, x, b)),
                           strict.asarray(gy))
    assert strict.transfers["to_host"] == 0, strict.transfer_log
    for name, r, g in zip(["output", "dw", "dx", "db"], ref, got):
        assert isinstance(g, strict.StrictArray), name
        np.testing.assert_allclose(g.get(), r, rtol=2e-5, atol=2e-5, err_msg=name)


def test_sequential_on_strict_fuses_and_matches_numpy(monkeypatch):
    calls = []

    def counted(*args, **kwargs):
        calls.append(1)
        return conv_pool.conv_relu_pool(*args, **kwargs)

    monkeypatch.setattr("knetpy.layers.conv.conv_relu_pool", counted)
    x = np.random.default_rng(4).standard_normal((3, 2, 17, 15)).astype(np.float32)
    ref_model = _model()
    ref_model(x)
    ref = _train_step(ref_model, x, one_by_one=False)
    xs = strict.asarray(x)
    model = _model()
    model(xs)  # builds and moves the layers to the device (unfused)
    strict.reset_transfers()
    calls.clear()
    got = _train_step(model, xs, one_by_one=False)
    assert strict.transfers["to_host"] == 0, strict.transfer_log
    assert len(calls) == 2
    for r, g in zip(ref, got):
        assert isinstance(g, strict.StrictArray)
        np.testing.assert_allclose(g.get(), r, rtol=2e-5, atol=2e-5)


def test_the_backward_pass_keeps_only_the_pooled_sizes():
    """What the tape keeps for the backward pass: no array as large as the full activation."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 2, 20, 20)).astype(np.float32)
    w, b = kp.Param(rng.standard_normal((8, 2, 3, 3)).astype(np.float32)), kp.Param(np.zeros(8, np.float32))
    for kernels in KERNELS:
        with setting(kernels, 1):
            y = kp.ops.conv_relu_pool(w, x, b)
        saved = y._saved.switches
        full = 4 * 8 * 18 * 18
        kept = [a for a in (saved.code, saved.like) if a is not None]
        assert all(a.size <= full // 4 for a in kept), [a.shape for a in kept]
        assert saved.like.size <= 8 * 4
