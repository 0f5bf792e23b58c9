"""The optimizer update folded into a compiled step: ``kp.optim.update`` inside ``kp.compile`` and fit's
compiled step make the same update on every replay as the eager step, reading the optimizer's
hyper-parameters afresh each time."""

import warnings

import numpy as np
import pytest
from compile_cases import assert_same_bits
from model_cases import blobs

import knetpy as kp
from knetpy.autograd import mark_modified, replayable


def _linreg(seed=0, n=40):
    g = np.random.default_rng(seed)
    x = g.standard_normal((n, 5)).astype("f")
    y = (x @ g.standard_normal((5, 1)) + 0.1 * g.standard_normal((n, 1))).astype("f")
    w = [(g.standard_normal((5, 1)) * 0.1).astype("f"), np.zeros(1, "f")]
    return w, x, y


def _loss(w, x, y):
    return kp.mean(kp.square(x @ w[0] + w[1] - y))


def _folded(opts):
    step_grad = kp.value_and_grad(_loss)

    def train_step(w, x, y):
        loss, g = step_grad(w, x, y)
        kp.optim.update(w, g, opts)
        return loss

    return kp.compile(train_step), train_step


def _sgd_pair(seed):
    """The same problem and start twice, each with its own SGD optimizers: a compiled step, an eager one."""
    w, x, y = _linreg(seed)
    we = [a.copy() for a in w]
    opts, opts_e = (kp.optim.optimizers(v, kp.optim.SGD, lr=0.05) for v in (w, we))
    return (w, x, y, opts, _folded(opts)[0]), (we, x, y, opts_e, _folded(opts_e)[1])


@pytest.mark.parametrize("make", [
    lambda w: kp.optim.optimizers(w, kp.optim.SGD, lr=0.05),
    lambda w: kp.optim.optimizers(w, kp.optim.SGD, lr=0.05, momentum=0.9, nesterov=True),
    lambda w: kp.optim.optimizers(w, kp.optim.Adam, lr=0.01, weight_decay=1e-3),
    lambda w: kp.optim.optimizers(w, kp.optim.SGD, lr=0.05, clip_norm=0.5),
], ids=["sgd", "nesterov", "adam", "clip_norm"])
def test_an_update_inside_a_compiled_step_replays_bit_for_bit(make):
    w, x, y = _linreg()
    we = [a.copy() for a in w]
    opts, opts_e = make(w), make(we)
    step, _ = _folded(opts)
    _, eager = _folded(opts_e)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no CompileWarning: the update is recorded, not refused
        for _ in range(12):
            assert_same_bits(step(w, x, y), eager(we, x, y))
            assert_same_bits(w, we)
    assert step.traces == 2 and step.replays == 10
    assert [o.iterations for o in opts] == [o.iterations for o in opts_e] == [12, 12]
    assert [o.state["array"]["step"] for o in opts] == [12, 12]
    assert_same_bits([o.state for o in opts], [o.state for o in opts_e])  # momentum buffers, moments


def test_a_changed_learning_rate_takes_effect_on_the_next_replay():
    (w, x, y, opts, step), (we, _, _, opts_e, eager) = _sgd_pair(1)
    for i in range(10):
        if i == 5:
            for o in (*opts, *opts_e):
                o.lr = 0.0  # frozen from here: a replay that kept the traced rate would move on
        step(w, x, y)
        eager(we, x, y)
        assert_same_bits(w, we)
    assert step.replays == 8
    frozen = [a.copy() for a in w]
    step(w, x, y)
    assert_same_bits(w, frozen)


def test_an_update_of_tensors_inside_a_compiled_step_bumps_their_versions_once_per_call():
    g = np.random.default_rng(2)
    x = g.standard_normal((30, 4)).astype("f")
    y = g.integers(0, 3, 30)
    params = {"W": kp.Param((g.standard_normal((4, 3)) * 0.1).astype("f")), "b": kp.Param(np.zeros(3, "f"))}
    eager_params = {k: kp.Param(p.value.copy()) for k, p in params.items()}
    opts, opts_e = (kp.optim.optimizers(p, kp.optim.SGD, lr=0.3) for p in (params, eager_params))

    def loss(p, x, y):
        return kp.nll(x @ p["W"] + p["b"], y)

    def train_step(x, y):  # the parameters are read from the enclosing scope (Knet's global weights)
        kp.optim.update(params, kp.grad(loss)(params, x, y), opts)

    step = kp.compile(train_step)
    for i in range(6):
        xb, yb = x[i % 2 :: 2], y[i % 2 :: 2]  # two minibatches
        versions = [p._version for p in params.values()]
        step(xb, yb)  # no "modified in place while the step ran": the step's own update is expected
        assert [p._version for p in params.values()] == [v + 1 for v in versions]
        kp.optim.update(eager_params, kp.grad(loss)(eager_params, xb, yb), opts_e)
        assert_same_bits(params, eager_params)
    assert step.replays == 4


def test_an_edit_by_someone_else_while_a_replay_runs_is_still_caught_beside_the_steps_own_update():
    w, x, y = _linreg(3)
    p = kp.Param(w[0].copy())
    bias = kp.Param(np.ones(1, "f"))  # read by the step, updated by no one inside it
    opts = kp.optim.optimizers([p], kp.optim.SGD, lr=0.01)
    calls = []

    @replayable
    def poke():
        calls.append(1)
        if len(calls) > 4:  # from the fifth call: another thread editing the bias
            mark_modified(bias)

    def train_step(x, y):
        loss = kp.mean(kp.square(x @ p + bias - y))
        loss.backward()
        kp.optim.update([p], [p.grad], opts)
        p.grad = bias.grad = None
        poke()
        return loss.value

    step = kp.compile(train_step)
    for i in range(4):
        step(x[i % 2 :: 2], y[i % 2 :: 2])
    assert step.replays == 2
    with pytest.raises(RuntimeError, match="modified in place while the step ran"):
        step(x[::2], y[::2])


def _fit(compile, epochs=3, optimizer=None, callbacks=(), x=None, y=None):
    kp.set_seed(0)
    model = kp.Sequential(kp.layers.Dense(8, activation="relu"), kp.layers.Dense(3))
    model.compile(loss="cross_entropy", optimizer=optimizer or kp.optim.SGD(lr=0.2), metrics=["accuracy"])
    if x is None:
        x, y = blobs(30)
    hist = model.fit(x, y, epochs=epochs, batch_size=16, verbose=0, compile=compile, callbacks=list(callbacks))
    return model, hist.history


@pytest.mark.parametrize("make_opt", [
    lambda: kp.optim.SGD(lr=0.2),
    lambda: kp.optim.Adam(lr=0.01, clip_norm=1.0),
], ids=["sgd", "adam_clipped"])
def test_fit_replays_its_update_with_the_step_and_equals_eager_fit(make_opt):
    schedule = kp.callbacks.LearningRateScheduler(lambda epoch, lr: lr * 0.5)  # a rate set between replays
    model, hist = _fit(True, optimizer=make_opt(), callbacks=[schedule])
    step = model._compiled_step[1]
    assert step.replays > 0
    eager, eager_hist = _fit(False, optimizer=make_opt(), callbacks=[kp.callbacks.LearningRateScheduler(
        lambda epoch, lr: lr * 0.5)])
    assert hist == eager_hist
    assert_same_bits(model.params, eager.params)
    assert model.optimizer.iterations == eager.optimizer.iterations == 3 * 6
    assert all(p.grad is None for p in model.parameters())  # zero_grad made on every replay too


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fit_with_sgd_follows_a_rate_and_momentum_changed_between_batches_as_eager_fit_does(dtype):
    # every batch sets another rate (new float objects, equal ones, 0.0 and -0.0); momentum on for a few
    # batches, then off again: SGD's short step, its general one, the short one again
    rates = [0.2, 0.2, float("0.2"), 0.1, 1 / 3, 0.0, -0.0, 0.05]

    def schedule(model):
        def on_batch_begin(batch, logs=None):
            step = model.optimizer.iterations
            model.optimizer.lr = rates[step % len(rates)]
            model.optimizer.momentum = 0.9 if 7 <= step < 10 else 0.0

        return kp.callbacks.LambdaCallback(on_batch_begin=on_batch_begin)

    x, y = blobs(30)
    x = x.astype(dtype)
    got = {}
    for compile in (True, False):
        kp.set_seed(0)
        model = kp.Sequential(kp.layers.Dense(8, activation="relu"), kp.layers.Dense(3))
        model.compile(loss="cross_entropy", optimizer=kp.optim.SGD(lr=0.2))
        model(x[:1].astype(dtype))
        if dtype == "float64":
            for p in model.parameters():
                p.value = p.value.astype(dtype)
        hist = model.fit(x, y, epochs=3, batch_size=16, verbose=0, shuffle=False, compile=compile,
                         callbacks=[schedule(model)])
        got[compile] = model, hist.history
    (model, hist), (eager, eager_hist) = got[True], got[False]
    assert hist == eager_hist
    assert_same_bits(model.params, eager.params)
    assert model.params["0.w"].value.dtype == dtype
    steps = 3 * -(-len(x) // 16)
    assert model.optimizer.iterations == eager.optimizer.iterations == steps
    assert_same_bits(model.optimizer.state, eager.optimizer.state)  # step counts, the momentum buffers
    assert all(p.grad is None for p in model.parameters())
    step = model._compiled_step[1]
    assert step.replays == steps - step.traces > steps // 2


def test_a_non_finite_loss_in_a_compiled_fit_stops_before_the_update_as_eager_fit_does():
    x, y = blobs(30)
    x = x.copy()
    x[70] = np.nan  # in the fifth batch of the first epoch (no shuffling)
    got = {}
    for compile in (True, False):
        kp.set_seed(0)
        model = kp.Sequential(kp.layers.Dense(8, activation="relu"), kp.layers.Dense(3))
        model.compile(loss="cross_entropy", optimizer=kp.optim.SGD(lr=0.2))
        with pytest.raises(FloatingPointError, match="the weights were not updated"):
            model.fit(x, y, epochs=1, batch_size=16, verbose=0, shuffle=False, compile=compile)
        assert all(np.isfinite(p.value).all() for p in model.parameters())
        got[compile] = model
    assert got[True].optimizer.iterations == got[False].optimizer.iterations == 4
    assert got[True]._compiled_step[1].replays > 0
    assert_same_bits(got[True].params, got[False].params)


def test_a_new_optimizer_or_newly_trained_parameters_get_a_step_of_their_own():
    kp.set_seed(0)
    model = kp.Sequential(kp.layers.Dense(8, activation="relu"), kp.layers.Dense(3))
    model.compile(loss="cross_entropy", optimizer=kp.optim.SGD(lr=0.2))
    x, y = blobs(30)
    model(x[:1])
    model.layers()[0].trainable = False
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, compile=True)
    first = model._compiled_step[1]
    kept = model.params["0.w"].value.copy()
    model.layers()[0].trainable = True  # the optimizer now updates four parameters, not two
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, compile=True)
    assert model._compiled_step[1] is not first and model._compiled_step[1].replays > 0
    assert not np.array_equal(kept, model.params["0.w"].value)
    second = model._compiled_step[1]
    model.compile(loss="cross_entropy", optimizer=kp.optim.Adam(lr=0.01))
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, compile=True)
    assert model._compiled_step[1] is not second
    assert model.optimizer.iterations == 6


def test_plain_sgd_written_into_the_step_gives_way_when_an_optimizer_changes():
    (w, x, y, opts, step), (we, _, _, opts_e, eager) = _sgd_pair(4)
    for i in range(12):
        if i == 3:  # recorded with plain SGD's short form: the update written into the replayed source
            assert "if r is not None:" in step._local.fast[1].source
        if i == 4:
            for o in (opts[1], opts_e[1]):
                o.momentum = 0.9
        if i == 8:
            for o in (opts[0], opts_e[0]):
                o.clip_value = 1e-3
        assert_same_bits(step(w, x, y), eager(we, x, y))
        assert_same_bits(w, we)
    assert step.replays == 10
    assert_same_bits([o.state for o in opts], [o.state for o in opts_e])
    assert "momentum_buffer" in opts[1].state["array"]
    assert [o.iterations for o in opts] == [12, 12]


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_plain_sgd_written_into_the_step_follows_a_rate_changed_on_every_step(dtype):
    # a new rate object each step (a schedule), equal ones, 0.0 then -0.0 (a weight at -0.0 then moves
    # differently: -0.0 - 0.0 is -0.0, -0.0 - -0.0 is 0.0), and in float16 a rate out of its range
    w, x, y = (v.astype(dtype) if isinstance(v, np.ndarray) else [a.astype(dtype) for a in v] for v in _linreg(2))
    we = [a.copy() for a in w]
    opts = kp.optim.optimizers(w, kp.optim.SGD, lr=0.05)
    opts_e = kp.optim.optimizers(we, kp.optim.SGD, lr=0.05)
    step, eager = _folded(opts)[0], _folded(opts_e)[1]
    rates = [0.05, 0.05, float("0.05"), 0.025, 1 / 3, 0.0, -0.0, -0.0, 0.0, 0.1, 7e-8, 0.2]
    if dtype == "float16":
        rates += [1e5, 0.05]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # (float16 and 1e5: NumPy's overflow, both sides)
        for i, lr in enumerate(rates):
            if i == 6:  # the bias at -0.0: where 0.0 and -0.0 as rates part
                w[1][...] = we[1][...] = -0.0
            for o in (*opts, *opts_e):
                o.lr = lr
            assert_same_bits(step(w, x, y), eager(we, x, y))
            assert_same_bits(w, we)
    assert step.replays == len(rates) - 2
    assert "if r is not None:" in step._local.fast[1].source
    assert [o.iterations for o in opts] == [o.iterations for o in opts_e] == [len(rates)] * 2
    assert_same_bits([o.state for o in opts], [o.state for o in opts_e])


def test_threads_each_training_their_own_weights_with_one_compiled_step():
    from thread_cases import run_threads

    dloss = kp.value_and_grad(_loss)

    @kp.compile
    def train_step(w, x, y, opts):
        loss, g = dloss(w, x, y)
        kp.optim.update(w, g, opts)
        return loss

    runs = [_linreg(seed) for seed in range(3)]
    eager = []
    for w, x, y in runs:
        we = [a.copy() for a in w]
        opts = kp.optim.optimizers(we, kp.optim.SGD, lr=0.05)
        eager.append(we)
        for _ in range(100):
            kp.optim.update(we, dloss(we, x, y)[1], opts)

    def work(i):
        w, x, y = runs[i]
        opts = kp.optim.optimizers(w, kp.optim.SGD, lr=0.05)
        for _ in range(100):
            train_step(w, x, y, opts)
        assert [o.iterations for o in opts] == [100, 100]

    run_threads(3, work)
    for (w, _, _), we in zip(runs, eager):
        assert_same_bits(w, we)
    assert train_step.replays == 3 * 98


def test_parameters_in_a_closure_are_read_from_themselves_on_every_replay():
    # full-batch training (the same data on every call) with kp.grad over the user's own Params:
    # replayed, and a parameter given a new array between calls is read there, as eagerly
    g = np.random.default_rng(2)
    x, y = g.standard_normal((30, 4)).astype("f"), g.integers(0, 3, 30)
    made = [{"W": kp.Param((g.standard_normal((4, 3)) * 0.1).astype("f")), "b": kp.Param(np.zeros(3, "f"))}]
    made.append({k: kp.Param(p.value.copy()) for k, p in made[0].items()})
    params, eager_params = made
    opts, opts_e = (kp.optim.optimizers(p, kp.optim.SGD, lr=0.3) for p in made)

    def loss(p, x, y):
        return kp.nll(x @ p["W"] + p["b"], y)

    def train_step(x, y, params=params, opts=opts):
        kp.optim.update(params, kp.grad(loss)(params, x, y), opts)

    step = kp.compile(train_step)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for i in range(12):
            if i == 6:
                for p in (params["W"], eager_params["W"]):
                    p.value = p.value * 0.5  # a new array, not an in-place edit
            step(x, y)
            train_step(x, y, eager_params, opts_e)
            assert_same_bits(params, eager_params)
    assert step.traces == 2 and step.replays == 10
