"""The compiled Winograd transforms (knetpy.ops.fast.winograd) against the NumPy transforms they
replace, and the one-pass backward (both gradients, the forward pass's tiles used again) against the
two separate gradients.

The compiled transforms sum the same products as the reference's small GEMMs, some of them factored
(sums and differences of pairs of rows), so they agree to float rounding.
"""

import numpy as np
import pytest
from fast_switch import kernels, threads

import knetpy as kp
from knetpy.ops import fast
from knetpy.ops import winograd as wg

pytestmark = pytest.mark.skipif(not fast.available(), reason="numba (the [fast] extra) is not installed")

GEOMETRIES = [  # (N, C_in, C_out, H, W, r, padding)
    (3, 20, 50, 12, 12, 5, 0),  # LeNet's second layer: exact tiling
    (2, 9, 10, 17, 15, 5, 2),  # padding, tiles past the right and bottom edges
    (2, 8, 12, 13, 11, 3, 1),  # 3x3 kernels: 6x6 tiles
    (1, 3, 5, 7, 9, 3, 3),  # padding wider than the kernel's reach: tiles that read no input at all
    (5, 1, 1, 5, 5, 5, 0),  # one tile per sample, one channel
]


@pytest.fixture(autouse=True)
def one_thread():
    with threads(1):
        yield


def _plan(case, dtype):
    n, cin, cout, h, w, r, pad = case
    return wg.Plan(r, (pad, pad), (h + 2 * pad - r + 1, w + 2 * pad - r + 1), dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", GEOMETRIES)
def test_each_transform_equals_the_numpy_reference(case, dtype):
    from knetpy.ops.fast import winograd as fw

    n, cin, cout, h, w, r, pad = case
    rng = np.random.default_rng(sum(case))
    p = _plan(case, dtype)
    f = wg._coefficients(r, np.dtype(dtype).name)
    t = n * p.tiles
    bound = 1e-14 if dtype == np.float64 else 1e-6  # of the largest value: float rounding

    def close(got, want):
        assert np.abs(got - want).max() <= bound * np.abs(want).max()
    x = rng.standard_normal((n, h, w, cin)).astype(dtype)
    for lo, hi in [(0, n), (n - 1, n)]:  # all samples, and a run that starts inside the batch
        want = np.empty((64, (hi - lo) * p.tiles, cin), dtype)
        got = np.full_like(want, np.nan)
        wg._input_tiles(x, p, lo, hi, want.reshape(8, 8, -1))
        fw.input_tiles(x, f[0], lo, hi, p.th, p.tw, p.m, p.ph, p.pw, got)
        close(got, want)
    mm = rng.standard_normal((64, t, cout)).astype(dtype)
    want = np.empty((n, p.oh, p.ow, cout), dtype)
    got = np.full_like(want, np.nan)
    wg._output_tiles(mm, p, n, want)
    fw.output_tiles(mm, f[1], p.m, p.th, p.tw, got)
    close(got, want)
    gy = rng.standard_normal((n, p.oh, p.ow, cout)).astype(dtype)
    want = np.empty((64, t, cout), dtype)
    got = np.full_like(want, np.nan)
    wg._output_tiles_adjoint(gy, p, want.reshape(8, 8, -1))
    fw.output_tiles_adjoint(gy, f[2], p.m, p.th, p.tw, got)
    close(got, want)
    dv = rng.standard_normal((64, t, cin)).astype(dtype)
    want = np.empty((n, h, w, cin), dtype)
    got = np.full_like(want, np.nan)
    wg._input_tiles_adjoint(dv.reshape(8, 8, -1), p, want)
    fw.input_tiles_adjoint(dv, f[3], p.th, p.tw, p.m, p.ph, p.pw, got)
    close(got, want)


def test_the_input_gradient_does_not_depend_on_where_the_runs_of_samples_begin():
    """Overlapping tiles add into the same inputs: they are added tile by tile, in the tiles' order,
    so one call over the batch and one call per sample give the same bits."""
    from knetpy.ops.fast import winograd as fw

    rng = np.random.default_rng(7)
    n, c = 9, 16
    p = wg.Plan(3, (1, 1), (14, 14), np.float32)
    dv = rng.standard_normal((64, n * p.tiles, c)).astype(np.float32)
    whole = np.empty((n, 14, 14, c), np.float32)
    b_adj = wg._coefficients(3, "float32")[3]
    fw.input_tiles_adjoint(dv, b_adj, p.th, p.tw, p.m, p.ph, p.pw, whole)
    apart = np.empty_like(whole)
    for b in range(n):
        own = np.ascontiguousarray(dv[:, b * p.tiles : (b + 1) * p.tiles])
        fw.input_tiles_adjoint(own, b_adj, p.th, p.tw, p.m, p.ph, p.pw, apart[b : b + 1])
    np.testing.assert_array_equal(apart, whole)


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("case", GEOMETRIES[:3])
def test_one_pass_backward_equals_the_two_gradients_apart(case, compiled):
    n, cin, cout, h, w_, r, pad = case
    rng = np.random.default_rng(11)
    xl = rng.standard_normal((n, h, w_, cin))
    w = rng.standard_normal((cout, cin, r, r))
    p = _plan(case, np.float64)
    gyl = rng.standard_normal((n, p.oh, p.ow, cout))
    with kernels(compiled):
        y = np.empty((n * p.oh * p.ow, cout))
        tiles = wg.conv_rows(w, xl, p, False, y, keep=True)
        assert sorted(tiles.made) == [(0, n)]
        dx_apart = np.empty_like(xl)
        wg.conv_transpose(w, gyl, p, False, dx_apart)
        dw_apart = wg.filter_grad(xl, gyl, p, False)
        dx = np.full_like(xl, np.nan)
        dw = wg.backward(w, xl, gyl, p, False, dx, tiles)
        np.testing.assert_array_equal(dx, dx_apart)
        np.testing.assert_array_equal(dw, dw_apart)  # the kept tiles are the ones made again


def _counting_tiles_in(monkeypatch):
    calls = []
    real = wg._tiles_in

    def counted(kernels, xl, plan, a, b, v):
        calls.append((a, b))
        return real(kernels, xl, plan, a, b, v)

    monkeypatch.setattr(wg, "_tiles_in", counted)
    return calls


def _small_conv(seed):
    rng = np.random.default_rng(seed)
    n, cin, cout = 7, 8, 9
    xl = rng.standard_normal((n, 12, 12, cin))
    w = rng.standard_normal((cout, cin, 5, 5))
    p = wg.Plan(5, (0, 0), (8, 8), np.float64)
    gyl = rng.standard_normal((n, 8, 8, cout))
    return n, cout, xl, w, p, gyl


def test_the_backward_pass_follows_the_forward_pass_s_runs(monkeypatch):
    """The passes cut their runs of samples differently (one split over threads, the other not; here
    the chunk size changes in between): the backward pass takes the forward pass's runs and its kept
    tiles instead of making them again under its own runs."""
    n, cout, xl, w, p, gyl = _small_conv(12)
    want = wg.filter_grad(xl, gyl, p, False)
    step = wg.ALPHA * wg.ALPHA * p.tiles * (8 + cout) * 4
    monkeypatch.setattr(wg, "CHUNK_BYTES", 2 * step)  # the forward pass: two samples a run
    tiles = wg.conv_rows(w, xl, p, False, np.empty((n * 64, cout)), keep=True)
    assert sorted(tiles.made) == [(0, 2), (2, 4), (4, 6), (6, 7)]
    monkeypatch.setattr(wg, "CHUNK_BYTES", 1 << 30)  # its own runs would be one of all 7 samples
    calls = _counting_tiles_in(monkeypatch)
    dx = np.full_like(xl, np.nan)
    got = wg.backward(w, xl, gyl, p, False, dx, tiles)
    assert calls == []  # every tile read from the forward pass
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    ref_dx = np.empty_like(xl)
    wg.conv_transpose(w, gyl, p, False, ref_dx)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-12, atol=1e-12)


def test_parts_that_a_forward_run_straddles_read_their_share_of_its_kept_tiles(monkeypatch):
    """The forward pass whole, the backward pass split: each part of the backward pass reads its
    samples' tiles out of the forward pass's one run (a view, laid out as that run made them) and makes
    none itself; the filter gradient is the same."""
    n, cout, xl, w, p, gyl = _small_conv(13)
    tiles = wg.conv_rows(w, xl, p, False, np.empty((n * 64, cout)), keep=True)
    assert sorted(tiles.made) == [(0, n)]
    want = wg.filter_grad(xl, gyl, p, False)
    calls = _counting_tiles_in(monkeypatch)
    runs = [list(wg._runs_like(tiles, p, 8 + cout, lo, hi)) for lo, hi in ((0, 3), (3, n))]
    assert runs == [[(0, 3)], [(3, n)]]
    whole = tiles.get(0, n)
    for a, b in ((0, 3), (3, n), (5, 7)):
        np.testing.assert_array_equal(tiles.get(a, b), whole[:, a * p.tiles : b * p.tiles])
    assert tiles.get(0, n + 1) is None

    def split(part, plan, channels, count, kernels):  # the backward pass's parts as two threads cut them
        part(0, 3)
        part(3, count)

    monkeypatch.setattr(wg, "_over_samples", split)
    got = wg.backward(w, xl, gyl, p, False, None, tiles)
    assert calls == []
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_a_part_over_two_forward_runs_and_a_gap_reads_both_and_makes_the_gap(monkeypatch):
    """Forward runs (0, 2) and (4, 6) kept, the backward pass one part 1..6: it reads 1..2 and 4..6 from
    them and makes the tiles of 2..4 itself."""
    n, cout, xl, w, p, gyl = _small_conv(12)
    step = wg.ALPHA * wg.ALPHA * p.tiles * (8 + cout) * 4
    monkeypatch.setattr(wg, "CHUNK_BYTES", 2 * step)  # the forward pass: two samples a run
    full = wg.conv_rows(w, xl, p, False, np.empty((n * 64, cout)), keep=True)
    full.made -= {(2, 4), (6, 7)}  # as if those runs had not been kept
    assert list(wg._runs_like(full, p, 8 + cout, 1, 6)) == [(1, 2), (2, 4), (4, 6)]
    want = wg.filter_grad(xl[1:6], gyl[1:6], p, False)
    calls = _counting_tiles_in(monkeypatch)

    def one_part(part, plan, channels, count, kernels):
        part(1, 6)

    monkeypatch.setattr(wg, "_over_samples", one_part)
    got = wg.backward(w, xl, gyl, p, False, None, full)
    assert sorted(calls) == [(2, 4)]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def _train_conv(x, w, gy, x_grad=True, w_grad=True):
    xt = kp.Param(x) if x_grad else x
    wt = kp.Param(w) if w_grad else w
    y = kp.conv4(wt, xt)
    y.backward(gy)
    return y.value, (xt.grad if x_grad else None), (wt.grad if w_grad else None)


@pytest.mark.parametrize("x_grad,w_grad", [(True, True), (True, False), (False, True)])
def test_gradients_of_either_argument_alone_match_the_direct_convolution(x_grad, w_grad):
    """The input gradient made beside the filter gradient is handed over only to this node's input:
    with a frozen filter, or an input that needs none, each gradient is still right."""
    from fast_switch import winograd_convolutions

    rng = np.random.default_rng(13)
    x = rng.standard_normal((6, 16, 12, 12)).astype(np.float32)
    w = (rng.standard_normal((24, 16, 5, 5)) / 20).astype(np.float32)
    gy = rng.standard_normal((6, 24, 8, 8)).astype(np.float32)
    got = _train_conv(x, w, gy, x_grad, w_grad)
    with winograd_convolutions(False):
        want = _train_conv(x, w, gy, x_grad, w_grad)
    for g, d in zip(got, want):
        assert (g is None) == (d is None)
        if g is not None:
            assert np.abs(g - d).max() / np.abs(d).max() < 2e-5


def test_a_convolution_used_twice_gets_both_input_gradients():
    """Two uses of one conv output: each backward pass of the node hands its own input gradient on."""
    rng = np.random.default_rng(14)
    x = rng.standard_normal((4, 16, 12, 12)).astype(np.float32)
    w = (rng.standard_normal((16, 16, 5, 5)) / 20).astype(np.float32)
    xt, wt = kp.Param(x), kp.Param(w)
    y = kp.conv4(wt, xt)
    (y * y).sum().backward(retain_graph=True)
    first = xt.grad.copy()
    xt.grad = None
    wt.grad = None
    (y * y).sum().backward()
    np.testing.assert_array_equal(xt.grad, first)


@pytest.mark.parametrize("r", [3, 5])
def test_each_codelet_applied_to_the_unit_vectors_gives_its_matrix_exactly(r):
    """Column u of a transform is its codelet applied to the u-th unit vector: the sums, differences and
    halves the codelets use instead of the matrix are exact in float64. Bᵀ and A use pairs of rows (half
    the products of the dense matrix or fewer), Aᵀ and B pairs of columns."""
    from knetpy.ops.fast import winograd_codegen as gen
    from knetpy.ops.fast import winograd_codelets as cl

    m = 9 - r
    k = fw_coefficients(np.float64)
    for name, which in (("transform_bt", "bt"), (f"transform_at{m}", "at"), (f"transform_a{m}", "a"),
                        ("transform_b", "b")):
        mat = gen.matrix(r, which)
        n_out, n_in = mat.shape
        src = np.eye(n_in).reshape(n_in, 1, n_in)  # src[u, 0, q]: unit vector q
        dst = np.full((n_out, 1, n_in), np.nan)
        getattr(cl, name)(k[name], src, 0, 0, dst, 0, 0, n_in)
        np.testing.assert_array_equal(dst[:, 0, :], mat)
        text, _ = gen.codelet(name, mat)
        assert text.count(" * ") < 0.6 * np.count_nonzero(mat)  # the pairs save products


def fw_coefficients(dtype):
    from knetpy.ops.fast import winograd as fw

    return fw.coefficients(dtype)


def test_the_codelets_file_is_what_the_generator_writes():
    """winograd_codelets.py is generated; after a change to the generator or the matrices, run
    python -m knetpy.ops.fast.winograd_codegen."""
    from knetpy.ops.fast import winograd_codegen as gen

    with open(gen.TARGET) as f:
        assert f.read() == gen.source()


def test_tiles_over_keep_bytes_are_not_kept_and_the_gradients_stay_right(monkeypatch):
    """A layer whose tiles would take more than KEEP_BYTES keeps none (peak memory); its backward
    pass is still the one pass for both gradients, and makes them again, with the same result."""
    rng = np.random.default_rng(15)
    x = rng.standard_normal((4, 16, 12, 12)).astype(np.float32)
    w = (rng.standard_normal((16, 16, 5, 5)) / 20).astype(np.float32)
    gy = rng.standard_normal((4, 16, 8, 8)).astype(np.float32)
    kept = []
    real = wg.backward
    monkeypatch.setattr(wg, "backward", lambda *a: (kept.append(a[6].flat), real(*a))[1])
    want = _train_conv(x, w, gy)
    need = 4 * 4 * 64 * 16 * 4  # samples x tiles x 64 x channels x 4 bytes
    monkeypatch.setattr(wg, "KEEP_BYTES", need - 1)
    got = _train_conv(x, w, gy)
    assert kept[0] is not None and kept[1] is None
    for g, d in zip(got, want):
        np.testing.assert_array_equal(g, d)


def test_warm_up_loads_the_transforms_only_when_asked():
    from knetpy.ops.fast import winograd as fw

    assert fast.warm_up(winograd=True) >= 0.0
    assert all(k.signatures for k in (fw.input_tiles, fw.output_tiles, fw.output_tiles_adjoint,
                                       fw.input_tiles_adjoint))
