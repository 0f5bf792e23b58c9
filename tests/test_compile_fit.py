"""fit(compile=True) trains exactly as eager fit: the same histories, weights and layer state, bit for bit."""

import numpy as np
import pytest
from model_cases import blobs, compiled_mlp

import knetpy as kp
from knetpy import training
from knetpy.optim import SGD


def _sequential(kind):
    L = kp.layers
    if kind == "dense":
        return [L.Dense(16, activation="relu"), L.Dense(3)]
    if kind == "batchnorm_dropout":
        return [L.Dense(16), L.BatchNorm(), L.Activation("relu"), L.Dropout(0.3), L.Dense(3)]
    if kind == "conv":
        return [L.Reshape((1, 2, 1)), L.Conv2D(4, (2, 1)), L.BatchNorm(), L.Flatten(), L.Dense(3)]
    if kind == "lstm":
        return [L.Reshape((2, 1)), L.LSTM(8), L.Dropout(0.2), L.Dense(3)]
    if kind == "gru":
        return [L.Reshape((2, 1)), L.GRU(8, return_sequences=True), L.SimpleRNN(5), L.Dense(3)]
    raise ValueError(kind)


def _fit(kind, compile, optimizer, epochs=3):
    kp.set_seed(0)
    x, y = blobs(40)
    if kind == "tiny":
        model = compiled_mlp()
    else:
        model = kp.Sequential(_sequential(kind))
        model.compile(loss="cross_entropy", optimizer=optimizer(), metrics=["accuracy"])
    hist = model.fit(x, y, epochs=epochs, batch_size=16, validation_split=0.2, verbose=0, compile=compile)
    state = {k: t.value for layer in model.layers() for k, t in layer.state().items()}
    return hist.history, {k: p.value for k, p in model.params.items()}, state, model


@pytest.mark.parametrize("kind", ["tiny", "dense", "batchnorm_dropout", "conv", "lstm", "gru"])
@pytest.mark.parametrize("optimizer", [lambda: kp.optim.SGD(lr=0.1), lambda: kp.optim.SGD(lr=0.1, momentum=0.9),
                                       lambda: kp.optim.Adam(lr=0.01)], ids=["sgd", "sgd_momentum", "adam"])
def test_fit_compiled_equals_eager_bit_for_bit(kind, optimizer):
    eager = _fit(kind, False, optimizer)
    compiled = _fit(kind, True, optimizer)
    assert eager[0] == compiled[0]  # every loss and metric of every epoch
    for a, b in zip(eager[1:3], compiled[1:3]):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes(), k
    step = training.compiled_step(compiled[3])
    assert step.replays > 0  # the comparison was with a replayed step, not an eager one
    assert step.traces <= 3


def test_fit_compiled_replays_after_two_batches():
    model = compiled_mlp()
    x, y = blobs(40)
    model.fit(x, y, epochs=2, batch_size=30, shuffle=False, verbose=0, compile=True)
    step = training.compiled_step(model)
    assert (step.traces, step.replays) == (2, 6)  # 8 batches of 30: two traces, then replays


def test_python_side_effects_in_forward_are_skipped_on_replay():
    # Why fit does not compile a forward of your own by default: TinyMLP's forward appends to a list, which replay does not.
    model = compiled_mlp()
    x, y = blobs(40)
    model.fit(x, y, epochs=1, batch_size=30, verbose=0, compile=True)
    assert len(model.modes) == 2 + 1  # two traced batches, then the build call in fit; none for replays


def _dense_fit(compile, callbacks=(), optimizer=None, x=None, y=None, epochs=3, monkeypatch=None):
    """A dense classifier's fit with plain SGD (or ``optimizer``); (history, weights, optimizer, model,
    how many times SGD.step ran)."""
    kp.set_seed(0)
    if x is None:
        x, y = blobs(40)
    model = kp.Sequential(kp.layers.Dense(16, activation="relu"), kp.layers.Dense(3))
    opt = optimizer or SGD(lr=0.1)
    model.compile(loss="cross_entropy", optimizer=opt, metrics=["accuracy"])
    steps = [0]
    if monkeypatch is not None:
        real = SGD.step

        def counted(self, closure=None):
            steps[0] += 1
            return real(self, closure)

        monkeypatch.setattr(SGD, "step", counted)
    try:
        hist = model.fit(x, y, epochs=epochs, batch_size=16, verbose=0, compile=compile, callbacks=list(callbacks))
    finally:
        if monkeypatch is not None:
            monkeypatch.undo()
    return hist.history, {k: p.value.copy() for k, p in model.params.items()}, opt, model, steps[0]


def _same_training(a, b):
    assert a[0] == b[0]
    for k in a[1]:
        assert a[1][k].tobytes() == b[1][k].tobytes(), k


def test_plain_sgd_updates_inside_the_replayed_step(monkeypatch):
    eager = _dense_fit(False)
    compiled = _dense_fit(True, monkeypatch=monkeypatch)
    _same_training(eager, compiled)
    step = training.compiled_step(compiled[3])
    assert step.replays > 0
    assert compiled[4] == step.traces  # SGD.step ran on the traced batches only; replays update in the step
    # the optimizer's bookkeeping as an eager fit leaves it: step counts, iterations, versions, no gradients
    assert compiled[2].iterations == eager[2].iterations == 24
    assert {k: s["step"] for k, s in compiled[2].state.items()} == {k: s["step"] for k, s in eager[2].state.items()}
    assert [p._version for p in compiled[3].params.values()] == [p._version for p in eager[3].params.values()]
    assert all(p.grad is None for p in compiled[3].params.values())


def _at_batch(n, fn):
    seen = [0]

    def on_batch_end(batch, logs):
        seen[0] += 1
        if seen[0] == n:
            fn()

    return kp.callbacks.LambdaCallback(on_batch_end=on_batch_end)


@pytest.mark.parametrize("change", ["lr", "momentum", "decay", "clip", "freeze"])
def test_a_change_of_setting_during_fit_trains_as_eager_fit_does(change):
    """The step written for plain SGD reads the rate on every replay, and gives way to the optimizer's
    own step when it is plain SGD no longer or a layer is frozen."""

    def run(compile):
        holder = {}

        def edit():
            opt, model = holder["opt"], holder["model"]
            if change == "lr":
                opt.lr = 0.03
            elif change == "momentum":
                opt.momentum = 0.9
            elif change == "decay":
                opt.weight_decay = 1e-2
            elif change == "clip":
                opt.clip_norm = 0.05
            else:
                model.layers()[0].trainable = False
                model.compile(loss="cross_entropy", optimizer=opt, metrics=["accuracy"])

        class Keep(kp.callbacks.Callback):
            def on_train_begin(self, logs=None):
                holder["model"], holder["opt"] = self.model, self.model.optimizer

        return _dense_fit(compile, callbacks=[Keep(), _at_batch(5, edit)])

    eager, compiled = run(False), run(True)
    _same_training(eager, compiled)
    assert compiled[2].iterations == eager[2].iterations


def test_a_loss_that_is_not_finite_stops_fit_with_the_weights_as_they_were():
    x, y = blobs(40)
    x = x.copy()
    x[100] = np.nan  # in the 7th batch of 16 (no shuffling): its loss is NaN

    def run(compile):
        kp.set_seed(0)
        model = kp.Sequential(kp.layers.Dense(16, activation="relu"), kp.layers.Dense(3))
        model.compile(loss="cross_entropy", optimizer=SGD(lr=0.1))
        with pytest.raises(FloatingPointError, match="the loss is"):
            model.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0, compile=compile)
        return {k: p.value.copy() for k, p in model.params.items()}, model

    eager, (compiled, model) = run(False)[0], run(True)
    assert training.compiled_step(model).replays > 0
    for k in eager:
        assert np.isfinite(eager[k]).all() and eager[k].tobytes() == compiled[k].tobytes(), k
