"""The compiled LSTM gate kernels (knetpy.ops.fast.lstm) against the NumPy path they replace."""

import numpy as np
import pytest

pytest.importorskip("numba")

import knetpy as kp  # noqa: E402
from knetpy.ops import fast, lstm_fused  # noqa: E402
from knetpy.ops.fast import lstm as fast_lstm  # noqa: E402
from knetpy.ops.rnn import rnn_init, rnnforw  # noqa: E402

EPS = {np.float32: 2e-6, np.float64: 1e-14}


def assert_close(a, b, dtype, name=""):
    """Equal up to rounding: errors relative to the array's scale (gradients are long sums, so an
    element near zero carries the rounding of its large terms)."""
    eps = EPS[dtype]
    np.testing.assert_allclose(a, b, rtol=10 * eps, atol=eps * max(1.0, float(np.abs(b).max())), err_msg=name)


@pytest.fixture(autouse=True)
def restore_fast():
    prev = fast.enabled()
    yield
    fast.set_fast(prev)


def inputs(dtype, N, T, F, H, states, bias, seed=0):
    r = np.random.default_rng(seed)

    def a(*shape, scale=1.0):
        return (r.standard_normal(shape) * scale).astype(dtype)

    # weights large enough that some gates saturate and others sit mid-range
    w_ih, w_hh = a(F, 4 * H, scale=0.8), a(H, 4 * H, scale=0.8)
    b_ih, b_hh = (a(4 * H), a(4 * H)) if bias else (None, None)
    h0, c0 = (a(N, H), a(N, H, scale=2.0)) if states else (None, None)
    return a(N, T, F), w_ih, w_hh, b_ih, b_hh, h0, c0


def forward_backward(on, args, reverse, seed=1):
    """The fused kernel's result and every gradient, with the compiled kernels on or off."""
    fast.set_fast(on)
    out, saved = lstm_fused._lstm_forward(*args, reverse=reverse)
    g = np.random.default_rng(seed).standard_normal(out.shape).astype(out.dtype)
    grads = lstm_fused._lstm_backward(g, saved, *args, reverse=reverse)
    return [out.copy()] + [None if d is None else np.array(d) for d in grads]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("N,T,F,H", [(1, 1, 1, 1), (7, 5, 3, 9), (37, 13, 6, 17)])
@pytest.mark.parametrize("states", [False, True], ids=["zero-state", "h0-c0"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_kernels_match_numpy(dtype, N, T, F, H, states, reverse):
    args = inputs(dtype, N, T, F, H, states, bias=True)
    got = forward_backward(True, args, reverse)
    want = forward_backward(False, args, reverse)
    names = ["result", "dx", "dw_ih", "dw_hh", "db_ih", "db_hh", "dh0", "dc0"]
    for name, a, b in zip(names, got, want):
        assert (a is None) == (b is None), name
        if a is not None:
            assert a.dtype == dtype, name
            assert_close(a, b, dtype, name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_kernels_match_numpy_without_bias(dtype):
    args = inputs(dtype, 5, 4, 3, 6, states=True, bias=False)
    for a, b in zip(forward_backward(True, args, False), forward_backward(False, args, False)):
        if b is not None:
            assert_close(a, b, dtype)


def count_calls(monkeypatch):
    calls = {"forward_step": 0, "backward_step": 0}
    for name in calls:
        kernel = getattr(fast_lstm, name)

        def counted(*args, _name=name, _kernel=kernel):
            calls[_name] += 1
            return _kernel(*args)

        monkeypatch.setattr(fast_lstm, name, counted)
    return calls


def lstm_grads(x, weights, mask=None):
    def loss(x, weights):
        y, h, c = rnnforw(weights, x, mask=mask)
        return (y * y).sum() + (h * c).sum()

    return kp.grad(loss, argnums=(0, 1))(x, weights)


def flat(tree):
    if isinstance(tree, (list, tuple)):
        return [a for t in tree for a in flat(t)]
    return [np.asarray(getattr(tree, "value", tree))]


def test_public_op_takes_the_kernels_and_agrees(monkeypatch):
    x = np.random.default_rng(2).standard_normal((6, 8, 5)).astype(np.float32)
    weights = [tuple(p.value for p in rnn_init("lstm", 5, 7)[0])]
    calls = count_calls(monkeypatch)
    fast.set_fast(True)
    got = flat(lstm_grads(x, weights))
    assert calls == {"forward_step": 8, "backward_step": 8}  # one call per step each way
    fast.set_fast(False)
    want = flat(lstm_grads(x, weights))
    assert calls == {"forward_step": 8, "backward_step": 8}  # off: the NumPy path only
    for a, b in zip(got, want):
        assert_close(a, b, np.float32)


def test_masked_batches_stay_on_numpy(monkeypatch):
    x = np.random.default_rng(3).standard_normal((4, 6, 3))
    weights = [tuple(p.value.astype(np.float64) for p in rnn_init("lstm", 3, 5)[0])]
    mask = np.arange(6)[None, :] < np.array([6, 2, 4, 5])[:, None]
    calls = count_calls(monkeypatch)
    fast.set_fast(True)
    got = flat(lstm_grads(x, weights, mask))
    assert calls == {"forward_step": 0, "backward_step": 0}
    fast.set_fast(False)
    for a, b in zip(got, flat(lstm_grads(x, weights, mask))):
        np.testing.assert_array_equal(a, b)


def test_tanh_float32_within_a_few_ulp():
    from numba import njit

    @njit(error_model="numpy")
    def apply(a, out):
        for k in range(a.size):
            out[k] = fast_lstm.tanh(a[k])

    x = np.concatenate([
        np.linspace(-20, 20, 400_001, dtype=np.float32),
        np.float32(1e-5) * np.arange(-100, 101, dtype=np.float32),  # around the small-argument cut
        np.array([0.0, -0.0, 1e-30, -1e-30, 3.9e-4, 4.1e-4, 7.9, 8.0, 1e30, -1e30], dtype=np.float32),
    ])
    got = np.empty_like(x)
    apply(x, got)
    want = np.tanh(x.astype(np.float64))
    ulp = np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)
    assert np.max(np.abs(got - want) / ulp) < 8
    assert np.all(np.abs(got) <= 1)
    nan = np.array([np.nan], dtype=np.float32)
    apply(nan, nan)
    assert np.isnan(nan[0])  # a diverging model must not be hidden
    mirrored = np.empty_like(x)
    apply(-x, mirrored)
    np.testing.assert_array_equal(mirrored, -got)  # odd, exactly
    x64 = x.astype(np.float64)
    got64 = np.empty_like(x64)
    apply(x64, got64)
    np.testing.assert_allclose(got64, np.tanh(x64), rtol=1e-15, atol=0)


def test_layer_training_step_matches_numpy():
    """A small CharLM-shaped step through the layers (embedding, LSTM, dense, nll), both ways."""
    from knetpy.layers import LSTM, Dense, Embedding

    def step(on):
        fast.set_fast(on)
        kp.set_seed(0)
        embed, lstm, out = Embedding(11, 8), LSTM(9, return_sequences=True, return_state=True), Dense(11)
        ids = np.random.default_rng(4).integers(0, 11, (5, 7))
        y, h, c = lstm(embed(ids))
        loss = kp.nll(out(y.reshape(-1, 9)), ids.reshape(-1))
        loss.backward()
        params = embed.parameters() + lstm.parameters() + out.parameters()
        return [float(loss.value)] + [q.grad.copy() for q in params]

    for a, b in zip(step(True), step(False)):
        assert_close(np.asarray(a), np.asarray(b), np.float32)
