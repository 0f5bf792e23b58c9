"""An LSTM fed by an embedding lookup projects the table once: x @ w_ih = (table @ w_ih)[ids]."""

import numpy as np
import pytest

import knetpy as kp
from knetpy.layers import GRU, LSTM, Embedding
from knetpy.ops import fast, rnn
from knetpy.ops.lstm_fused import lstm_seq
from knetpy.ops.rnn_common import unpack

FAST = [False, True] if fast.available() else [False]
EPS = {np.float32: 2e-6, np.float64: 1e-13}


@pytest.fixture(autouse=True)
def restore_fast():
    prev = fast.enabled()
    yield
    fast.set_fast(prev)


def assert_close(a, b, dtype):
    eps = EPS[dtype]
    np.testing.assert_allclose(a, b, rtol=10 * eps, atol=eps * max(1.0, float(np.abs(b).max())))


def count_lookups(monkeypatch, allow=True):
    """Count the lookups rnnforw takes; ``allow=False`` turns them off (the plain path)."""
    taken = []
    orig = rnn._lookup

    def lookup(x):
        found = orig(x) if allow else None
        taken.append(found is not None)
        return found

    monkeypatch.setattr(rnn, "_lookup", lookup)
    return taken


def model_grads(dtype, bidirectional=False, states=False, lengths=None, reuse_x=False, seed=0, V=11, taken=None):
    kp.set_seed(seed)
    embed = Embedding(V, 6)
    lstm = LSTM(5, return_sequences=True, return_state=True, bidirectional=bidirectional)
    embed.w.value = embed.w.value.astype(dtype)
    lstm(np.zeros((1, 1, 6), dtype=dtype))
    for p in lstm.parameters():
        p.value = p.value.astype(dtype)
    if taken is not None:
        taken.clear()  # not the build call
    r = np.random.default_rng(seed + 1)
    ids = r.integers(0, V, (9, 7))
    D = 2 if bidirectional else 1
    state = (r.standard_normal((D, 9, 5)).astype(dtype), r.standard_normal((D, 9, 5)).astype(dtype)) if states else None
    x = embed(ids)
    y, h, c = lstm(x, initial_state=state, lengths=lengths)
    loss = (y * y).sum() + (h * c).sum()
    if reuse_x:  # the looked-up vectors feed something else too
        loss = loss + (x * x).sum()
    loss.backward()
    return [np.asarray(loss.value)] + [q.grad.copy() for q in embed.parameters() + lstm.parameters()]


@pytest.mark.parametrize("on", FAST, ids=lambda on: "fast" if on else "numpy")
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize(
    "kw",
    [{}, {"states": True}, {"bidirectional": True, "states": True}, {"lengths": [7, 3, 5, 7, 1, 7, 6, 2, 7]},
     {"reuse_x": True}],
    ids=["plain", "states", "bidirectional", "lengths", "x-reused"],
)
def test_lookup_matches_the_plain_path(monkeypatch, on, dtype, kw):
    fast.set_fast(on)
    taken = count_lookups(monkeypatch)
    got = model_grads(dtype, **kw, taken=taken)
    assert taken == [True] * (2 if kw.get("bidirectional") else 1)
    count_lookups(monkeypatch, allow=False)
    want = model_grads(dtype, **kw)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert_close(a, b, dtype)


def test_lookup_only_where_it_pays(monkeypatch):
    taken = count_lookups(monkeypatch)
    model_grads(np.float32, V=40, taken=taken)  # 4 * 40 > 9 * 7 rows: projecting the table would cost more
    assert taken == [False]
    kp.set_seed(0)
    embed, gru = Embedding(11, 6), GRU(5)
    gru(embed(np.zeros((9, 7), dtype=np.int64)))  # only the LSTM has the gathering kernel
    assert taken == [False]
    taken.clear()
    two = LSTM(5, num_layers=2)
    two(embed(np.zeros((9, 7), dtype=np.int64)))  # the second layer's input is no lookup
    assert taken == [True, False]
    taken.clear()
    one = LSTM(5)
    one(embed(np.zeros((9, 7), dtype=np.int64)) * 2.0)
    assert taken == [False]
    taken.clear()
    one(Embedding(13, 6)(np.zeros((9, 7), dtype=np.int64)))  # 13 > 2 * 6: the one-hot GEMM would cost more
    one(Embedding(12, 6)(np.zeros((9, 7), dtype=np.int64)))
    assert taken == [False, True]


@pytest.mark.parametrize("on", FAST, ids=lambda on: "fast" if on else "numpy")
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_integer_ids_are_one_hot_inputs(on, reverse):
    """lstm_seq(ids, table) equals lstm_seq(one_hot(ids), table), values and gradients."""
    fast.set_fast(on)
    r = np.random.default_rng(3)
    N, T, V, H = 5, 6, 7, 4
    ids = r.integers(0, V, (N, T))
    one_hot = np.eye(V)[ids]
    table, w_hh = kp.Param(r.standard_normal((V, 4 * H))), kp.Param(r.standard_normal((H, 4 * H)))
    b_ih, b_hh = kp.Param(r.standard_normal(4 * H)), kp.Param(r.standard_normal(4 * H))
    h0, c0 = kp.Param(r.standard_normal((N, H))), kp.Param(r.standard_normal((N, H)))
    weights = [table, w_hh, b_ih, b_hh, h0, c0]
    g = r.standard_normal(N * T * H + 2 * N * H)
    results = []
    for x in (ids, one_hot):
        for p in weights:
            p.grad = None
        flat = lstm_seq(x, *weights, reverse=reverse, need_dx=False)
        (flat * g).sum().backward()
        results.append([flat.value.copy()] + [p.grad.copy() for p in weights])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    y, h, c = unpack(results[0][0], N, T, H, 2)
    assert y.shape == (N, T, H) and np.all(np.abs(c) > 0)


@pytest.mark.parametrize("on", FAST, ids=lambda on: "fast" if on else "numpy")
def test_lookup_split_over_threads(monkeypatch, on):
    """With knetpy's threads the batch is cut; each part's table gradient is added."""
    pytest.importorskip("threadpoolctl")
    fast.set_fast(on)

    def grads():
        kp.set_seed(0)
        embed, lstm = Embedding(13, 8), LSTM(64, return_sequences=True)
        ids = np.random.default_rng(5).integers(0, 13, (16, 64))  # N*T*H*4 = 2**18: large enough to split
        y = lstm(embed(ids))
        (y * y).sum().backward()
        return [q.grad.copy() for q in embed.parameters() + lstm.parameters()]

    taken = count_lookups(monkeypatch)
    prev = kp.get_num_threads()
    try:
        kp.set_num_threads(2)
        split = grads()
        kp.set_num_threads(1)
        whole = grads()
    finally:
        kp.set_num_threads(prev)
    assert taken == [True, True]
    for a, b in zip(split, whole):
        assert_close(a, b, np.float32)
