"""Winograd convolution (knetpy.ops.winograd) against the direct definitions and against PyTorch.

The algorithm is exact in exact arithmetic, so in float64 (the tests run the path there through
``plan_for``) it must equal the direct convolution, its input gradient and its filter gradient to
1e-12. In float32, where knetpy takes it by default, the error is bounded against float64 and
PyTorch. And the path is really taken where it should be, and not where it should not: knetpy takes
it with its threads off, so the tests run on one thread unless they say otherwise.
"""

from __future__ import annotations

import numpy as np
import pytest
from fast_switch import kernels, threads
from fast_switch import winograd_convolutions as winograd

import knetpy as kp
from knetpy.ops import conv as kc
from knetpy.ops import fast
from knetpy.ops import winograd as wg
from knetpy.ops.conv_reference import conv_filter_grad_reference, conv_reference, conv_transpose_reference

needs_numba = pytest.mark.skipif(not fast.available(), reason="numba (the [fast] extra) is not installed")


@pytest.fixture(autouse=True)
def one_thread():
    with threads(1):
        yield


NONE = {"conv_rows": 0, "conv_transpose": 0, "filter_grad": 0, "backward": 0}
#: A convolution trained through Winograd's path: the forward pass, then both gradients in one pass.
TRAINED = {**NONE, "conv_rows": 1, "backward": 1}


@pytest.fixture
def calls(monkeypatch):
    """How often each Winograd convolution was called from outside the module."""
    count = dict(NONE)
    inside = [False]
    for name in count:
        real = getattr(wg, name)

        def spy(*args, _real=real, _name=name, **kwargs):
            if inside[0]:  # (filter_grad calls backward)
                return _real(*args, **kwargs)
            count[_name] += 1
            inside[0] = True
            try:
                return _real(*args, **kwargs)
            finally:
                inside[0] = False

        monkeypatch.setattr(wg, name, spy)
    return count


def cl(x):
    return np.ascontiguousarray(np.moveaxis(x, 1, -1))


@pytest.mark.parametrize("r", [3, 5])
def test_the_one_dimensional_transform_is_a_correlation_exactly(r):
    at, g, bt = wg.transforms(r)
    m = wg.ALPHA - r + 1
    rng = np.random.default_rng(r)
    for _ in range(5):
        d, k = rng.standard_normal(wg.ALPHA), rng.standard_normal(r)
        got = at @ ((g @ k) * (bt @ d))
        want = np.array([d[i : i + r] @ k for i in range(m)])
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    # the interpolation matrix's columns are scaled to largest entry 1
    np.testing.assert_allclose(np.abs(bt).max(axis=1), 1.0)


CASES = [  # (N, C_in, C_out, H, W, r, padding, mode)
    (3, 8, 9, 12, 12, 5, 0, 1),  # LeNet's second layer, exact tiling
    (2, 9, 10, 17, 15, 5, 2, 0),  # padding, flipped kernel, tiles past the edge
    (2, 8, 8, 13, 11, 3, 1, 0),
    (2, 8, 12, 20, 20, 3, 0, 1),
    (1, 8, 8, 32, 32, 3, 1, 1),  # ResNet's 3x3 layers
]


@pytest.mark.parametrize("case", CASES)
def test_float64_equals_the_direct_convolution_and_both_adjoints(case):
    n, cin, cout, h, w_, r, pad, mode = case
    rng = np.random.default_rng(sum(case))
    x = rng.standard_normal((n, cin, h, w_))
    w = rng.standard_normal((cout, cin, r, r))
    geom = kc.ConvGeometry((pad, pad), (1, 1), (1, 1), 1, mode == 0)
    out = geom.output_size((h, w_), (r, r))
    plan = wg.plan_for(w.shape, geom, out, np.float64)
    assert plan is not None and wg.work_ratio(plan) <= wg.MAX_WORK
    want = conv_reference(w, x, (pad, pad), (1, 1), (1, 1), 1, mode)
    rows = np.empty((n * out[0] * out[1], cout))
    wg.conv_rows(w, cl(x), plan, mode == 0, rows)
    np.testing.assert_allclose(np.moveaxis(rows.reshape(n, *out, cout), -1, 1), want, rtol=0, atol=1e-11)
    gy = rng.standard_normal(want.shape)
    dx = np.empty((n, h, w_, cin))
    wg.conv_transpose(w, cl(gy), plan, mode == 0, dx)
    np.testing.assert_allclose(
        np.moveaxis(dx, -1, 1),
        conv_transpose_reference(w, gy, (pad, pad), (1, 1), (1, 1), 1, (h, w_), mode), rtol=0, atol=1e-11)
    dw = wg.filter_grad(cl(x), cl(gy), plan, mode == 0)
    np.testing.assert_allclose(
        dw, conv_filter_grad_reference(x, gy, (pad, pad), (1, 1), (1, 1), 1, (r, r), mode), rtol=0, atol=1e-10)


def _scaled_error(got, want):
    return np.abs(got - want).max() / np.abs(want).max()


def test_float32_conv4_takes_winograd_and_stays_close_to_float64(calls):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20, 20, 12, 12)).astype(np.float32)
    w = (rng.standard_normal((50, 20, 5, 5)) / 20).astype(np.float32)
    gy = rng.standard_normal((20, 50, 8, 8)).astype(np.float32)
    wt, xt = kp.Param(w), kp.Param(x)
    y = kp.conv4(wt, xt)
    y.backward(gy)
    assert calls == TRAINED
    x64, w64, g64 = x.astype(np.float64), w.astype(np.float64), gy.astype(np.float64)
    assert y.value.dtype == np.float32
    assert _scaled_error(y.value, conv_reference(w64, x64, (0, 0), (1, 1), (1, 1), 1, 0)) < 2e-5
    assert _scaled_error(xt.grad, conv_transpose_reference(w64, g64, (0, 0), (1, 1), (1, 1), 1, (12, 12), 0)) < 2e-5
    assert _scaled_error(wt.grad, conv_filter_grad_reference(x64, g64, (0, 0), (1, 1), (1, 1), 1, (5, 5), 0)) < 2e-5


def test_chunks_of_samples_give_the_same_result_as_one_chunk(monkeypatch):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((37, 16, 14, 14)).astype(np.float32)  # 37: the last chunk is shorter
    w = (rng.standard_normal((24, 16, 3, 3)) / 12).astype(np.float32)
    gy = rng.standard_normal((37, 24, 14, 14)).astype(np.float32)

    def run():
        wt, xt = kp.Param(w), kp.Param(x)
        y = kp.conv4(wt, xt, padding=1, mode=1)
        y.backward(gy)
        return y.value, xt.grad, wt.grad

    one = run()
    monkeypatch.setattr(wg, "CHUNK_BYTES", 1)  # one sample at a time
    many = run()
    # each sample's tiles are computed alike, but a product over fewer tiles may take another of BLAS's
    # kernels (its small-matrix path on some processors, e.g. OpenBLAS's AVX-512 kernels), which rounds
    # differently: float32's rounding over sums of 144 products, as in the float64 comparisons above
    assert _scaled_error(many[0], one[0]) < 2e-5
    assert _scaled_error(many[1], one[1]) < 2e-5
    assert _scaled_error(many[2], one[2]) < 2e-5  # the filter gradient sums the chunks in another order


def test_with_knetpys_threads_on_and_numpy_transforms_it_stays_direct(calls):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((20, 20, 12, 12)).astype(np.float32)
    w = rng.standard_normal((50, 20, 5, 5)).astype(np.float32)
    with threads(2), kernels(False):
        wt, xt = kp.Param(w), kp.Param(x)
        kp.conv4(wt, xt).sum().backward()
    assert calls == NONE


@needs_numba
def test_with_knetpys_threads_on_the_compiled_path_splits_the_batch_and_agrees(calls, monkeypatch):
    """Two threads each take half of the samples: the outputs and the input gradient are made per
    sample, so they equal one thread's up to BLAS's rounding of a product over fewer tiles (on some
    processors another kernel); the filter gradient adds the halves."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((20, 20, 12, 12)).astype(np.float32)
    w = (rng.standard_normal((50, 20, 5, 5)) / 20).astype(np.float32)
    gy = rng.standard_normal((20, 50, 8, 8)).astype(np.float32)
    parts = []
    real = kp.parallel.run
    monkeypatch.setattr(kp.parallel, "run", lambda fn, p: (parts.append(list(p)), real(fn, p))[1])

    def run(n):
        with threads(n):
            wt, xt = kp.Param(w), kp.Param(x)
            y = kp.conv4(wt, xt)
            y.backward(gy)
        return y.value, xt.grad, wt.grad

    one = run(1)
    assert parts == [] and calls == TRAINED
    two = run(2)
    assert parts == [[(0, 10), (10, 20)]] * 2 and calls == {**TRAINED, "conv_rows": 2, "backward": 2}
    assert _scaled_error(two[0], one[0]) < 1e-5
    assert _scaled_error(two[1], one[1]) < 1e-5
    assert _scaled_error(two[2], one[2]) < 2e-5


@pytest.mark.parametrize("r,padding", [(5, 0), (5, 2), (3, 1)])
def test_a_layer_matches_pytorch_forward_and_backward(r, padding, calls):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(r + padding)
    x = rng.standard_normal((16, 20, 16, 16)).astype(np.float32)
    layer = kp.layers.Conv2D(32, r, padding=padding, activation="relu")
    y = layer(kp.Param(x))  # builds the weights
    w, b = layer.w.value, layer.b.value.reshape(-1)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    xt = kp.Param(x)
    out = layer(xt)
    out.backward(gy)
    assert calls["conv_rows"] >= 1 and calls["backward"] == 1 and calls["conv_transpose"] == calls["filter_grad"] == 0
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)  # the layers cross-correlate, as PyTorch does
    tb = torch.tensor(b, requires_grad=True)
    ty = torch.relu(torch.nn.functional.conv2d(tx, tw, tb, padding=padding))
    ty.backward(torch.tensor(gy))
    np.testing.assert_allclose(out.value, ty.detach().numpy(), rtol=1e-4, atol=2e-4)
    np.testing.assert_allclose(xt.grad, tx.grad.numpy(), rtol=1e-4, atol=2e-4)
    np.testing.assert_allclose(layer.w.grad, tw.grad.numpy(), rtol=1e-4, atol=2e-3)
    np.testing.assert_allclose(layer.b.grad.reshape(-1), tb.grad.numpy(), rtol=1e-4, atol=2e-3)


def test_lenet_block_with_pooling_equals_the_direct_path_to_rounding(calls):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((10, 20, 12, 12)).astype(np.float32)
    w = (rng.standard_normal((50, 20, 5, 5)) / 20).astype(np.float32)
    b = rng.standard_normal(50).astype(np.float32)

    def run():
        ws, xs, bs = kp.Param(w), kp.Param(x), kp.Param(b)
        y = kp.ops.conv_relu_pool(ws, xs, bs)
        (y * y).sum().backward()
        return y.value, ws.grad, xs.grad, bs.grad

    with winograd(False):
        direct = run()
    assert calls == NONE
    fast = run()
    assert calls == TRAINED
    for d, f in zip(direct, fast):
        assert _scaled_error(f, d) < 2e-5


@needs_numba
@pytest.mark.parametrize("n_threads", [1, 2])
def test_the_pooling_scatter_inside_the_backward_pass_gives_the_same_gradients(monkeypatch, n_threads):
    """The fused op's backward pass runs the pooling's scatter of the gradient inside Winograd's parts,
    each on its own samples; the gradients are bit for bit those of the scatter run as an op of its own
    before the pass (parts of the batch cut alike), and the scatter is then no op of its own."""
    import importlib

    conv_pool, pool = (importlib.import_module(f"knetpy.ops.{name}") for name in ("conv_pool", "pool"))
    rng = np.random.default_rng(4)
    x = rng.standard_normal((12, 20, 12, 12)).astype(np.float32)
    w = (rng.standard_normal((50, 20, 5, 5)) / 20).astype(np.float32)
    b = rng.standard_normal(50).astype(np.float32)
    gy = rng.standard_normal((12, 50, 4, 4)).astype(np.float32)
    scatters = []
    real = pool._fast_scatter

    def counted(*args, **kwargs):
        scatters.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(pool, "_fast_scatter", counted)

    def run():
        ws, xs, bs = kp.Param(w), kp.Param(x), kp.Param(b)
        y = kp.ops.conv_relu_pool(ws, xs, bs)
        y.backward(gy)
        return y.value, ws.grad, xs.grad, bs.grad

    with threads(n_threads), kernels(True):
        monkeypatch.setattr(kp.parallel, "TIMED", False)  # split by size alone: both runs cut alike
        monkeypatch.setattr(kp.parallel, "MIN_ELEMENTS", 1)
        monkeypatch.setattr(wg, "SPLIT_VALUES", 1)
        fused = run()
        assert scatters == []
        monkeypatch.setattr(conv_pool, "_winograd_grads_from_pooled", lambda *args: None)
        apart = run()
        assert scatters == [1]
    for f, a in zip(fused, apart):
        np.testing.assert_array_equal(f, a)
    assert np.abs(fused[2]).max() > 0 and np.abs(fused[1]).max() > 0


@pytest.mark.parametrize(
    "what",
    ["float64", "stride", "dilation", "groups", "few channels", "7x7", "3-D", "small output", "switched off"],
)
def test_convolutions_it_does_not_take(what, calls):
    rng = np.random.default_rng(3)
    kw = {}
    dtype, cin, cout, k, size, nd = np.float32, 16, 16, 5, 12, 2
    if what == "float64":
        dtype = np.float64
    elif what == "stride":
        kw["stride"] = 2
    elif what == "dilation":
        kw["dilation"] = 2
        size = 16
    elif what == "groups":
        kw["groups"] = 2
    elif what == "few channels":
        cin = 1
    elif what == "7x7":
        k, size = 7, 14
    elif what == "3-D":
        nd = 3
    elif what == "small output":
        k, size = 3, 4  # a 2x2 output: one 6x6 tile makes more products than the direct way
    x = rng.standard_normal((2, cin, *(size,) * nd)).astype(dtype)
    w = rng.standard_normal((cout, cin // kw.get("groups", 1), *(k,) * nd)).astype(dtype)
    with winograd(what != "switched off"):
        wt, xt = kp.Param(w), kp.Param(x)
        y = kp.conv4(wt, xt, **kw)
        y.sum().backward()
    assert calls == NONE


def test_deconv4_takes_it_as_the_adjoint(calls):
    rng = np.random.default_rng(4)
    w = rng.standard_normal((16, 24, 5, 5)).astype(np.float32)  # (C_x, C_out, k, k)
    x = rng.standard_normal((3, 16, 10, 10)).astype(np.float32)
    y = kp.deconv4(w, x, padding=2, mode=1)
    assert calls["conv_transpose"] == 1
    want = conv_transpose_reference(w.astype(np.float64), x.astype(np.float64), (2, 2), (1, 1), (1, 1), 1, (10, 10), 1)
    assert _scaled_error(y, want) < 2e-5


def test_an_empty_batch():
    w = np.ones((16, 16, 5, 5), np.float32)
    wt, xt = kp.Param(w), kp.Param(np.zeros((0, 16, 12, 12), np.float32))
    y = kp.conv4(wt, xt)
    assert y.shape == (0, 16, 8, 8)
    y.sum().backward()
    np.testing.assert_array_equal(wt.grad, np.zeros_like(w))
    assert xt.grad.shape == (0, 16, 12, 12)


def test_non_finite_input_spreads_over_its_tile_only():
    """An inf reaches every output of the 4x4 tiles whose input windows hold it, as NaN or inf; the
    tiles that never read it stay finite and correct."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 16, 20, 20)).astype(np.float32)
    w = rng.standard_normal((16, 16, 5, 5)).astype(np.float32)
    x[0, 3, 2, 2] = np.inf  # read only by the first tile row and column (inputs 0..7)
    y = kp.conv4(w, x, mode=1)
    assert not np.isfinite(y[0, :, 0:4, 0:4]).any()
    clean = y[0, :, 4:, 4:]
    assert np.isfinite(clean).all()
    want = conv_reference(w.astype(np.float64), x.astype(np.float64), (0, 0), (1, 1), (1, 1), 1, 1)[0, :, 4:, 4:]
    assert _scaled_error(clean, want) < 2e-5


def test_the_benchmark_prints_every_layer_with_its_error():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "benchmarks" / "winograd.py"
    done = subprocess.run([sys.executable, str(script), "--rounds", "1"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line.split("|")[1:-1] for line in done.stdout.splitlines() if line.startswith("| LeNet") or
            line.startswith("| ResNet")]
    assert [r[0].strip() for r in rows] == ["LeNet conv 2", "ResNet-20 16ch", "ResNet-20 32ch", "ResNet-20 64ch"]
    assert [r[7].strip() for r in rows] == ["yes", "yes", "yes", "no"]
    for r in rows:
        assert all(float(v) > 0 for v in r[1:7])
        assert abs(float(r[3]) - float(r[1]) / float(r[2])) < 0.01 + 0.01 * float(r[3])  # (rounded figures)
        assert abs(float(r[6]) - float(r[4]) / float(r[5])) < 0.01 + 0.01 * float(r[6])
        assert float(r[8]) < 5e-5


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 3), cin=st.integers(1, 5), cout=st.integers(1, 5), h=st.integers(3, 19), w_=st.integers(3, 19),
       r=st.sampled_from([3, 5]), pad=st.integers(0, 3), flip=st.booleans(), chunk=st.sampled_from([1, 1 << 20]),
       seed=st.integers(0, 2**16))
def test_any_geometry_in_float64_equals_the_direct_definitions(n, cin, cout, h, w_, r, pad, flip, chunk, seed):
    """Sizes, paddings and kernels drawn at random (the channel and tiling thresholds bypassed: the
    algebra must hold for every geometry, tiles past every edge included)."""
    if h + 2 * pad < r or w_ + 2 * pad < r:
        return
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, cin, h, w_))
    w = rng.standard_normal((cout, cin, r, r))
    geom = kc.ConvGeometry((pad, pad), (1, 1), (1, 1), 1, flip)
    out = geom.output_size((h, w_), (r, r))
    plan = wg.Plan(r, (pad, pad), out, np.float64)
    mode = 0 if flip else 1
    prev = wg.CHUNK_BYTES
    wg.CHUNK_BYTES = chunk
    try:
        rows = np.empty((n * out[0] * out[1], cout))
        wg.conv_rows(w, cl(x), plan, flip, rows)
        gy = rng.standard_normal((n, cout, *out))
        dx = np.empty((n, h, w_, cin))
        wg.conv_transpose(w, cl(gy), plan, flip, dx)
        dw = wg.filter_grad(cl(x), cl(gy), plan, flip)
    finally:
        wg.CHUNK_BYTES = prev
    args = ((pad, pad), (1, 1), (1, 1), 1)
    np.testing.assert_allclose(np.moveaxis(rows.reshape(n, *out, cout), -1, 1), conv_reference(w, x, *args, mode),
                               rtol=0, atol=1e-10)
    np.testing.assert_allclose(np.moveaxis(dx, -1, 1), conv_transpose_reference(w, gy, *args, (h, w_), mode),
                               rtol=0, atol=1e-10)
    np.testing.assert_allclose(dw, conv_filter_grad_reference(x, gy, *args, (r, r), mode), rtol=0, atol=1e-9)
