"""Model.fit / evaluate / predict on the strict test backend, and the host transfers of a training step.

A GPU stalls whenever a step reads a device value on the host (``float(loss)``, a NaN check, a metric
turned into a Python number). The strict backend counts every such copy, so these tests pin a step
to zero of them: the only copies made are the meant ones, through ``knetpy.backend.to_host``, when
figures are logged (once per epoch with ``verbose=0``).
"""

import numpy as np
import pytest
from model_cases import blobs

import knetpy as kp
from knetpy import backend
from knetpy import layers as L
from knetpy.testing import strict

VOCAB, STEPS = 7, 6


def _mlp():
    return kp.Sequential(L.Dense(16, activation="relu"), L.Dense(3))


def _lenet():
    return kp.Sequential(L.Conv2D(4, 3, padding="same", activation="relu"), L.MaxPool2D(2),
                         L.Conv2D(6, 3, activation="relu"), L.Flatten(), L.Dense(10))


def _charlm():
    return kp.Sequential(L.Embedding(VOCAB, 8), L.LSTM(12, return_sequences=True), L.Dense(VOCAB))


def _sequence_loss(scores, targets):
    """Cross-entropy per character: (N, T, V) scores against (N, T) next characters."""
    return kp.losses.cross_entropy(kp.reshape(scores, (-1, VOCAB)), targets.reshape(-1))


def _mlp_data():
    return blobs(n_per_class=20)


def _lenet_data():
    g = np.random.default_rng(0)
    y = g.integers(0, 10, 48)
    x = g.standard_normal((48, 1, 8, 8)).astype(np.float32) * 0.3
    x[np.arange(48), 0, y % 8, y // 2] += 2.0  # a bright pixel that depends on the class
    return x, y


def _charlm_data():
    text = np.tile(np.arange(VOCAB), 12)  # a repeating sequence: the next character is predictable
    starts = np.arange(0, len(text) - STEPS - 1, 2)
    x = np.stack([text[s:s + STEPS] for s in starts])
    return x, np.stack([text[s + 1:s + STEPS + 1] for s in starts])


MODELS = {
    "mlp": (_mlp, _mlp_data, "cross_entropy", ["accuracy"], lambda: kp.optim.Adam(lr=0.01)),
    "lenet": (_lenet, _lenet_data, "cross_entropy", ["accuracy"], lambda: kp.optim.SGD(lr=0.1, momentum=0.9)),
    "charlm": (_charlm, _charlm_data, _sequence_loss, [], lambda: kp.optim.Adam(lr=0.01, clip_norm=1.0)),
}


def _compiled(name):
    make, data, loss, metrics, opt = MODELS[name]
    kp.set_seed(0)
    model = make()
    model.compile(loss=loss, optimizer=opt(), metrics=metrics)
    return model, data()


def _host(a):
    assert isinstance(a, strict.StrictArray), f"expected a strict array, got {type(a).__name__}"
    return a.get()


@pytest.mark.parametrize("name", list(MODELS))
def test_fit_evaluate_predict_on_strict_data_match_numpy(name):
    model, (x, y) = _compiled(name)
    ref = model.fit(x, y, epochs=2, batch_size=16, verbose=0).history
    ref_eval, ref_pred = model.evaluate(x, y), model.predict(x[:5])

    model, (x, y) = _compiled(name)
    sx, sy = strict.asarray(x), strict.asarray(y)
    hist = model.fit(sx, sy, epochs=2, batch_size=16, verbose=0).history
    for p_name, p in model.params.items():
        assert isinstance(p.value, strict.StrictArray), f"{name}: {p_name} left the device"
    assert hist.keys() == ref.keys()
    for key in ref:
        assert all(type(v) is float for v in hist[key]), f"{name}: history {key} holds {hist[key]}"
        np.testing.assert_allclose(hist[key], ref[key], rtol=1e-4, err_msg=f"{name}: {key}")
    evaluated = model.evaluate(sx, sy)
    for key in ref_eval:
        np.testing.assert_allclose(evaluated[key], ref_eval[key], rtol=1e-4, err_msg=f"{name}: evaluate {key}")
    np.testing.assert_allclose(_host(model.predict(sx[:5])), ref_pred, rtol=1e-4, atol=1e-5)
    assert ref["loss"][-1] < ref["loss"][0], f"{name} did not learn: {ref['loss']}"


class _CountSteps(kp.callbacks.Callback):
    """Host transfers made between one batch's start and the next one's in an epoch (the step in between)."""

    def __init__(self):
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append([])

    def on_batch_begin(self, batch, logs=None):
        self.epochs[-1].append((strict.transfers["to_host"], len(strict.transfer_log)))

    def per_step(self):
        return [b[0] - a[0] for marks in self.epochs for a, b in zip(marks, marks[1:])]

    def where(self):
        return [strict.transfer_log[a[1]:b[1]] for marks in self.epochs for a, b in zip(marks, marks[1:])]


@pytest.mark.parametrize("compile", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.filterwarnings("ignore:kp.compile")  # a step that cannot be replayed runs eagerly: still checked
def test_training_steps_make_no_host_transfers(name, compile):
    model, (x, y) = _compiled(name)
    if name == "mlp":
        model.add(L.Dropout(0.2))  # masks drawn on the device, not copied there
    sx, sy = strict.asarray(x), strict.asarray(y)
    counter = _CountSteps()
    model.fit(sx, sy, epochs=1, batch_size=16, verbose=0, compile=compile)  # builds layers, optimizer state
    strict.reset_transfers()
    meant = backend.host_transfers
    model.fit(sx, sy, epochs=2, batch_size=16, verbose=0, callbacks=[counter], compile=compile)
    steps = counter.per_step()
    assert len(steps) >= 4
    assert sum(steps) == 0, f"{name}: a training step copied to the host: {counter.where()}"
    meant = backend.host_transfers - meant
    assert meant == 2, f"{name}: expected one meant copy per epoch (the epoch's figures), got {meant}"
    assert strict.transfers["to_host"] == meant, (
        f"{name}: copies outside knetpy.backend.to_host: {strict.transfer_log}")
    strict.reset_transfers()
    meant = backend.host_transfers
    model.evaluate(sx, sy)
    assert strict.transfers["to_host"] == backend.host_transfers - meant == 1, strict.transfer_log


def test_logging_every_batch_copies_only_through_to_host():
    model, (x, y) = _compiled("mlp")
    losses = []

    class Log(kp.callbacks.Callback):
        def on_batch_end(self, batch, logs=None):
            losses.append(logs["loss"])

    sx, sy = strict.asarray(x), strict.asarray(y)
    model.fit(sx, sy, epochs=1, batch_size=16, verbose=0)
    strict.reset_transfers()
    meant = backend.host_transfers
    model.fit(sx, sy, epochs=1, batch_size=16, verbose=0, callbacks=[Log()])
    meant = backend.host_transfers - meant
    assert all(type(v) is float for v in losses) and len(losses) == 4
    assert meant == len(losses) + 1  # each batch's loss for the callback, the epoch's figures
    assert strict.transfers["to_host"] == meant, strict.transfer_log


def test_a_nan_loss_on_a_device_stops_fit_at_the_end_of_the_epoch():
    model, (x, y) = _compiled("mlp")
    x = x.copy()
    x[5] = np.nan
    with pytest.raises(FloatingPointError, match=r"the loss became nan during epoch 1/3.*read once per epoch"):
        model.fit(strict.asarray(x), strict.asarray(y), epochs=3, batch_size=16, verbose=0)


def test_batchnorm_cumulative_average_stays_on_the_device():
    bn = L.BatchNorm(momentum=None)
    x = strict.asarray(np.random.default_rng(0).standard_normal((8, 3)).astype(np.float32))
    bn(x)
    strict.reset_transfers()
    bn(x * 2.0)
    assert strict.transfers["to_host"] == 0, strict.transfer_log
    ref = L.BatchNorm(momentum=None)
    ref(x.get())
    ref(x.get() * 2.0)
    np.testing.assert_allclose(bn.running_var.value.get(), ref.running_var.value, rtol=1e-6)


def test_validation_split_and_check_finite_work_on_strict_data():
    model, (x, y) = _compiled("mlp")
    hist = model.fit(strict.asarray(x), strict.asarray(y), epochs=2, batch_size=16, verbose=0,
                     validation_split=0.25, check_finite=True).history
    assert set(hist) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(type(v) is float for values in hist.values() for v in values)
    bad = x.copy()
    bad[3, 1] = np.inf
    with pytest.raises(ValueError, match="x has Inf in sample 3"):
        model.fit(strict.asarray(bad), strict.asarray(y), epochs=1, verbose=0, check_finite=True)


def test_a_live_bar_reads_its_figures_only_when_it_redraws():
    import io

    calls = []
    bar = kp.progress.ProgressBar(10, mode="bar", file=io.StringIO(), interval=3600)
    for done in range(1, 11):
        bar.update(done, lambda done=done: calls.append(done) or {"loss": 1.0})
    assert calls == [1, 10]  # the first draw and the last, not every step
    assert bar.values == {"loss": 1.0}


@pytest.mark.parametrize("name", list(MODELS))
def test_host_data_for_a_model_on_the_device_moves_each_batch_once(name):
    model, (x, y) = _compiled(name)
    model.to("strict")
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    strict.reset_transfers()
    meant = backend.host_transfers
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    batches = 2 * -(-len(x) // 16)
    assert strict.transfers["to_device"] == 2 * batches, strict.transfers  # x and y of each batch, nothing else
    assert strict.transfers["to_host"] == backend.host_transfers - meant == 2, strict.transfer_log


def test_the_step_count_catches_a_loss_read_on_the_host(monkeypatch):
    import knetpy.training

    monkeypatch.setattr(knetpy.training, "_step_value", float)  # what fit did before: float(loss) every step
    model, (x, y) = _compiled("mlp")
    counter = _CountSteps()
    model.fit(strict.asarray(x), strict.asarray(y), epochs=1, batch_size=16, verbose=0, callbacks=[counter])
    assert counter.per_step() == [2, 2, 2]  # the loss and the accuracy of every step
    assert counter.where()[0] == ["float", "float"]
