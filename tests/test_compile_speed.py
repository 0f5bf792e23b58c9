"""kp.compile's faster replay: a cheaper call, the seed and shape-only gradients made once, nll and bias sums
lowered, BLAS on one thread for small GEMMs. Each stays bit for bit equal to eager mode."""

import importlib

import numpy as np
import pytest
from compile_cases import assert_same_bits
from fast_switch import kernels as fast_kernels

import knetpy as kp
from knetpy import parallel

compile_module = importlib.import_module("knetpy.compile")


def _program(step):
    """The replayed program of the signature called last."""
    return step._local.fast[1]


def _uses(step, fn):
    return any(v is fn for v in _program(step).env.values())


def _linreg(w, x, y):
    return kp.mean(kp.square(x @ w[0] + w[1] - y))


def _mlp(w, x, y):
    h = kp.relu(x @ w[0] + w[1])
    return kp.nll(h @ w[2] + w[3], y)


def _data(n=40, d=13, seed=0):
    g = np.random.default_rng(seed)
    return g.standard_normal((n, d)).astype("f"), g.standard_normal((n, 1)).astype("f")


def _replaying_linreg():
    """The compiled gradient of ``_linreg`` called three times on zero weights (it traced, then replayed),
    and its arguments: step, w, x, y."""
    x, y = _data()
    w = [np.zeros((13, 1), "f"), np.zeros(1, "f")]
    step = kp.compile(kp.grad(_linreg))
    for _ in range(3):
        step(w, x, y)
    return step, w, x, y


def test_fast_call_path_still_retraces_on_every_change():
    step, w, x, y = _replaying_linreg()
    assert step._local.fast is not None  # the third call replayed and left its argument check
    traces = step.traces
    assert_same_bits(step(w, x[:20], y[:20]), kp.grad(_linreg)(w, x[:20], y[:20]))  # a shape
    wd = [a.astype("d") for a in w]
    assert_same_bits(step(wd, x, y), kp.grad(_linreg)(wd, x, y))  # a dtype
    assert_same_bits(step((w[0], w[1]), x, y), kp.grad(_linreg)((w[0], w[1]), x, y))  # a tuple, not a list
    assert step.traces == traces + 3
    with kp.no_grad():  # a mode the key holds: recording off
        step(w, x, y)
    assert step.traces == traces + 4
    longer = w + [np.zeros(1, "f")]
    assert_same_bits(step(longer, x, y), kp.grad(_linreg)(longer, x, y))  # another list length
    assert step.traces == traces + 5


def test_the_forward_pass_is_left_out_when_only_the_seed_reads_the_loss():
    step, w, x, y = _replaying_linreg()
    source = _program(step).source
    assert "ones_like" not in source and "full" not in source  # the seed and mean's gradient: made once
    assert source.count(" @ ") == 2 and ".sum()" not in source  # x @ w and x.T @ g; no loss computed
    both = kp.compile(kp.value_and_grad(_linreg))
    g = np.random.default_rng(3)
    for _ in range(4):
        w = [g.standard_normal((13, 1)).astype("f"), g.standard_normal(1).astype("f")]
        # the loss is still computed when asked
        assert_same_bits(both(w, x, y), kp.value_and_grad(_linreg)(w, x, y))
    assert both.replays == 2


def test_gradients_made_once_are_never_handed_out_twice():
    step = kp.compile(kp.grad(lambda w: kp.mean(w) + kp.sum(w)))  # both gradients: constants of the trace
    w = np.ones(4, "f")
    outs = [step(w) for _ in range(4)]
    outs[-1] += 100
    assert not np.shares_memory(outs[-1], outs[-2])
    assert_same_bits(step(w), kp.grad(lambda w: kp.mean(w) + kp.sum(w))(w))
    assert step.replays == 3


@pytest.mark.parametrize("shape", [(40, 1), (40, 7), (100, 10), (3, 64), (1, 5)])
def test_bias_gradient_sums_match_eager(shape):
    g = np.random.default_rng(4)
    n, c = shape
    x = g.standard_normal((n, 6)).astype("f")
    w = [g.standard_normal((6, c)).astype("f"), g.standard_normal(c).astype("f")]

    def loss(w, x):
        return kp.sum(kp.tanh(x @ w[0] + w[1]))

    step = kp.compile(kp.grad(loss))
    for i in range(4):
        xi = x + i
        assert_same_bits(step(w, xi), kp.grad(loss)(w, xi))
    assert step.replays == 2


def test_bias_gradient_of_a_transposed_matrix_takes_sum_to_itself():
    g = np.random.default_rng(5)
    w = [g.standard_normal((8, 30)).astype("f"), g.standard_normal(8).astype("f")]

    def loss(w, x):  # (30, 8) product viewed transposed: not C-contiguous when summed
        return kp.sum(kp.tanh(kp.transpose(w[0] @ x) + w[1]))

    step = kp.compile(kp.grad(loss))
    for _i in range(4):
        x = g.standard_normal((30, 30)).astype("f")
        assert_same_bits(step(w, x), kp.grad(loss)(w, x))


@pytest.mark.parametrize("dtype", ["f", "d"])
@pytest.mark.parametrize("average", [True, False])
@pytest.mark.parametrize("kernels", [False, True] if kp.ops.fast.available() else [False])
def test_nll_lowered_matches_eager(dtype, average, kernels):
    with fast_kernels(kernels):
        _nll_lowered_case(dtype, average, kernels)


def _nll_lowered_case(dtype, average, kernels):
    g = np.random.default_rng(6)
    w = [(g.standard_normal((20, 16)) * 0.3).astype(dtype), np.zeros(16, dtype),
         (g.standard_normal((16, 7)) * 0.3).astype(dtype), np.zeros(7, dtype)]

    def loss(w, x, y):
        h = kp.relu(x @ w[0] + w[1])
        return kp.nll(h @ w[2] + w[3], y, average=average)

    both, eager = kp.compile(kp.value_and_grad(loss)), kp.value_and_grad(loss)
    for i in range(6):
        x = (g.standard_normal((33, 20)) * (1 + i)).astype(dtype)
        y = g.integers(0, 7, 33).astype(np.int64 if i < 3 else np.int32)
        assert_same_bits(both(w, x, y), eager(w, x, y))
    assert both.replays == 2
    # the lowered path is the one tested: NumPy's, or the compiled kernels' when they are on
    lowered = compile_module._nll_grad_fast if kernels else compile_module._nll_grad
    assert _uses(both, lowered)
    assert _uses(both, compile_module._nll_rows_fast) is kernels


def test_nll_with_infinite_scores_matches_eager():
    x = np.array([[0.0, -np.inf, 1.0], [2.0, 0.5, -np.inf]], "f")
    y = np.array([0, 1])
    w = np.ones(3, "f")
    step = kp.compile(kp.value_and_grad(lambda w, x, y: kp.nll(x * w, y)))
    with np.errstate(invalid="ignore"):  # (-inf * 0 in the backward pass, eager and replayed alike)
        for _ in range(4):
            assert_same_bits(step(w, x, y), kp.value_and_grad(lambda w, x, y: kp.nll(x * w, y))(w, x, y))


def test_float16_nll_keeps_the_ops_own_path():
    g = np.random.default_rng(7)
    x = g.standard_normal((8, 5)).astype(np.float16)
    y = g.integers(0, 5, 8)
    w = np.ones(5, np.float16)
    step = kp.compile(kp.value_and_grad(lambda w, x, y: kp.nll(x * w, y)))
    for _ in range(4):
        assert_same_bits(step(w, x, y), kp.value_and_grad(lambda w, x, y: kp.nll(x * w, y))(w, x, y))
    assert not _uses(step, compile_module._nll_grad)


def _mlp_weights(g, d=784, h=64, c=10):
    return [(g.standard_normal((d, h)) * 0.05).astype("f"), np.zeros(h, "f"),
            (g.standard_normal((h, c)) * 0.1).astype("f"), np.zeros(c, "f")]


def test_mid_size_gemms_replay_bit_for_bit(monkeypatch):
    # 10 MFLOP products: BLAS would use its threads; eager and replay both hold it at one (automatic threads)
    monkeypatch.setattr(parallel, "_blas_env", False)
    g = np.random.default_rng(8)
    w = _mlp_weights(g)
    step = kp.compile(kp.grad(_mlp))
    for _ in range(4):
        x = g.standard_normal((100, 784)).astype("f")
        y = g.integers(0, 10, 100)
        assert_same_bits(step(w, x, y), kp.grad(_mlp)(w, x, y))
    assert step.replays == 2
    held = parallel._auto and parallel._threads > 1
    assert _uses(step, parallel.matmul_one_blas_thread) == held


def test_parallel_matmul_holds_blas_at_one_thread_for_mid_size_gemms(monkeypatch):
    pytest.importorskip("threadpoolctl", reason="BLAS threads are set with threadpoolctl")
    monkeypatch.setattr(parallel, "_auto", True)
    monkeypatch.setattr(parallel, "_threads", 2)
    monkeypatch.setattr(parallel, "_blas_env", False)
    calls = []
    hold = parallel._hold_blas
    monkeypatch.setattr(parallel, "_hold_blas", lambda: calls.append(1) or hold())
    before = [c.get_num_threads() for c in parallel._blas_controllers()]
    g = np.random.default_rng(10)
    a, b = g.standard_normal((100, 784)).astype("f"), g.standard_normal((784, 64)).astype("f")
    out = parallel.matmul(a, b)
    assert len(calls) == 1 and out.shape == (100, 64)
    np.testing.assert_allclose(out, a @ b, rtol=1e-5, atol=1e-4)
    assert [c.get_num_threads() for c in parallel._blas_controllers()] == before  # given back
    parallel.matmul(a[:10, :13], b[:13, :1])  # tiny: OpenBLAS runs it on one thread anyway
    assert len(calls) == 1
    assert not parallel.one_blas_thread(parallel.BLAS_MIN_FLOPS)  # a GFLOP or more: BLAS's own threads
    monkeypatch.setattr(parallel, "_blas_env", True)  # OPENBLAS_NUM_THREADS set: the user's choice stands
    parallel.matmul(a, b)
    assert len(calls) == 1


def test_switching_automatic_threads_off_traces_again():
    step, w, x, y = _replaying_linreg()
    threads, auto = parallel.get_num_threads(), parallel.is_auto()
    traces = step.traces
    try:
        parallel.set_num_threads(threads if not auto else "auto")
        step(w, x, y)
        assert step.traces == traces
        parallel.set_num_threads(2 if auto else "auto")
        step(w, x, y)
        assert step.traces == traces + (parallel.is_auto() != auto or parallel._threads != threads)
    finally:
        parallel.set_num_threads("auto" if auto else threads)


def test_fit_with_dense_layers_lowers_affine_and_equals_eager(monkeypatch):
    from knetpy import blas_choice, training

    # 784 x 64 products: fit times one BLAS thread against BLAS's own count at each epoch, and two fits
    # that choose differently differ at rounding (knetpy.blas_choice); both fits here take one thread
    monkeypatch.setattr(blas_choice, "decide", lambda one, many, threads: 1)

    def run(compiled):
        kp.set_seed(3)
        g = np.random.default_rng(11)
        x, y = g.standard_normal((300, 784)).astype("f"), g.integers(0, 10, 300)
        model = kp.Sequential([kp.layers.Dense(64, activation="relu"), kp.layers.Dense(10)])
        model.compile(loss="cross_entropy", optimizer=kp.optim.SGD(lr=0.1, momentum=0.9), metrics=["accuracy"])
        hist = model.fit(x, y, epochs=2, batch_size=100, verbose=0, compile=compiled)
        return hist.history, [p.value.copy() for p in model.params.values()], model

    eager, compiled = run(False), run(True)
    assert eager[0] == compiled[0]
    assert_same_bits(eager[1], compiled[1])
    step = training.compiled_step(compiled[2])
    assert step.replays == 4
    assert _uses(step, compile_module._affine) or _uses(step, compile_module._affine_one_blas_thread)


@pytest.mark.parametrize("n", [1, 7, 129, 1000, 5000])
def test_nll_helpers_equal_the_ops_own_kernels(n):
    from knetpy.ops.nn import _nll, _nll_vjp

    g = np.random.default_rng(n)
    with fast_kernels(False):  # the NumPy kernels
        for dtype in ("f", "d"):
            _nll_helpers_case(g, n, dtype, _nll, _nll_vjp)


def _nll_helpers_case(g, n, dtype, _nll, _nll_vjp):
    x, y = (g.standard_normal((n, 13)) * 5).astype(dtype), g.integers(0, 13, n)
    loss, lp = _nll.__wrapped__(x, y, axis=1, average=True)
    rows = np.arange(n)
    lp2 = compile_module._logp_rows(x)
    assert_same_bits(lp, lp2)
    assert_same_bits(np.asarray(loss), np.asarray(compile_module._nll_loss(lp2, rows, y, True)))
    seed = np.ones((), dtype)
    assert_same_bits(_nll_vjp(seed, loss, lp, x, y, axis=1, average=True),
                     compile_module._nll_grad(lp2, rows, y, seed / n))
