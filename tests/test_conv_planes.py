"""``conv_relu_pool`` on planes (:mod:`knetpy.ops.fast.conv_planes`), the path first layers take: the
forward pass from the input's phases, and the filter and bias gradients from the pooled gradient.
Against the GEMM over gathered windows (the reference path), PyTorch, and central differences; it must
be the path LeNet's first layer takes, and not the others'."""

import numpy as np
import pytest
from fast_switch import kernels, threads

import knetpy as kp
from knetpy import layers as L
from knetpy.ops import conv_pool, fast

pytestmark = pytest.mark.skipif(not fast.available(), reason="the planes' kernels are compiled with numba")


def _count_calls(monkeypatch, name):
    """For each call of ``conv_pool.<name>``: whether the planes made the result (None: they did not)."""
    calls = []
    real = getattr(conv_pool, name)

    def counted(*args):
        made = real(*args)
        calls.append(made is not None)
        return made

    monkeypatch.setattr(conv_pool, name, counted)
    return calls


@pytest.fixture
def planes_calls(monkeypatch):
    """For each filter gradient: whether the planes made it."""
    return _count_calls(monkeypatch, "_planes_grads")


@pytest.fixture
def forward_calls(monkeypatch):
    """For each forward pass of the fused op: whether the planes made it."""
    return _count_calls(monkeypatch, "_planes_forward")


CASES = [  # x shape, filters, kernel, conv options, pool options
    ((6, 1, 28, 28), 20, 5, {}, {}),  # LeNet's first layer
    ((3, 1, 11, 9), 5, 3, {}, {}),  # an odd number of filters; the last row and column in no window
    ((4, 2, 10, 9), 6, 4, {"padding": 2}, {"window": 2}),
    ((2, 2, 9, 8), 4, (3, 2), {"dilation": (2, 1), "mode": 0}, {"window": (2, 3), "pool_stride": 1}),
    ((3, 1, 12, 12), 7, (1, 5), {"padding": (0, 1)}, {"window": 3, "pool_padding": 1, "pool_stride": 2}),
]


def _grads(w, x, b, gy, conv, pool):
    wt, bt = kp.Param(w), kp.Param(b)
    y = kp.ops.conv_relu_pool(wt, x, bt, **conv, **pool)
    kp.sum(y * gy).backward()
    return y.value, wt.grad, bt.grad


def _case(case, dtype, seed=0):
    shape, filters, kernel, conv, pool = case
    rng = np.random.default_rng(seed)
    k = kernel if isinstance(kernel, tuple) else (kernel, kernel)
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal((filters, shape[1], *k)).astype(dtype)
    b = rng.standard_normal(filters).astype(dtype)
    b[0] = -50.0  # one channel all below zero: every gradient there is masked
    y = kp.ops.conv_relu_pool(w, x, b, **conv, **pool)
    return w, x, b, rng.standard_normal(y.shape).astype(dtype)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_planes_match_the_gemm_path(monkeypatch, planes_calls, case, n_threads, dtype):
    w, x, b, gy = _case(case, dtype)
    conv, pool = case[3], case[4]
    with threads(n_threads):
        y, dw, db = _grads(w, x, b, gy, conv, pool)
        assert planes_calls == [True]
        monkeypatch.setattr(conv_pool, "PLANES_MAX_CHANNELS", 0)
        ref_y, ref_dw, ref_db = _grads(w, x, b, gy, conv, pool)
    assert planes_calls == [True, False]
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y, ref_y, rtol=tol, atol=tol * np.abs(ref_y).max())
    for name, got, ref in (("dw", dw, ref_dw), ("db", db, ref_db)):
        assert got.dtype == ref.dtype and got.shape == ref.shape, name
        scale = np.abs(ref).max()
        np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * scale, err_msg=name)
    assert np.all(dw[0] == 0) and db[0] == 0  # the channel relu shut
    assert np.any(dw[1:] != 0)


def test_planes_match_pytorch():
    torch = pytest.importorskip("torch")
    w, x, b, gy = _case(CASES[0], np.float64, seed=1)
    y, dw, db = _grads(w, x, b, gy, {}, {})
    wt, bt = (torch.tensor(a, requires_grad=True) for a in (w, b))
    # knetpy's default mode 0 is true convolution: torch's cross-correlation with the kernel flipped
    z = torch.nn.functional.conv2d(torch.from_numpy(x), wt.flip(2, 3), bt)
    yt = torch.nn.functional.max_pool2d(torch.relu(z), 2)
    (yt * torch.from_numpy(gy)).sum().backward()
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dw, wt.grad.numpy(), rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(db, bt.grad.numpy(), rtol=1e-11, atol=1e-11)


def test_planes_match_central_differences(planes_calls):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 2, 9, 8))
    w = rng.standard_normal((5, 2, 3, 4))
    b = rng.standard_normal(5)
    options = {"padding": (1, 0), "dilation": (1, 2)}
    proj = rng.standard_normal(kp.ops.conv_relu_pool(w, x, b, **options).shape)

    def f(w, b):
        return kp.sum(kp.ops.conv_relu_pool(w, x, b, **options) * proj)

    assert kp.gradcheck(f, w, b)
    assert any(planes_calls)


def test_a_nan_in_the_gradient_spreads_as_in_the_reference(monkeypatch):
    w, x, b, gy = _case(CASES[1], np.float64)
    gy[1, 2, 1, 1] = np.nan
    _, dw, db = _grads(w, x, b, gy, {}, {})
    monkeypatch.setattr(conv_pool, "PLANES_MAX_CHANNELS", 0)
    _, ref_dw, ref_db = _grads(w, x, b, gy, {}, {})
    np.testing.assert_array_equal(np.isnan(dw), np.isnan(ref_dw))
    np.testing.assert_array_equal(np.isnan(db), np.isnan(ref_db))
    assert np.isnan(dw[2]).all() and not np.isnan(dw[1]).any()


@pytest.mark.parametrize("case", [CASES[0], CASES[1]])
def test_an_infinite_gradient_gives_nan_where_the_reference_does(monkeypatch, case):
    """The reference masks the pooled gradient by multiplying: inf * 0 is NaN at a window's other
    positions, so the whole filter's gradient is NaN, not ±inf."""
    w, x, b, gy = _case(case, np.float32)
    b[2] = 50.0  # relu passes every gradient of filter 2
    gy[1, 2, 1, 1] = np.inf
    _, dw, db = _grads(w, x, b, gy, {}, {})
    monkeypatch.setattr(conv_pool, "PLANES_MAX_CHANNELS", 0)
    _, ref_dw, ref_db = _grads(w, x, b, gy, {}, {})
    assert np.isnan(ref_dw[2]).all()
    np.testing.assert_array_equal(np.isnan(dw), np.isnan(ref_dw))
    np.testing.assert_array_equal(np.isnan(db), np.isnan(ref_db))


def test_lenet_takes_planes_for_its_first_layer_only(planes_calls):
    kp.set_seed(0)
    model = kp.Sequential(
        L.Conv2D(20, 5, activation="relu"), L.MaxPool2D(),
        L.Conv2D(50, 5, activation="relu"), L.MaxPool2D(),
        L.Flatten(), L.Dense(10),
    )
    x = np.random.default_rng(3).random((8, 1, 28, 28), np.float32)
    model(x)
    y = model(x)  # fused from the second call on
    planes_calls.clear()
    kp.sum(y * y).backward()
    assert sorted(planes_calls) == [False, True]  # the first layer's; the second has 20 input channels
    assert all(p.grad is not None and np.any(p.grad != 0) for p in model.params.values())


def test_a_recorded_backward_pass_keeps_the_reference_path(monkeypatch, planes_calls):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 1, 8, 8))
    w, b, v = rng.standard_normal((4, 1, 3, 3)), rng.standard_normal(4), rng.standard_normal((4, 1, 3, 3))

    def hvp():
        return kp.hvp(lambda w: kp.sum(kp.ops.conv_relu_pool(w, x, b) ** 2), w, v)

    loss, got = hvp()
    assert False in planes_calls  # the gradient recorded for the second pass stays on the graph
    monkeypatch.setattr(conv_pool, "PLANES_MAX_CHANNELS", 0)
    ref_loss, ref = hvp()
    assert float(loss) == pytest.approx(float(ref_loss), rel=1e-12) and np.any(ref != 0)
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-10)


# -- the forward pass ----------------------------------------------------------------------------------------------
FORWARD_CASES = [  # x shape, filters, kernel, conv options; pooled 2x2 with stride 2
    ((6, 1, 28, 28), 20, 5, {}),  # LeNet's first layer
    ((3, 1, 11, 9), 5, 3, {}),  # an odd number of filters, narrower than five columns; odd edges dropped
    ((4, 2, 10, 9), 6, 4, {"padding": 2}),
    ((2, 2, 9, 8), 4, (3, 2), {"dilation": (2, 1), "mode": 1}),  # cross-correlation: no flip
    ((3, 1, 12, 13), 7, (1, 5), {"padding": (0, 1)}),
    ((2, 2, 7, 7), 4, 1, {"padding": 1}),
    ((2, 1, 17, 16), 9, 5, {"padding": (1, 2), "dilation": 2}),
]


def _forward_case(case, dtype, seed=0):
    shape, filters, kernel, conv = case
    rng = np.random.default_rng(seed)
    k = kernel if isinstance(kernel, tuple) else (kernel, kernel)
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal((filters, shape[1], *k)).astype(dtype)
    b = rng.standard_normal(filters).astype(dtype)
    b[0] = -50.0  # one channel all below zero: relu's zeros, and the first of each window wins
    return w, x, b


def _forward_and_input_grad(w, x, b, conv):
    """The pooled output, the pooling's winners (through the input gradient, which routes each pooled
    gradient to its winner) and dw."""
    xt, wt = kp.Param(x), kp.Param(w)
    y = kp.ops.conv_relu_pool(wt, xt, b, **conv)
    gy = np.arange(1, y.value.size + 1, dtype=x.dtype).reshape(y.shape) % 7 + 1
    kp.sum(y * gy).backward()
    return y.value, xt.grad, wt.grad


@pytest.mark.parametrize("case", FORWARD_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_matches_the_gemm_path(monkeypatch, forward_calls, case, dtype):
    w, x, b = _forward_case(case, dtype)
    conv = case[3]
    y, dx, dw = _forward_and_input_grad(w, x, b, conv)
    assert forward_calls == [True]
    monkeypatch.setattr(conv_pool, "PLANES_MAX_CHANNELS", 0)
    ref_y, ref_dx, ref_dw = _forward_and_input_grad(w, x, b, conv)
    assert forward_calls == [True, False]
    assert y.shape == ref_y.shape and y.dtype == ref_y.dtype
    tol = 2e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y, ref_y, rtol=tol, atol=tol * np.abs(ref_y).max())
    assert np.all(y[:, 0] == 0) and np.any(y[:, 1:] > 0)
    # the same winners: the input gradient lands on the same positions with the same values
    np.testing.assert_allclose(dx, ref_dx, rtol=tol, atol=tol * np.abs(ref_dx).max())
    np.testing.assert_allclose(dw, ref_dw, rtol=tol, atol=tol * np.abs(ref_dw).max())


def test_forward_split_over_threads_equals_one_thread_bit_for_bit(forward_calls):
    # a batch large enough to split: each sample's sums run alike in either part
    w, x, b = _forward_case(((100, 1, 28, 28), 20, 5, {}), np.float32, seed=5)
    with threads(1):
        one = kp.ops.conv_relu_pool(w, x, b)
    with threads(2):
        two = kp.ops.conv_relu_pool(w, x, b)
    assert forward_calls == [True, True]
    np.testing.assert_array_equal(one, two)


def test_forward_matches_pytorch_for_both_modes(forward_calls):
    torch = pytest.importorskip("torch")
    w, x, b = _forward_case(((3, 2, 15, 14), 6, (5, 4), {}), np.float64, seed=6)
    for mode, kernel in ((0, w[:, :, ::-1, ::-1].copy()), (1, w)):
        y = kp.ops.conv_relu_pool(w, x, b, padding=(2, 1), mode=mode)
        z = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(kernel), torch.from_numpy(b), padding=(2, 1))
        ref = torch.nn.functional.max_pool2d(torch.relu(z), 2).numpy()
        np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)
    assert forward_calls == [True, True]


@pytest.mark.parametrize("kernel", [3, 5])
def test_forward_keeps_nan_and_inf_where_the_reference_does(monkeypatch, kernel):
    # the input's inf must not meet a zero weight the reference never multiplies (0 * inf is NaN)
    w, x, b = _forward_case(((2, 1, 12, 13), 4, kernel, {}), np.float64, seed=7)
    x[0, 0, 3, 4] = np.inf
    x[1, 0, 8, 2] = np.nan
    w[1] = np.abs(w[1])  # this filter's windows over the inf give +inf
    y = np.asarray(kp.ops.conv_relu_pool(w, x, b))
    monkeypatch.setattr(conv_pool, "PLANES_MAX_CHANNELS", 0)
    ref = np.asarray(kp.ops.conv_relu_pool(w, x, b))
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    np.testing.assert_array_equal(np.isposinf(y), np.isposinf(ref))
    assert np.isposinf(y).any() and np.isnan(y).any()
    finite = np.isfinite(ref)
    np.testing.assert_allclose(y[finite], ref[finite], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "shape, kernel, conv, pool",
    [
        ((2, 3, 12, 12), 3, {}, {}),  # three input channels
        ((2, 1, 16, 16), 7, {}, {}),  # a kernel wider than PLANES_MAX_KERNEL
        ((2, 1, 12, 12), 3, {"stride": 2}, {}),
        ((2, 1, 12, 12), 3, {}, {"window": 3}),
        ((2, 1, 12, 12), 3, {}, {"pool_stride": 1}),
        ((2, 1, 12, 12), 3, {}, {"pool_padding": 1}),
    ],
)
def test_forward_leaves_other_layers_on_the_reference_path(forward_calls, shape, kernel, conv, pool):
    rng = np.random.default_rng(8)
    x = rng.standard_normal(shape)
    w = rng.standard_normal((6, shape[1], kernel, kernel))
    kp.ops.conv_relu_pool(w, x, rng.standard_normal(6), **conv, **pool)
    assert forward_calls == [False]


def test_forward_without_the_compiled_kernels_is_the_reference(forward_calls):
    w, x, b = _forward_case(FORWARD_CASES[0], np.float32)
    with kernels(False):
        kp.ops.conv_relu_pool(w, x, b)
    assert forward_calls == [False]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gradients_split_over_threads_match_one_thread_and_the_gemm_path(monkeypatch, planes_calls, dtype):
    # a batch large enough to split: each part sums its samples' planes, and the parts are added in order
    w, x, b = _forward_case(((100, 1, 28, 28), 20, 5, {}), dtype, seed=9)
    gy = np.random.default_rng(9).standard_normal((100, 20, 12, 12)).astype(dtype)
    with threads(1):
        _, dw1, db1 = _grads(w, x, b, gy, {}, {})
    with threads(2):
        _, dw2, db2 = _grads(w, x, b, gy, {}, {})
        monkeypatch.setattr(conv_pool, "PLANES_MAX_CHANNELS", 0)
        _, ref_dw, ref_db = _grads(w, x, b, gy, {}, {})
    assert planes_calls == [True, True, False]
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(dw2, dw1, rtol=tol, atol=tol * np.abs(dw1).max())
    np.testing.assert_allclose(db2, db1, rtol=tol, atol=tol * np.abs(db1).max())
    if dtype == np.float64:
        # against the GEMM path only in float64: in float32 the two forward passes' rounding can put an
        # output on either side of relu's 0, or move a window's winner, which moves a whole gradient entry
        np.testing.assert_allclose(dw1, ref_dw, rtol=1e-11, atol=1e-11 * np.abs(ref_dw).max())
        np.testing.assert_allclose(db1, ref_db, rtol=1e-11, atol=1e-11 * np.abs(ref_db).max())
