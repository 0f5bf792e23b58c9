"""knetpy's own threads (kp.set_num_threads): every split op against the one-thread reference.

The split thresholds are set to zero here, so even the small test arrays are cut into parts, and
each test checks that the split path really ran (``parallel.run`` was called).
"""

import threading

import numpy as np
import pytest
from thread_cases import count_splits

import knetpy as kp
from knetpy import parallel
from knetpy.ops.rnn import rnn_init, rnnforw

pytest.importorskip("threadpoolctl")


@pytest.fixture
def split(monkeypatch):
    """Threads on, every op split; yields a counter of split regions; threads off afterwards."""
    calls = count_splits(monkeypatch)
    monkeypatch.setattr(parallel, "MIN_ELEMENTS", 0)
    monkeypatch.setattr(parallel, "MIN_FLOPS", 0)
    yield calls
    kp.set_num_threads(1)


def run_both(fn, split, n_threads=2):
    """fn() with threads off, then with ``n_threads`` threads (splitting); both results."""
    kp.set_num_threads(1)
    ref = fn()
    kp.set_num_threads(n_threads)
    split.clear()
    got = fn()
    assert split, "the threaded run did not split anything"
    kp.set_num_threads(1)
    return ref, got


def assert_tree_close(a, b, rtol=1e-12, atol=1e-12):
    for x, y in zip(kp.tree_flatten(a)[0], kp.tree_flatten(b)[0]):
        x = x.value if isinstance(x, kp.Tensor) else x
        y = y.value if isinstance(y, kp.Tensor) else y
        np.testing.assert_allclose(y, x, rtol=rtol, atol=atol)


# -- the machinery ----------------------------------------------------------------------------------------------
def test_set_num_threads_validates_and_restores_blas():
    from threadpoolctl import threadpool_info

    def blas_threads():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    kp.set_num_threads(1)  # the starting point (KNETPY_NUM_THREADS may have turned threads on)
    before = blas_threads()
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(ValueError, match="positive int"):
            kp.set_num_threads(bad)
    kp.set_num_threads(3)
    try:
        assert kp.get_num_threads() == 3
        assert all(n == 1 for n in blas_threads())  # BLAS leaves the cores to knetpy's threads
    finally:
        kp.set_num_threads(1)
    assert kp.get_num_threads() == 1
    assert blas_threads() == before


def test_ranges_cover_rows_and_respect_thresholds(split):
    kp.set_num_threads(3)
    assert parallel.ranges(10) == [(0, 3), (3, 6), (6, 10)]
    assert parallel.ranges(2) == [(0, 1), (1, 2)]  # never more parts than rows
    assert parallel.ranges(1) is None
    parallel.MIN_ELEMENTS = 100
    assert parallel.ranges(10, work=99) is None
    assert parallel.ranges(10, work=100) is not None
    kp.set_num_threads(1)
    assert parallel.ranges(10) is None


def test_parts_run_on_several_threads_and_errors_propagate(split):
    kp.set_num_threads(2)
    seen = {}

    def record(lo, hi):
        seen[lo] = threading.get_ident()

    parallel.run(record, [(0, 1), (1, 2)])
    assert len(set(seen.values())) == 2

    def fail(lo, hi):
        if lo == 1:  # the worker's part
            raise KeyError("part 1 failed")

    with pytest.raises(KeyError, match="part 1 failed"):
        parallel.run(fail, [(0, 1), (1, 2)])
    parallel.run(record, [(0, 1), (1, 2)])  # the pool still works afterwards


def test_nested_splits_run_serially(split):
    kp.set_num_threads(2)
    inner = []

    def outer(lo, hi):
        inner.append(parallel.ranges(100))

    parallel.run(outer, [(0, 1), (1, 2)])
    assert inner == [None, None]


# -- GEMMs and elementwise ops ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "m,k,n",
    [(300, 40, 20), (20, 40, 300), (10, 500, 12), (7, 3, 5)],
    ids=["rows", "columns", "inner", "small"],
)
def test_matmul_split_matches(split, rng, m, k, n):
    a = rng.standard_normal((m, k))
    b = rng.standard_normal((k, n))
    kp.set_num_threads(2)
    split.clear()
    got = parallel.matmul(a, b)
    np.testing.assert_allclose(got, a @ b, rtol=1e-12, atol=1e-12)
    out = np.empty((m, n))
    assert parallel.matmul(a.T.copy().T, b, out=out) is out
    np.testing.assert_allclose(out, a @ b, rtol=1e-12, atol=1e-12)
    if (m, k, n) != (7, 3, 5):
        assert split
    else:  # too small to split even with zero thresholds: every dimension under 64 per thread
        assert not split


def test_matmul_op_and_its_gradient_split(split, rng):
    a = rng.standard_normal((256, 30))
    b = rng.standard_normal((30, 200))

    def f():
        return kp.value_and_grad(lambda a, b: kp.sum(kp.matmul(a, b) ** 2), argnums=(0, 1))(a, b)

    ref, got = run_both(f, split)
    assert_tree_close(ref, got, rtol=1e-10)


@pytest.mark.parametrize(
    "shape_x,shape_y",
    [((8, 3, 5, 5), (1, 3, 1, 1)), ((8, 4), (8, 4)), ((8, 4), (4,)), ((8, 1), (8, 6)), ((8, 4), 2.5)],
)
def test_elementwise_split_matches_broadcasting(split, rng, shape_x, shape_y):
    x = rng.standard_normal(shape_x)
    y = rng.standard_normal(shape_y) if isinstance(shape_y, tuple) else shape_y
    for op, ref in [(kp.add, np.add), (kp.sub, np.subtract), (kp.mul, np.multiply)]:
        kp.set_num_threads(2)
        got = op(x, y)
        kp.set_num_threads(1)
        np.testing.assert_array_equal(got, ref(x, y))
        assert got.shape == np.broadcast_shapes(np.shape(x), np.shape(y))


def test_elementwise_keeps_channels_last_layout(split, rng):
    x = np.ascontiguousarray(rng.standard_normal((4, 5, 5, 3))).transpose(0, 3, 1, 2)  # (N, C, H, W) view
    kp.set_num_threads(2)
    y = parallel.elementwise(np.add, x, 1.0)
    assert y.strides == x.strides
    np.testing.assert_array_equal(y, x + 1)


def test_broadcast_errors_still_name_the_op(split):
    kp.set_num_threads(2)
    with pytest.raises(ValueError, match=r"add: operands with shapes \(4, 3\) and \(4,\)"):
        kp.add(np.ones((4, 3)), np.ones(4))


def test_relu_split_forward_and_backward(split, rng):
    x = rng.standard_normal((16, 3, 4, 4))
    ref, got = run_both(lambda: kp.value_and_grad(lambda x: kp.sum(kp.relu(x) * x))(x), split)
    assert_tree_close(ref, got)


# -- convolution and pooling --------------------------------------------------------------------------------------
CONV_CASES = [
    dict(cin=1, cout=4, k=3, padding=0, stride=1, groups=1, mode=1),  # one input channel
    dict(cin=4, cout=6, k=3, padding=1, stride=2, groups=2, mode=0),
    dict(cin=3, cout=5, k=(2, 3), padding=(1, 0), stride=1, groups=1, mode=1),
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: f"cin{c['cin']}-g{c['groups']}")
def test_conv_ops_split_match(split, rng, case):
    k = case["k"] if isinstance(case["k"], tuple) else (case["k"],) * 2
    w = rng.standard_normal((case["cout"], case["cin"] // case["groups"], *k))
    b = rng.standard_normal((1, case["cout"], 1, 1))
    x = rng.standard_normal((6, case["cin"], 7, 8))
    opts = {key: case[key] for key in ("padding", "stride", "groups", "mode")}

    def loss(w, b, x):
        y = kp.pool(kp.relu(kp.conv4(w, x, **opts) + b), window=2, stride=1, mode=0)
        return kp.sum(y * y)

    ref, got = run_both(lambda: kp.value_and_grad(loss, argnums=(0, 1, 2))(w, b, x), split)
    assert_tree_close(ref, got, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("relu", [False, True])
def test_fused_conv_bias_act_split_matches(split, rng, relu):
    w = rng.standard_normal((5, 3, 3, 3))
    b = rng.standard_normal(5)
    x = rng.standard_normal((5, 3, 9, 9))

    def loss(w, b, x):
        y = kp.conv4_bias(w, x, b, padding=1, mode=1, relu=relu)
        return kp.sum(kp.pool(y) ** 2)

    ref, got = run_both(lambda: kp.value_and_grad(loss, argnums=(0, 1, 2))(w, b, x), split)
    assert_tree_close(ref, got, rtol=1e-10, atol=1e-10)


def test_conv3d_and_deconv_split_match(split, rng):
    w = rng.standard_normal((2, 3, 2, 2, 2))
    x = rng.standard_normal((4, 3, 4, 4, 4))
    wt = rng.standard_normal((3, 2, 3, 3))
    xt = rng.standard_normal((4, 3, 5, 5))

    def loss(w, x, wt, xt):
        return kp.sum(kp.conv4(w, x, stride=2) ** 2) + kp.sum(kp.deconv4(wt, xt, stride=2, padding=1) ** 2)

    ref, got = run_both(lambda: kp.value_and_grad(loss, argnums=(0, 1, 2, 3))(w, x, wt, xt), split)
    assert_tree_close(ref, got, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("window,stride,padding", [(2, 2, 0), (3, 2, 1), (2, 1, 0)])
def test_max_pool_split_matches_including_ties(split, rng, window, stride, padding):
    x = np.round(rng.standard_normal((6, 3, 8, 7)), 1)  # rounded: ties decide by window order
    ref, got = run_both(
        lambda: kp.value_and_grad(lambda x: kp.sum(kp.pool(x, window=window, stride=stride, padding=padding) ** 3))(
            x
        ),
        split,
    )
    assert_tree_close(ref, got)


def test_layers_model_trains_identically_with_threads(split, rng):
    x = rng.standard_normal((12, 1, 10, 10)).astype(np.float32)
    y = rng.integers(0, 3, 12)

    def train():
        kp.set_seed(0)
        model = kp.Sequential(
            [
                kp.layers.Conv2D(4, 3, activation="relu"),
                kp.layers.MaxPool2D(),
                kp.layers.Flatten(),
                kp.layers.Dense(3),
            ]
        )
        model.compile(optimizer=kp.optim.SGD(lr=0.1), loss="cross_entropy")
        model.fit(x, y, epochs=2, batch_size=6, shuffle=False, verbose=0)
        return [p.value.copy() for p in model.parameters()]

    ref, got = run_both(train, split)
    assert_tree_close(ref, got, rtol=1e-5, atol=1e-6)


# -- recurrent kernels -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["lstm", "gru", "tanh", "relu"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_rnn_kernels_split_match(split, rng, mode, bidirectional):
    N, T, F, H = 5, 4, 3, 6
    D = 2 if bidirectional else 1
    weights = rnn_init(mode, F, H, 1, bidirectional, dtype="float64")
    for group in weights:
        for p in group:
            p.value[...] = rng.standard_normal(p.shape) * 0.5
    x = rng.standard_normal((N, T, F))
    h0 = rng.standard_normal((D, N, H))
    c0 = rng.standard_normal((D, N, H)) if mode == "lstm" else None
    lengths = np.array([4, 2, 4, 1, 3])
    gy = rng.standard_normal((N, T, D * H))

    def loss(weights, x, h0, c0):
        y, hy, cy = rnnforw(weights, x, h0, c0, mode, bidirectional=bidirectional, lengths=lengths)
        total = kp.sum(y * gy) + kp.sum(hy * hy)
        return total + kp.sum(cy * cy) if cy is not None else total

    argnums = (0, 1, 2, 3) if mode == "lstm" else (0, 1, 2)
    ref, got = run_both(lambda: kp.value_and_grad(loss, argnums=argnums)(weights, x, h0, c0), split)
    assert_tree_close(ref, got, rtol=1e-10, atol=1e-10)


def test_rnn_split_with_three_parts_and_no_input_gradient(split, rng):
    weights = rnn_init("lstm", 3, 4, dtype="float64")
    x = rng.standard_normal((7, 5, 3))  # raw input: the kernel skips dx

    def f():
        return kp.value_and_grad(lambda w: kp.sum(rnnforw(w, x)[0] ** 2))(weights)

    ref, got = run_both(f, split, n_threads=3)
    assert_tree_close(ref, got, rtol=1e-10, atol=1e-10)


def test_split_ops_from_several_user_threads_at_once(split, rng):
    """Two threads training at once share the workers safely (one waits for none: it runs serially)."""
    kp.set_num_threads(2)
    a = rng.standard_normal((400, 300))
    b = rng.standard_normal((300, 200))
    want = a @ b
    results, errors = [], []

    def work():
        try:
            for _ in range(20):
                results.append(np.abs(parallel.matmul(a, b) - want).max())
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 60 and max(results) < 1e-9


def test_threads_survive_fork(split):
    import multiprocessing as mp

    if "fork" not in mp.get_all_start_methods():
        pytest.skip("no fork on this platform")
    kp.set_num_threads(2)
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as pool:
        total = pool.apply(_split_sum_in_child)
    assert total == sum(range(8))


def _split_sum_in_child():
    seen = []
    parallel.run(lambda lo, hi: seen.extend(range(lo, hi)), [(0, 4), (4, 8)])
    return sum(seen)


def test_only_numpy_work_is_split(split):
    kp.set_num_threads(2)
    seen = []
    parallel.for_rows(lambda lo, hi: seen.append((lo, hi)), 10, xp=object())  # e.g. CuPy: the GPU splits
    assert seen == [(0, 10)] and not split
    parallel.for_rows(lambda lo, hi: seen.append((lo, hi)), 10)
    assert sorted(seen[1:]) == [(0, 5), (5, 10)]


@pytest.mark.parametrize("value,ok", [("2", True), ("1", True), ("0", False), ("two", False)])
def test_environment_variable(value, ok):
    import os
    import subprocess
    import sys

    env = {**os.environ, "KNETPY_NUM_THREADS": value}
    code = "import knetpy as kp; print(kp.get_num_threads())"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if ok:
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == value
    else:
        assert done.returncode != 0
        assert "KNETPY_NUM_THREADS must be a positive integer" in done.stderr


@pytest.mark.parametrize("chunk_bytes", [1, 4096, 1 << 19], ids=["one-sample", "few-samples", "default"])
@pytest.mark.parametrize("case", CONV_CASES + [dict(cin=2, cout=3, k=3, padding=2, stride=1, groups=1, mode=0, dilation=2)],
                         ids=lambda c: f"cin{c['cin']}-g{c['groups']}-d{c.get('dilation', 1)}" if isinstance(c, dict) else c)
def test_conv_streamed_windows_match(split, rng, monkeypatch, chunk_bytes, case):
    """With threads on, each thread streams its samples' windows through a small buffer."""
    from knetpy.ops import conv

    monkeypatch.setattr(conv, "CHUNK_BYTES", chunk_bytes)
    assert conv.STREAM_WINDOWS
    k = case["k"] if isinstance(case["k"], tuple) else (case["k"],) * 2
    w = rng.standard_normal((case["cout"], case["cin"] // case["groups"], *k))
    b = rng.standard_normal(case["cout"])
    x = rng.standard_normal((7, case["cin"], 9, 8))
    opts = {key: case[key] for key in ("padding", "stride", "groups", "mode")}
    opts["dilation"] = case.get("dilation", 1)

    def loss(w, b, x):
        y = kp.conv4_bias(w, x, b, relu=True, **opts)
        return kp.sum(y * y) + kp.sum(kp.conv4(w, x, **opts) ** 3)

    ref, got = run_both(lambda: kp.value_and_grad(loss, argnums=(0, 1, 2))(w, b, x), split)
    assert_tree_close(ref, got, rtol=1e-10, atol=1e-10)
