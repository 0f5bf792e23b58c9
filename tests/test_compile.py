"""kp.compile: a recorded step replays bit for bit, retraces when it must, and never answers wrongly."""

import warnings

import numpy as np
import pytest
from compile_cases import assert_same_bits
from thread_cases import run_threads

import knetpy as kp
from knetpy.autograd import mark_modified, replayable


def _train_both(loss, w, batches, lr=0.1, value=False):
    """Train copies of ``w`` with the eager and the compiled gradient; check every step is identical."""
    make = kp.value_and_grad if value else kp.grad
    eager, compiled = make(loss), kp.compile(make(loss))
    we = [a.copy() for a in w]
    wc = [a.copy() for a in w]
    for args in batches:
        re, rc = eager(we, *args), compiled(wc, *args)
        assert_same_bits(re, rc)
        ge, gc = (re[1], rc[1]) if value else (re, rc)
        for a, g in zip(we, ge):
            a -= lr * g
        for a, g in zip(wc, gc):
            a -= lr * g
    assert_same_bits(we, wc)
    return compiled


def test_linreg_replays_bit_for_bit():
    g = np.random.default_rng(0)
    x = g.standard_normal((50, 13)).astype("f")
    y = g.standard_normal((50, 1)).astype("f")
    w = [(g.standard_normal((13, 1)) * 0.1).astype("f"), np.zeros(1, "f")]
    step = _train_both(lambda w, x, y: kp.mean(kp.square(x @ w[0] + w[1] - y)), w, [(x, y)] * 6)
    assert step.traces == 2 and step.replays == 4


def test_softmax_and_mlp_over_minibatches():
    g = np.random.default_rng(1)
    x = g.standard_normal((120, 20)).astype("f")
    y = g.integers(0, 4, 120)
    batches = [(x[i : i + 30], y[i : i + 30]) for i in range(0, 120, 30)] * 2
    soft = [(g.standard_normal((20, 4)) * 0.1).astype("f"), np.zeros(4, "f")]
    step = _train_both(lambda w, x, y: kp.nll(x @ w[0] + w[1], y), soft, batches, lr=0.5)
    assert step.replays == len(batches) - 2

    def mlp(w, x, y):
        h = kp.relu(x @ w[0] + w[1])
        return kp.nll(h @ w[2] + w[3], y)

    w = [(g.standard_normal((20, 16)) * 0.3).astype("f"), np.zeros(16, "f"),
         (g.standard_normal((16, 4)) * 0.3).astype("f"), np.zeros(4, "f")]
    step = _train_both(mlp, w, batches, lr=0.3, value=True)
    assert step.replays == len(batches) - 2


def test_small_cnn_replays_bit_for_bit():
    g = np.random.default_rng(2)
    x = g.standard_normal((8, 1, 10, 10)).astype("f")
    y = g.integers(0, 3, 8)

    def cnn(w, x, y):
        h = kp.pool(kp.relu(kp.conv4(w[0], x, padding=1) + w[1]))
        return kp.nll(kp.mat(h) @ w[2] + w[3], y)

    w = [(g.standard_normal((4, 1, 3, 3)) * 0.3).astype("f"), np.zeros((1, 4, 1, 1), "f"),
         (g.standard_normal((100, 3)) * 0.1).astype("f"), np.zeros(3, "f")]
    batches = [(x, y), (x[::-1].copy(), y[::-1].copy())] * 3
    assert _train_both(cnn, w, batches).replays == 4


def test_lstm_step_replays_bit_for_bit():
    kp.set_seed(3)
    cell = kp.layers.LSTM(6, return_sequences=False)
    head = kp.layers.Dense(2)
    x = np.random.default_rng(3).standard_normal((4, 5, 3)).astype("f")
    y = np.array([0, 1, 1, 0])
    head(cell(x))
    params = list(cell.params.values()) + list(head.params.values())

    def step(x, y):
        for p in params:
            p.grad = None
        loss = kp.nll(head(cell(x)), y)
        loss.backward()
        return loss, [p.grad for p in params]

    compiled = kp.compile(step)
    start = [p.value.copy() for p in params]
    runs = []
    for fn in (step, compiled):
        for p, v in zip(params, start):
            p.value[...] = v
        losses = []
        for i in range(5):
            loss, grads = fn(x + i, y)
            losses.append(loss.value.copy())
            for p, gr in zip(params, grads):
                p.value -= 0.1 * gr
        runs.append((losses, [p.value.copy() for p in params]))
    assert_same_bits(runs[0], runs[1])
    assert compiled.traces == 2 and compiled.replays == 3


def _retraces(step, calls):
    """How many new traces each call took."""
    out = []
    for args in calls:
        before = step.traces
        step(*args)
        out.append(step.traces - before)
    return out


def test_retraces_on_shape_dtype_and_python_arguments():
    step = kp.compile(kp.grad(lambda w, x, s: kp.sum(kp.tanh(x @ w) * s)))
    w = np.ones((3, 2), "f")
    x = np.ones((4, 3), "f")
    assert _retraces(step, [(w, x, 2.0)] * 3) == [1, 1, 0]
    assert _retraces(step, [(w, np.ones((5, 3), "f"), 2.0)] * 3) == [1, 1, 0]  # shape
    assert _retraces(step, [(w.astype("d"), x.astype("d"), 2.0)] * 3) == [1, 1, 0]  # dtype
    assert _retraces(step, [(w, x, 3.0)] * 3) == [1, 1, 0]  # a Python argument
    assert _retraces(step, [(w, x, 2.0)]) == [0]  # the first signature is still compiled
    assert_same_bits(step(w, x, 3.0), kp.grad(lambda w, x, s: kp.sum(kp.tanh(x @ w) * s))(w, x, 3.0))


def test_retraces_when_the_mode_changes():
    kp.set_seed(0)
    model = kp.Sequential([kp.layers.Dense(4), kp.layers.Dropout(0.5), kp.layers.Dense(1)])
    x = np.ones((3, 2), "f")
    model(x)
    step = kp.compile(lambda x: model(x))
    assert _retraces(step, [(x,)] * 3) == [1, 1, 0]
    model.eval()
    assert _retraces(step, [(x,)] * 3) == [1, 1, 0]
    assert_same_bits(step(x), model(x))  # eval: no dropout, deterministic
    with kp.layers.base.thread_mode(model, True):
        assert _retraces(step, [(x,)]) == [1]  # the thread's forced mode counts too


def test_retraces_when_python_control_flow_reads_a_tensor():
    def f(w, x):
        s = kp.sum(x @ w)
        if s > 0:  # Tensor.__bool__: a guard
            return kp.sum(kp.exp(x @ w))
        return kp.sum(kp.square(x @ w))

    step, eager = kp.compile(kp.grad(f)), kp.grad(f)
    w = np.ones((3, 1), "f")
    pos, neg = np.ones((2, 3), "f"), -np.ones((2, 3), "f")
    assert _retraces(step, [(w, pos)] * 3) == [1, 1, 0]
    assert _retraces(step, [(w, neg)]) == [1]  # the guard failed: traced again, the eager answer
    assert_same_bits(step(w, neg), eager(w, neg))
    assert_same_bits(step(w, neg), eager(w, neg))
    assert_same_bits(step(w, pos), eager(w, pos))
    assert step.traces == 5  # both branches are now compiled; switching costs a failed guard only


def test_dropout_masks_are_fresh_on_every_replay_and_match_eager():
    x = np.ones((4, 50), "f")

    def run(fn_of):
        kp.set_seed(7)
        model = kp.Sequential([kp.layers.Dense(8), kp.layers.Dropout(0.5), kp.layers.Dense(1)])
        model(x)
        fn = fn_of(lambda x: kp.sum(model(x)))
        return [np.asarray(fn(x)).copy() for _ in range(6)]

    eager, compiled = run(lambda f: f), run(kp.compile)
    assert_same_bits(eager, compiled)
    assert len({a.tobytes() for a in compiled}) == 6  # a new mask every call


def test_a_numpy_mask_outside_the_ops_falls_back_to_eager_with_a_warning():
    g = np.random.default_rng(0)

    def f(w, x):
        mask = (g.random(x.shape) > 0.5).astype("f")  # drawn outside knetpy's ops: a constant to a trace
        return kp.sum(x * mask @ w)

    step = kp.compile(kp.grad(f))
    w, x = np.ones((3, 1), "f"), np.ones((5, 3), "f")
    with pytest.warns(kp.CompileWarning, match="outside knetpy's ops"):
        for _ in range(4):
            step(w, x)
    traces = step.traces
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one warning only
        results = [step(w, x) for _ in range(5)]
    assert step.traces == traces and step.replays == 0
    assert len({r.tobytes() for r in results}) > 1  # each call saw its own mask: eager


def test_in_place_edit_inside_the_step_runs_eagerly_and_is_still_rejected():
    w = [kp.Param(np.ones(3, "f"))]

    def bad(x):
        y = kp.sum(kp.exp(w[0] * x))
        w[0] -= 0.1  # the forward saw the old w: backward must refuse, as in eager mode
        y.backward()

    step = kp.compile(bad)
    for _ in range(3):
        with pytest.raises(RuntimeError, match="modified by an in-place operation"):
            step(np.ones(3, "f"))


def test_an_edit_while_a_replay_runs_is_caught():
    w = kp.Param(np.ones(3, "f"))
    calls = []

    @replayable
    def poke():
        calls.append(1)
        if len(calls) > 2:  # only while replaying: another thread stepping the weights
            mark_modified(w)

    def f(x):
        w.grad = None
        y = kp.sum(kp.exp(w * x))
        poke()
        y.backward()
        return w.grad

    step = kp.compile(f)
    step(np.ones(3, "f"))
    step(np.ones(3, "f"))
    with pytest.raises(RuntimeError, match="modified in place while the step ran"):
        step(np.ones(3, "f"))


def test_parameters_edited_between_calls_are_read_afresh():
    w = kp.Param(np.ones((3, 2), "f"))
    x = np.ones((4, 3), "f")

    def f(x):
        w.grad = None
        loss = kp.sum(kp.tanh(x @ w))
        loss.backward()
        return loss

    step = kp.compile(f)
    for _ in range(5):
        got = step(x).value
        w.value -= 0.1 * w.grad  # no version error: edits between calls are the point
        mark_modified(w)
        assert got == pytest.approx(float(np.tanh(x @ (w.value + 0.1 * w.grad)).sum()), rel=1e-6)


def test_a_changed_input_array_inside_the_step_is_refused():
    def f(w):
        g = kp.grad(lambda w: kp.sum(w * w))(w)
        w -= 0.1 * g  # an update on the raw argument: replay would skip it
        return g

    step = kp.compile(f)
    w, we = np.ones(3, "f"), np.ones(3, "f")
    with pytest.warns(kp.CompileWarning, match="in place"):
        for _ in range(4):
            step(w)
            f(we)
    assert_same_bits(w, we)


def test_two_threads_share_a_compiled_step_safely():
    def loss(w, x):
        return kp.sum(kp.tanh(x @ w) ** 2)

    step, eager = kp.compile(kp.grad(loss)), kp.grad(loss)
    w = np.random.default_rng(0).standard_normal((8, 4)).astype("f")
    xs = [np.random.default_rng(i).standard_normal((16, 8)).astype("f") for i in range(2)]
    want = [eager(w, x) for x in xs]

    def work(i):
        for _ in range(200):
            assert_same_bits(step(w, xs[i]), want[i])

    run_threads(2, work)
    assert step.traces == 4  # each thread traced for itself


def test_returned_arrays_are_never_shared_between_calls():
    step = kp.compile(kp.grad(lambda w, x: kp.sum(x)))  # the gradient is zeros: a constant
    w, x = np.ones(3, "f"), np.ones(2, "f")
    outs = [step(w, x) for _ in range(4)]
    outs[-1] += 1
    assert not np.shares_memory(outs[-1], outs[-2])
    assert (step(w, x) == 0).all()


def test_numpy_work_on_unchanged_data_is_not_trusted_until_the_data_changes():
    def f(w, x):
        return kp.sum(w * np.sin(x))  # np.sin outside the ops: a constant to a trace

    step, eager = kp.compile(kp.grad(f)), kp.grad(f)
    w = np.ones(3, "f")
    x1, x2 = np.zeros(3, "f"), np.ones(3, "f")
    for _ in range(4):
        assert_same_bits(step(w, x1), eager(w, x1))  # same data every call: recorded, never replayed
    assert step.replays == 0
    with pytest.warns(kp.CompileWarning, match="outside knetpy's ops"):
        assert_same_bits(step(w, x2), eager(w, x2))  # other data: the constant differs, so it is data
        assert_same_bits(step(w, x1), eager(w, x1))
    assert_same_bits(step(w, x2), eager(w, x2))


def test_batchnorm_in_eval_reads_its_running_statistics_on_every_replay():
    model = kp.Sequential([kp.layers.Dense(3), kp.layers.BatchNorm()])
    x = np.random.default_rng(0).standard_normal((8, 2)).astype("f")
    model(x)
    model.eval()
    step = kp.compile(lambda x: model(x))
    for _ in range(3):
        step(x)
    assert step.replays == 1
    model.layers()[-1].running_mean.value = model.layers()[-1].running_mean.value + 1.0
    assert_same_bits(step(x), model(x))
    assert step.replays == 2


def test_a_compiled_step_inside_another_is_recorded_as_part_of_it():
    inner = kp.compile(kp.grad(lambda w, x: kp.sum(kp.tanh(x @ w))))
    outer = kp.compile(lambda w, x: [kp.mul(inner(w, x), 2)])  # (kp.mul: NumPy's * would not be seen)
    w = np.ones((3, 2), "f")
    for i in range(4):
        x = np.full((2, 3), float(i), "f")
        assert_same_bits(outer(w, x), [kp.grad(lambda w, x: kp.sum(kp.tanh(x @ w)))(w, x) * 2])
    assert (outer.traces, outer.replays, inner.traces) == (2, 2, 0)


def test_detect_anomaly_runs_the_step_eagerly():
    step = kp.compile(kp.grad(lambda w: kp.sum(kp.log(w))))
    for _ in range(3):
        step(np.ones(2, "f"))
    with kp.detect_anomaly(), np.errstate(invalid="ignore"), pytest.raises(kp.AnomalyError, match="log"):
        step(np.zeros(2, "f") - 1)


@pytest.mark.parametrize("name", ["exp", "log", "tanh", "sqrt", "square", "sin", "cos", "abs"])
def test_each_lowered_elementwise_op_matches_its_eager_op(name):
    op = getattr(kp, name)
    step = kp.compile(kp.grad(lambda w, x: kp.sum(op(x * w + 1.5))))
    w = np.full(5, 0.7, "f")
    for i in range(4):
        x = np.linspace(0.1, 2, 5).astype("f") + i
        assert_same_bits(step(w, x), kp.grad(lambda w, x: kp.sum(op(x * w + 1.5)))(w, x))
    assert step.replays == 2
    assert op.__wrapped__ in kp.compile.__globals__["_LOWERINGS"]  # the lowered path was the one tested


def test_a_param_in_a_closure_given_a_new_array_is_read_there_by_a_compiled_grad():
    # kp.grad over the user's Params wraps them in new tensors each call; the replay must read each
    # Param's array of the moment (a replay that kept the traced array answered wrongly here)
    g = np.random.default_rng(2)
    x, y = g.standard_normal((30, 4)).astype("f"), g.integers(0, 3, 30)
    params = {"W": kp.Param((g.standard_normal((4, 3)) * 0.1).astype("f")), "b": kp.Param(np.zeros(3, "f"))}

    def loss(p, x, y):
        return kp.nll(x @ p["W"] + p["b"], y)

    step, eager = kp.compile(lambda x, y: kp.grad(loss)(params, x, y)), kp.grad(loss)
    for i in range(8):
        xb, yb = x[i % 2 :: 2], y[i % 2 :: 2]
        if i == 5:
            params["W"].value = params["W"].value * 0.5
        assert_same_bits(step(xb, yb), eager(params, xb, yb))
    assert step.replays == 6


@pytest.mark.parametrize(
    "shape_of",
    [lambda a, b: (a, b), lambda a, b: (a,), lambda a, b: [a, b], lambda a, b: {"a": a, "b": (b, a)}, lambda a, b: a],
    ids=["tuple", "1-tuple", "list", "nested", "leaf"],
)
def test_a_replay_returns_the_structure_the_step_returned(shape_of):
    def f(w, x):
        h = kp.matmul(x, w)  # (on raw arrays `@` would be NumPy's own, outside the ops)
        return shape_of(kp.tanh(h), kp.sum(h))

    step = kp.compile(f)
    w, x = np.ones((3, 2), "f"), np.arange(6, dtype="f").reshape(2, 3)
    for i in range(4):
        got, want = step(w, x + i), f(w, x + i)
        assert type(got) is type(want)
        if isinstance(want, dict):
            assert type(got["b"]) is tuple
        assert_same_bits(got, want)
    assert step.replays == 2


def test_calls_alternating_between_two_shapes_replay_each_shape_with_one_checked_function():
    # an epoch's last, smaller batch between full ones: each signature's checked replay is made once, kept
    loss = lambda w, x, y: kp.mean(kp.square(x @ w[0] + w[1] - y))  # noqa: E731
    g = np.random.default_rng(3)
    big, small = ((g.standard_normal((n, 4)).astype("f"), g.standard_normal((n, 1)).astype("f")) for n in (16, 5))
    w = [np.ones((4, 1), "f"), np.zeros(1, "f")]
    step = _train_both(loss, w, [big, small] * 6)
    assert step.traces == 4 and step.replays == 8
    seen = {}
    for x, y in [big, small] * 3:
        step(w, x, y)
        seen.setdefault(len(x), set()).add(id(step._local.fast[0]))
    assert {n: len(ids) for n, ids in seen.items()} == {16: 1, 5: 1}
