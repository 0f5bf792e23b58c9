"""The compiled (numba) convolution and pooling kernels against the NumPy code they replace.

Each case runs the same op twice, with ``set_fast(False)`` (the reference) and ``set_fast(True)``,
forward and backward, and compares: pooling exactly, convolutions within float rounding.
"""


import numpy as np
import pytest
from fast_switch import kernels, threads

import knetpy as kp
from knetpy.ops import fast

pytestmark = pytest.mark.skipif(not fast.available(), reason="numba (the [fast] extra) is not installed")


def both(fn):
    """fn() with the compiled kernels off, then on."""
    with kernels(False):
        ref = fn()
    with kernels(True):
        got = fn()
    return ref, got


def channels_last(x):
    """The same (N, C, H, W) values in channels-last memory, as convolutions produce them."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


def tol(dtype):
    return {"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}


# -- max pooling: the same maxima, the same winners, the same gradients --------------------------------------
POOLS = [  # (N, C, H, W) (channels-last), window, padding, stride
    ((3, 5, 8, 8), 2, 0, None),
    ((2, 4, 9, 7), 2, 0, None),  # odd sizes: the last row and column are in no window
    ((2, 7, 7, 9), 3, 1, 2),  # overlapping windows with padding
    ((2, 6, 6, 5), (3, 2), (1, 0), (1, 2)),
    ((1, 4, 5, 5), 3, 0, 1),
    ((2, 9, 6, 7), 2, 0, 1),  # 2x2 windows that overlap: the compiled 2x2 kernel with stride 1
    ((2, 33, 6, 6), (2, 2), 0, (2, 1)),  # 33 channels: its vector loop and the remainder after it
]


@pytest.mark.parametrize("shape, window, padding, stride", POOLS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_max_pool_forward_and_backward_match_numpy(rng, shape, window, padding, stride, dtype, n_threads):
    x = rng.standard_normal(shape).astype(dtype)
    x[0, 0, :2, :2] = 1.5  # ties: the first maximal offset must win on both paths
    x = channels_last(x)
    gy = None

    def run():
        nonlocal gy
        xt = kp.Tensor(x, requires_grad=True)
        y = kp.pool(xt, window=window, padding=padding, stride=stride)
        if gy is None:
            gy = rng.standard_normal(y.shape).astype(dtype)
        y.backward(gy)
        return y.value, xt.grad

    with threads(n_threads):
        (y0, dx0), (y1, dx1) = both(run)
    assert y1.dtype == dx1.dtype == dtype
    assert y1.strides == y0.strides and dx1.strides == dx0.strides  # the layout is kept
    assert np.array_equal(y0, y1) and np.array_equal(dx0, dx1)


def test_max_pool_nan_and_padding_winners_match_numpy():
    x = np.array([[[[1.0, np.nan, 3.0], [-np.inf, -np.inf, 0.5], [2.0, -1.0, np.nan]]]], np.float32)
    x = np.concatenate([x, np.full_like(x, -np.inf), -x, x], axis=1)  # -inf: only padding could win
    x = channels_last(x)

    def run():
        xt = kp.Tensor(x, requires_grad=True)
        y = kp.pool(xt, window=2, padding=1, stride=1)
        y.backward(np.arange(1.0, 1.0 + y.value.size, dtype=np.float32).reshape(y.shape))
        return y.value, xt.grad

    (y0, dx0), (y1, dx1) = both(run)
    assert np.isnan(y0).any()
    assert np.array_equal(y0, y1, equal_nan=True) and np.array_equal(dx0, dx1, equal_nan=True)


@pytest.mark.parametrize("stride", [1, 2])
def test_max_pool_2x2_nan_and_ties_match_numpy(rng, stride):
    """The 2x2 kernel (selects, no branches): a NaN anywhere in a window wins, ties keep the first."""
    x = rng.standard_normal((3, 12, 6, 6)).astype(np.float32)
    x[0, :, 0, 1] = np.nan  # second offset
    x[1, :, 3, 3] = np.nan  # last offset of a window
    x[1, :, 2, 2] = np.nan  # two NaNs in one window
    x[2, :, :2, :2] = 0.5  # a tie over the whole window: offset 0 wins
    x = channels_last(x)

    def run():
        xt = kp.Tensor(x, requires_grad=True)
        y = kp.pool(xt, window=2, stride=stride)
        y.backward(np.arange(1.0, 1.0 + y.value.size, dtype=np.float32).reshape(y.shape))
        return y.value, xt.grad

    (y0, dx0), (y1, dx1) = both(run)
    assert np.isnan(y0).sum() >= 2 * 12
    assert np.array_equal(y0, y1, equal_nan=True) and np.array_equal(dx0, dx1, equal_nan=True)


def test_max_pool_indices_from_the_compiled_kernel(rng):
    x = channels_last(rng.standard_normal((2, 3, 6, 6)).astype(np.float32))
    (y0, i0), (y1, i1) = both(lambda: kp.pool(x, window=3, stride=2, padding=1, return_indices=True))
    assert np.array_equal(y0, y1) and np.array_equal(i0, i1)


# -- convolutions: conv4_bias (+ relu), conv4 and deconv4, forward and all gradients --------------------------
CONVS = [  # (N, C_in, H, W), (C_out, k_h, k_w), padding, stride, dilation
    ((4, 1, 12, 12), (5, 5, 5), 0, 1, 1),  # one input channel: the kernel-major gather
    ((3, 6, 9, 8), (7, 3, 3), 1, 1, 1),
    ((2, 5, 11, 10), (4, 3, 2), (2, 1), (2, 3), 1),
    ((2, 3, 10, 9), (6, 3, 3), 1, 1, 2),
    ((5, 4, 7, 7), (3, 1, 1), 0, 2, 1),
]


def conv_case(rng, shape, wshape, dtype, layout):
    x = rng.standard_normal(shape).astype(dtype)
    if layout == "channels-last":
        x = channels_last(x)
    w = (rng.standard_normal((wshape[0], shape[1], *wshape[1:])) / np.sqrt(shape[1] * 9)).astype(dtype)
    b = (0.1 * rng.standard_normal(wshape[0])).astype(dtype)
    return x, w, b


@pytest.mark.parametrize("shape, wshape, padding, stride, dilation", CONVS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_conv4_bias_relu_and_gradients_match_numpy(rng, shape, wshape, padding, stride, dilation, dtype, n_threads):
    x, w, b = conv_case(rng, shape, wshape, dtype, "channels-last" if n_threads == 2 else "nchw")
    opts = dict(padding=padding, stride=stride, dilation=dilation, mode=1)
    gy = None

    def run():
        nonlocal gy
        ts = [kp.Tensor(a, requires_grad=True) for a in (w, x, b)]
        y = kp.conv4_bias(*ts, relu=True, **opts)
        if gy is None:
            gy = rng.standard_normal(y.shape).astype(dtype)
        y.backward(gy)
        return [y.value] + [t.grad for t in ts]

    with threads(n_threads):
        ref, got = both(run)
    assert (ref[0] == 0).any() and (ref[0] > 0).any()  # relu is active and inactive somewhere
    for a, c in zip(ref, got):
        assert c.dtype == dtype and c.shape == a.shape
        np.testing.assert_allclose(c, a, **tol(dtype))


@pytest.mark.parametrize("shape, wshape, padding, stride, dilation", CONVS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv4_and_deconv4_gradients_match_numpy(rng, shape, wshape, padding, stride, dilation, dtype):
    x, w, _ = conv_case(rng, shape, wshape, dtype, "nchw")
    opts = dict(padding=padding, stride=stride, dilation=dilation)
    y_shape = kp.conv4(w, x, **opts).shape
    gy = rng.standard_normal(y_shape).astype(dtype)

    def loss(w, x, gy):  # conv4 through its gradient: deconv4 (the compiled col2im) and the filter gradient
        return kp.sum(kp.conv4(w, x, **opts) * gy) + kp.sum(kp.deconv4(w, gy, **opts) ** 2)

    grad = kp.grad(loss, argnums=(0, 1, 2))
    ref, got = both(lambda: [kp.deconv4(w, gy, **opts)] + list(grad(w, x, gy)))
    assert ref[0].shape[:2] == x.shape[:2]
    for a, c in zip(ref, got):
        assert c.dtype == dtype
        np.testing.assert_allclose(c, a, **tol(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_gradient_matches_numpy(rng, dtype, monkeypatch):
    from knetpy.ops.fast import conv as fconv

    calls = []
    original = fconv.relu_grad
    monkeypatch.setattr(fconv, "relu_grad", lambda *a: (calls.append(1), original(*a)))
    # large enough to be split over threads (the compiled pass runs per part), channels-last as after a conv
    x = channels_last(rng.standard_normal((8, 16, 48, 48)).astype(dtype))
    gy = channels_last(rng.standard_normal(x.shape).astype(dtype))

    def run():
        xt = kp.Tensor(x, requires_grad=True)
        kp.relu(xt).backward(gy)
        return xt.grad

    with threads(2):
        ref, got = both(run)
    assert calls and np.array_equal(ref, got) and np.array_equal(got, gy * (x > 0))


def test_empty_batch_takes_every_path(rng):
    x, w, b = conv_case(rng, (0, 3, 8, 8), (4, 3, 3), np.float32, "nchw")
    for on in (False, True):
        with kernels(on):
            y = kp.conv4_bias(w, x, b, relu=True)
            assert y.shape == (0, 4, 6, 6)
            assert kp.pool(y).shape == (0, 4, 3, 3)
            assert kp.deconv4(w, y).shape == (0, 3, 8, 8)


# -- dispatch: the kernels run exactly when they are on and the arrays suit them -------------------------------
def test_set_fast_false_keeps_every_op_on_numpy(rng, monkeypatch):
    from knetpy.ops.fast import conv as fconv
    from knetpy.ops.fast import pool as fpool

    called = []
    for module, name in [(fpool, "max_pool2d"), (fpool, "max_pool2d_backward"), (fconv, "col2im2d"),
                         (fconv, "bias_relu"), (fconv, "relu_grad"), (fconv, "im2col2d")]:
        original = getattr(module, name)

        def spy(*args, _name=name, _original=original):
            called.append(_name)
            return _original(*args)

        monkeypatch.setattr(module, name, spy)
    x, w, b = conv_case(rng, (2, 3, 10, 10), (4, 3, 3), np.float32, "nchw")

    def step():
        ts = [kp.Tensor(a, requires_grad=True) for a in (w, x, b)]
        kp.sum(kp.pool(kp.conv4_bias(*ts, relu=True))).backward()
        kp.conv4(w, x, padding=1)  # padded windows: gathered by im2col2d

    with kernels(False):
        step()
    assert called == []
    with kernels(True):
        step()
    assert sorted(set(called)) == ["bias_relu", "col2im2d", "im2col2d", "max_pool2d", "max_pool2d_backward",
                                   "relu_grad"]
    called.clear()
    with kernels(True):  # no kernels for these: NumPy, and no error
        kp.pool(rng.standard_normal((2, 3, 8)).astype(np.float32))  # 1-D
        kp.pool(rng.standard_normal((2, 8, 6, 6)).astype(np.float32))  # C order: NumPy's passes are faster
        kp.pool(channels_last(rng.standard_normal((2, 2, 6, 6)).astype(np.float32)))  # too few channels
        kp.conv4(w[:3, :1].copy(), x, groups=3)  # grouped
    assert called == []


def test_set_fast_without_numba_says_what_to_install(monkeypatch):
    monkeypatch.setattr(fast, "_have_numba", False)
    with pytest.raises(ImportError, match=r"knetpy\[fast\]"):
        fast.set_fast(True)


@pytest.mark.parametrize("shape, wshape, padding, stride, dilation", CONVS)
def test_col2im_over_a_few_samples_at_a_time_changes_no_bit(rng, monkeypatch, shape, wshape, padding, stride, dilation):
    """The input gradient's GEMM and col2im run a few samples at a time (CHUNK_BYTES), with knetpy's
    threads off too: each sample's sums are the same, so every chunk size gives the same bits."""
    from knetpy.ops import conv

    x, w, _ = conv_case(rng, (7, *shape[1:]), wshape, np.float32, "nchw")
    opts = dict(padding=padding, stride=stride, dilation=dilation)
    gy = rng.standard_normal(kp.conv4(w, x, **opts).shape).astype(np.float32)
    results = {}
    with threads(1), kernels(True):
        for chunk in (1 << 30, 1, 4096):  # the whole batch in one pass, one sample, a few samples
            monkeypatch.setattr(conv, "CHUNK_BYTES", chunk)
            results[chunk] = kp.deconv4(w, gy, **opts)
    assert results[1].shape[:2] == x.shape[:2]  # (a strided transpose may be a column narrower)
    np.testing.assert_array_equal(results[1], results[1 << 30])
    np.testing.assert_array_equal(results[4096], results[1 << 30])
    with kernels(False):
        np.testing.assert_allclose(results[1], kp.deconv4(w, gy, **opts), **tol(np.float32))


@pytest.mark.parametrize("shape, kernel, padding, stride, dilation", [
    ((3, 4, 9, 8), (3, 3), (1, 1), (1, 1), (1, 1)),
    ((2, 5, 11, 10), (3, 2), (2, 1), (2, 3), (1, 1)),
    ((2, 3, 10, 9), (3, 3), (1, 2), (1, 1), (2, 2)),
    ((2, 17, 6, 7), (5, 5), (3, 3), (2, 1), (1, 2)),  # windows wholly in the padding too
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_padded_windows_are_gathered_without_a_padded_copy_element_for_element(rng, shape, kernel, padding, stride,
                                                                                 dilation, dtype):
    from knetpy.ops import conv
    from knetpy.ops.im2col import WindowGather, pad_channels_last

    x = rng.standard_normal(shape).astype(dtype)
    x[0, 1, 2, 3], x[1, 0, 0, 0], x[-1, -1, -1, -1] = np.nan, np.inf, -np.inf  # copied as they are
    geom = conv.ConvGeometry(padding, stride, dilation, 1, False)
    out = geom.output_size(shape[2:], kernel)
    with kernels(True):
        compiled = conv._window_gather(x, geom, kernel, out)
    assert isinstance(compiled, conv._PaddedGather)
    reference = WindowGather(pad_channels_last(x, padding), kernel, stride, dilation, out, 1)
    assert compiled.width == reference.width and compiled.per_sample == reference.per_sample
    n = shape[0]
    for lo, hi, at, m in [(0, n, 0, n), (1, n, 0, n - 1), (0, 1, 1, 2)]:  # all, a tail, one sample at an offset
        a, b = compiled.buffer(m), reference.buffer(m)
        a[...] = b[...] = 7  # rows outside [at, at + hi - lo) stay as they were
        compiled.fill(a, lo, hi, at)
        reference.fill(b, lo, hi, at)
        np.testing.assert_array_equal(compiled.cols(a, m), reference.cols(b, m))
    with kernels(False):
        assert isinstance(conv._window_gather(x, geom, kernel, out), WindowGather)


def test_windows_without_padding_or_of_one_channel_keep_the_strided_copy(rng):
    from knetpy.ops import conv
    from knetpy.ops.im2col import WindowGather

    with kernels(True):
        for shape, padding in [((2, 4, 8, 8), (0, 0)), ((2, 1, 8, 8), (1, 1))]:
            geom = conv.ConvGeometry(padding, (1, 1), (1, 1), 1, False)
            x = rng.standard_normal(shape).astype(np.float32)
            assert isinstance(conv._window_gather(x, geom, (3, 3), geom.output_size(shape[2:], (3, 3))), WindowGather)
