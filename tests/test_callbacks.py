"""kp.callbacks: History, EarlyStopping, ModelCheckpoint, LearningRateScheduler, CSVLogger, LambdaCallback."""

import csv

import numpy as np
import pytest
from model_cases import blobs, compiled_mlp, params_copy

import knetpy as kp
from knetpy.callbacks import (
    Callback,
    CSVLogger,
    EarlyStopping,
    LambdaCallback,
    LearningRateScheduler,
    ModelCheckpoint,
)


def _scripted(key, values):
    """A callback putting values[epoch] into the epoch logs as ``key`` (place it before the others)."""

    def put(epoch, logs):
        logs[key] = values[epoch]

    return LambdaCallback(on_epoch_end=put)


class _Snapshots(Callback):
    """Copies of the parameters at the end of every epoch."""

    def __init__(self):
        super().__init__()
        self.per_epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.per_epoch.append(params_copy(self.model))


# -- History ------------------------------------------------------------------------------------------------
def test_history_records_every_epoch_and_validation_keys():
    x, y = blobs()
    model = compiled_mlp()
    hist = model.fit(x, y, epochs=4, batch_size=32, validation_data=(x[:30], y[:30]), verbose=0)
    assert hist is model.history
    assert hist.epoch == [0, 1, 2, 3]
    assert list(hist.history) == ["loss", "accuracy", "val_loss", "val_accuracy"]
    assert all(len(v) == 4 for v in hist.history.values())
    assert all(isinstance(v, float) for v in hist.history["loss"])
    assert hist.params["steps"] == 6 and hist.params["epochs"] == 4
    # the last val_loss is the loss of the final weights on the validation data
    assert hist["val_loss"][-1] == pytest.approx(model.evaluate(x[:30], y[:30])["loss"], rel=1e-6)


# -- EarlyStopping ------------------------------------------------------------------------------------------
def test_early_stopping_stops_after_patience_and_restores_best_epoch():
    x, y = blobs()
    model = compiled_mlp()
    snaps = _Snapshots()
    scores = [5.0, 3.0, 4.0, 2.5, 2.6, 2.7, 1.0, 0.5, 0.1, 0.0]
    stopper = EarlyStopping(monitor="score", patience=2, restore_best=True)
    hist = model.fit(x, y, epochs=10, batch_size=32, callbacks=[_scripted("score", scores), snaps, stopper], verbose=0)
    assert hist.epoch == [0, 1, 2, 3, 4, 5]  # 2.6 and 2.7 did not improve on 2.5: stop after epoch 5
    assert stopper.best_epoch == 3 and stopper.best == 2.5 and stopper.stopped_epoch == 5
    final = params_copy(model)
    for k in final:
        np.testing.assert_array_equal(final[k], snaps.per_epoch[3][k])
    assert any(not np.array_equal(final[k], snaps.per_epoch[5][k]) for k in final)


def test_early_stopping_without_restore_keeps_last_weights():
    x, y = blobs()
    model = compiled_mlp()
    snaps = _Snapshots()
    stopper = EarlyStopping(monitor="score", patience=1)
    model.fit(x, y, epochs=10, batch_size=32, callbacks=[_scripted("score", [1, 2, 3] + [0] * 7), snaps, stopper], verbose=0)
    assert stopper.stopped_epoch == 1
    final = params_copy(model)
    for k in final:
        np.testing.assert_array_equal(final[k], snaps.per_epoch[-1][k])


def test_early_stopping_on_real_val_loss_restores_the_minimum():
    x, y = blobs(n_per_class=30, spread=1.5, seed=3)
    xv, yv = blobs(n_per_class=30, spread=1.5, seed=4)
    model = compiled_mlp(lr=1.0, hidden=64)
    stopper = EarlyStopping(patience=3, restore_best=True)
    hist = model.fit(x, y, epochs=25, batch_size=10, validation_data=(xv, yv), callbacks=[stopper], verbose=0)
    best = int(np.argmin(hist["val_loss"]))
    assert stopper.best_epoch == best
    assert model.evaluate(xv, yv)["loss"] == pytest.approx(hist["val_loss"][best], rel=1e-6)


def test_early_stopping_mode_and_min_delta():
    x, y = blobs()
    model = compiled_mlp()
    # 'auto' maximises accuracy-like values: a falling accuracy does not improve
    stopper = EarlyStopping(monitor="val_accuracy", patience=0)
    model.fit(x, y, epochs=5, callbacks=[_scripted("val_accuracy", [0.5, 0.4, 0.9, 0.9, 0.9]), stopper], verbose=0)
    assert stopper.tracker.mode == "max" and stopper.stopped_epoch == 1
    # improvements smaller than min_delta do not count
    stopper = EarlyStopping(monitor="score", patience=0, min_delta=0.1)
    model.fit(x, y, epochs=5, callbacks=[_scripted("score", [1.0, 0.95, 0.5, 0.4, 0.3]), stopper], verbose=0)
    assert stopper.stopped_epoch == 1


def test_early_stopping_errors_name_the_problem():
    x, y = blobs()
    model = compiled_mlp()
    with pytest.raises(KeyError, match="'val_loss' is not in the epoch logs.*validation_data"):
        model.fit(x, y, epochs=2, callbacks=[EarlyStopping()], verbose=0)
    with pytest.raises(KeyError, match="did you mean 'accuracy'"):
        model.fit(x, y, epochs=2, callbacks=[EarlyStopping(monitor="acuracy")], verbose=0)
    with pytest.raises(ValueError, match="did you mean 'max'"):
        EarlyStopping(mode="maxx")
    with pytest.raises(ValueError, match="patience must be >= 0"):
        EarlyStopping(patience=-1)


# -- ModelCheckpoint ----------------------------------------------------------------------------------------
def test_model_checkpoint_every_epoch_with_formatted_names(tmp_path):
    x, y = blobs()
    model = compiled_mlp()
    ckpt = ModelCheckpoint(tmp_path / "m-{epoch:02d}-{loss:.2f}.ckpt")
    model.fit(x, y, epochs=3, callbacks=[ckpt], verbose=0)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 3 and names[0].startswith("m-01-") and names[2].startswith("m-03-")
    assert [p.split("/")[-1] for p in ckpt.saved] == names


def test_model_checkpoint_best_only_saves_the_best_weights_and_they_load(tmp_path):
    x, y = blobs()
    model = compiled_mlp()
    snaps = _Snapshots()
    path = tmp_path / "best.ckpt"
    ckpt = ModelCheckpoint(path, monitor="score", save_best_only=True)
    model.fit(x, y, epochs=5, callbacks=[_scripted("score", [3.0, 1.0, 2.0, 1.5, 4.0]), snaps, ckpt], verbose=0)
    assert len(ckpt.saved) == 2  # epochs 0 and 1 improved
    fresh = compiled_mlp()
    fresh.load_weights(path)
    for k, p in fresh.params.items():
        np.testing.assert_array_equal(p.value, snaps.per_epoch[1][k])
    restored = kp.load(path)  # the whole model, rebuilt from the file
    np.testing.assert_array_equal(restored.w1.value, snaps.per_epoch[1]["w1"])
    assert not list(tmp_path.glob(".tmp*"))  # the atomic write left no temporary file


def test_model_checkpoint_bad_path_field_is_named(tmp_path):
    x, y = blobs()
    model = compiled_mlp()
    with pytest.raises(ValueError, match="cannot fill in path.*available fields: epoch, loss, accuracy"):
        model.fit(x, y, epochs=1, callbacks=[ModelCheckpoint(tmp_path / "{val_loss}.ckpt")], verbose=0)


# -- LearningRateScheduler ----------------------------------------------------------------------------------
def test_lr_scheduler_function_changes_opt_lr_each_epoch():
    x, y = blobs()
    model = compiled_mlp(lr=0.4)
    seen = []
    probe = LambdaCallback(on_epoch_begin=lambda epoch, logs: seen.append(model.optimizer.lr))
    sched = LearningRateScheduler(lambda epoch, lr: lr * 0.5 if epoch > 0 else lr)
    hist = model.fit(x, y, epochs=4, callbacks=[sched, probe], verbose=0)
    assert seen == pytest.approx([0.4, 0.2, 0.1, 0.05])
    assert hist["lr"] == pytest.approx([0.4, 0.2, 0.1, 0.05])
    assert model.optimizer.lr == pytest.approx(0.05)


def test_lr_scheduler_with_optim_schedule_object():
    x, y = blobs()
    model = compiled_mlp(lr=1.0)
    step = kp.optim.StepLR(model.optimizer, step_size=2, gamma=0.1)
    seen = []
    probe = LambdaCallback(on_epoch_begin=lambda epoch, logs: seen.append(model.optimizer.lr))
    model.fit(x, y, epochs=5, callbacks=[LearningRateScheduler(step), probe], verbose=0)
    assert seen == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01])


def test_lr_scheduler_errors():
    x, y = blobs()
    model = compiled_mlp()
    with pytest.raises(ValueError, match="lr=-1.0 for epoch 0"):
        model.fit(x, y, epochs=1, callbacks=[LearningRateScheduler(lambda e, lr: -1.0)], verbose=0)
    other = kp.optim.StepLR(kp.optim.SGD([kp.Param(np.zeros(2))], lr=0.1), step_size=1)
    with pytest.raises(ValueError, match="different optimizer"):
        model.fit(x, y, epochs=1, callbacks=[LearningRateScheduler(other)], verbose=0)
    with pytest.raises(TypeError, match="function \\(epoch, lr\\)"):
        LearningRateScheduler(0.1)


# -- CSVLogger -------------------------------------------------------------------------------------------------
def test_csv_logger_writes_header_and_one_row_per_epoch(tmp_path):
    x, y = blobs()
    model = compiled_mlp()
    path = tmp_path / "log.csv"
    hist = model.fit(x, y, epochs=3, validation_data=(x[:20], y[:20]), callbacks=[CSVLogger(path)], verbose=0)
    with open(path) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]
    assert [r[0] for r in rows[1:]] == ["0", "1", "2"]
    for i, row in enumerate(rows[1:]):
        for key, cell in zip(rows[0][1:], row[1:]):
            assert float(cell) == pytest.approx(hist[key][i], rel=1e-12)


def test_csv_logger_append_adds_rows_without_second_header(tmp_path):
    x, y = blobs()
    model = compiled_mlp()
    path = tmp_path / "log.csv"
    model.fit(x, y, epochs=2, callbacks=[CSVLogger(path)], verbose=0)
    model.fit(x, y, epochs=2, callbacks=[CSVLogger(path, append=True)], verbose=0)
    with open(path) as f:
        rows = list(csv.reader(f))
    assert len(rows) == 5 and rows[0][0] == "epoch" and rows[3][0] == "0"


# -- LambdaCallback, subclasses, hook order ----------------------------------------------------------------
class _Counter(Callback):
    def __init__(self):
        super().__init__()
        self.calls = []

    def on_train_begin(self, logs=None):
        self.calls.append("train_begin")

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(f"epoch_begin {epoch}")

    def on_batch_begin(self, batch, logs=None):
        self.calls.append(f"batch_begin {batch}")

    def on_batch_end(self, batch, logs=None):
        assert np.isfinite(logs["loss"]) and logs["size"] > 0
        self.calls.append(f"batch_end {batch}")

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(f"epoch_end {epoch} {sorted(logs)}")

    def on_train_end(self, logs=None):
        self.calls.append("train_end")


def test_subclass_hooks_are_called_in_order():
    x, y = blobs(n_per_class=10)  # 30 samples, batch 16: 2 batches per epoch
    model = compiled_mlp()
    counter = _Counter()
    model.fit(x, y, epochs=2, batch_size=16, callbacks=[counter], verbose=0)
    assert counter.model is model
    assert counter.params == {"epochs": 2, "steps": 2, "verbose": 0}
    epoch = ["batch_begin 0", "batch_end 0", "batch_begin 1", "batch_end 1"]
    assert counter.calls == (
        ["train_begin", "epoch_begin 0", *epoch, "epoch_end 0 ['accuracy', 'loss']"]
        + ["epoch_begin 1", *epoch, "epoch_end 1 ['accuracy', 'loss']", "train_end"]
    )


def test_lambda_callback_and_stop_training_from_a_batch():
    x, y = blobs(n_per_class=20)
    model = compiled_mlp()
    batches = []

    def on_batch_end(batch, logs):
        batches.append(batch)
        if batch == 2:
            model.stop_training = True

    hist = model.fit(x, y, epochs=5, batch_size=10, callbacks=[LambdaCallback(on_batch_end=on_batch_end)], verbose=0)
    assert batches == [0, 1, 2] and hist.epoch == [0]


def test_lambda_callback_rejects_unknown_hooks_and_plain_functions_in_fit():
    with pytest.raises(TypeError, match="did you mean 'on_epoch_end'"):
        LambdaCallback(on_epoch_ends=print)
    x, y = blobs()
    with pytest.raises(TypeError, match="wrap a function with kp.callbacks.LambdaCallback"):
        compiled_mlp().fit(x, y, callbacks=[print], verbose=0)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_csv_logger_keeps_finished_epochs_when_training_fails(tmp_path):
    x, y = blobs(n_per_class=20)
    model = compiled_mlp()
    path = tmp_path / "log.csv"
    poison = LambdaCallback(on_epoch_end=lambda e, logs: x.__setitem__(slice(0, 1), np.nan) if e == 1 else None)
    with pytest.raises(FloatingPointError):
        model.fit(x, y, epochs=4, shuffle=False, callbacks=[CSVLogger(path), poison], verbose=0)
    with open(path) as f:
        rows = list(csv.reader(f))
    assert [r[0] for r in rows] == ["epoch", "0", "1"]
