"""fit(checkpoint=..., resume=True): an interrupted run resumes bit-identically to an uninterrupted one."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from resume_cases import data, make_model, snapshot, train

import knetpy as kp
from knetpy.layers import Activation, BatchNorm, Dense, Dropout

HERE = os.path.dirname(os.path.abspath(__file__))


def assert_same_weights(a, b):
    assert list(a) == list(b)
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        assert np.array_equal(a[name], b[name]), f"{name} differs"


@pytest.fixture(scope="module")
def straight_run():
    """Four epochs without interruption (seed 1): the reference every resumed run must equal."""
    kp.set_seed(0)
    model, history = train(seed=1, epochs=4)
    return snapshot(model), history.history, history.epoch


# -- resuming at an epoch boundary ---------------------------------------------------------------------
def test_two_epochs_then_resume_with_fresh_objects_and_another_seed_is_bit_identical(tmp_path, straight_run):
    weights, hist, epochs = straight_run
    path = tmp_path / "run.ckpt"
    first, h1 = train(seed=1, epochs=2, checkpoint=path)
    assert h1.epoch == [0, 1] and kp.load(path)["progress"]["epoch"] == 2
    assert not np.array_equal(snapshot(first)["0.w"], weights["0.w"])  # two epochs are not four
    resumed, h2 = train(seed=12345, epochs=4, checkpoint=path, resume=True)
    assert_same_weights(snapshot(resumed), weights)  # parameters and BatchNorm running statistics
    assert h2.history == hist and h2.epoch == epochs  # loss, accuracy, val_*, lr: every value equal
    assert hist["lr"] == [0.01, 0.005, 0.0025, 0.00125]  # the schedule went on where it stopped
    assert resumed.optimizer.iterations == 4 * 8
    assert kp.load(path)["progress"]["epoch"] == 4


def test_without_the_saved_random_state_the_result_differs(tmp_path, straight_run):
    """Weights and optimizer alone do not make an exact resume: shuffling and dropout need the generator."""
    path = tmp_path / "run.ckpt"
    train(seed=1, epochs=2, checkpoint=path)
    model = make_model(seed=12345)
    x, y = data()
    model.predict(x[:2])  # builds the layers
    model.load_weights(path)  # a training checkpoint serves as a weights file too
    model.optimizer.bind(model.params)
    model.optimizer.load_state_dict(kp.load(path)["optimizer"])
    model.fit(x, y, epochs=4, initial_epoch=2, batch_size=16, verbose=0)
    assert not np.array_equal(snapshot(model)["0.w"], straight_run[0]["0.w"])


def test_checkpoint_holds_a_loadable_model_and_the_training_state(tmp_path):
    path = tmp_path / "run.ckpt"
    model, _ = train(seed=1, epochs=2, checkpoint=path)
    state = kp.load(path)
    assert state["kind"] == "knetpy-training-state"
    x, _ = data()
    np.testing.assert_array_equal(state["model"].predict(x), model.predict(x))  # architecture + weights + state
    assert state["optimizer"]["meta"]["optimizer"] == "Adam" and state["optimizer"]["meta"]["iterations"] == 16
    np.testing.assert_array_equal(
        state["optimizer"]["arrays"]["0.w/exp_avg"], model.optimizer.state["0.w"]["exp_avg"]
    )
    assert state["rng"] == kp.get_rng_state()
    assert state["callbacks"][0]["class"] == "LearningRateScheduler"
    assert state["callbacks"][0]["state"]["schedule"]["last_step"] == 1
    progress = state["progress"]
    assert (progress["epoch"], progress["batch"], progress["step"]) == (2, 0, 16)
    assert progress["history"]["loss"] == model.history.history["loss"]


def test_resume_without_a_checkpoint_file_starts_fresh(tmp_path, straight_run):
    path = tmp_path / "new.ckpt"
    model, history = train(seed=1, epochs=4, checkpoint=path, resume=True)
    assert_same_weights(snapshot(model), straight_run[0])
    assert history.history == straight_run[1]
    assert os.path.exists(path)


def test_epochs_is_the_total_a_finished_run_trains_no_more_and_a_longer_one_goes_on(tmp_path, straight_run):
    path = tmp_path / "run.ckpt"
    train(seed=1, epochs=4, checkpoint=path)
    again, history = train(seed=7, epochs=4, checkpoint=path, resume=True)
    assert_same_weights(snapshot(again), straight_run[0])
    assert history.epoch == [0, 1, 2, 3] and again.optimizer.iterations == 32
    longer, history = train(seed=7, epochs=5, checkpoint=path, resume=True)
    assert history.epoch == [0, 1, 2, 3, 4] and longer.optimizer.iterations == 40
    assert history.history["loss"][:4] == straight_run[1]["loss"]


# -- resuming inside an epoch --------------------------------------------------------------------------
class _Crash(kp.callbacks.Callback):
    """Raise after a given optimizer step, as a crash would."""

    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_batch_end(self, batch, logs=None):
        if self.model.optimizer.iterations == self.step:
            raise KeyboardInterrupt


@pytest.mark.parametrize("crash_at", [13, 20])
def test_checkpoints_every_n_steps_resume_inside_an_epoch(tmp_path, straight_run, crash_at):
    path = tmp_path / "run.ckpt"
    with pytest.raises(KeyboardInterrupt):
        train(seed=1, epochs=4, callbacks=[_Crash(crash_at)], checkpoint=path, checkpoint_every=3)
    progress = kp.load(path)["progress"]
    saved_step = crash_at - crash_at % 3
    assert progress["step"] == saved_step and progress["epoch"] == saved_step // 8
    assert progress["batch"] == saved_step % 8 > 0  # inside an epoch
    resumed, history = train(seed=999, epochs=4, checkpoint=path, resume=True, checkpoint_every=3)
    assert_same_weights(snapshot(resumed), straight_run[0])
    assert history.history == straight_run[1]


def test_a_schedule_function_of_the_current_rate_is_not_applied_twice_to_a_resumed_epoch(tmp_path):
    x, y = data()

    def run(seed, **kw):
        model = make_model(seed)
        halve = kp.callbacks.LearningRateScheduler(lambda epoch, lr: lr * 0.5 if epoch else lr)
        history = model.fit(x, y, epochs=3, batch_size=16, callbacks=[halve, *kw.pop("extra", [])], verbose=0, **kw)
        return model, history

    straight, h_straight = run(1)
    path = tmp_path / "run.ckpt"
    with pytest.raises(KeyboardInterrupt):
        run(1, checkpoint=path, checkpoint_every=4, extra=[_Crash(14)])  # saved at step 12: inside epoch 2
    resumed, h_resumed = run(2, checkpoint=path, checkpoint_every=4, resume=True)
    assert h_resumed.history["lr"] == h_straight.history["lr"] == [0.01, 0.005, 0.0025]
    assert_same_weights(snapshot(resumed), snapshot(straight))


def test_resuming_inside_an_epoch_with_fewer_batches_is_refused(tmp_path):
    path = tmp_path / "run.ckpt"
    with pytest.raises(KeyboardInterrupt):
        train(seed=1, epochs=2, callbacks=[_Crash(7)], checkpoint=path, checkpoint_every=6)
    model = make_model(seed=1)
    x, y = data()
    with pytest.raises(ValueError, match=r"written after batch 6 of epoch 1, but the training data now has only 3 batches"):
        model.fit(x, y, epochs=2, batch_size=40, checkpoint=path, resume=True, verbose=0)


# -- callbacks with state --------------------------------------------------------------------------------
def test_early_stopping_and_model_checkpoint_state_survive_a_resume(tmp_path):
    def run(seed, path, epochs, **kw):
        stop = kp.callbacks.EarlyStopping(monitor="val_loss", patience=2, min_delta=0.05, restore_best=True)
        best = kp.callbacks.ModelCheckpoint(str(tmp_path / "best.ckpt"), monitor="val_loss", save_best_only=True)
        model, history = train(seed, epochs, callbacks=[stop, best], checkpoint=path, **kw)
        return model, history, stop, best

    model_a, hist_a, stop_a, best_a = run(1, tmp_path / "a.ckpt", 30)
    assert stop_a.stopped_epoch is not None and stop_a.stopped_epoch < 29  # it did stop early
    _, _, stop_b, _ = run(1, tmp_path / "b.ckpt", stop_a.stopped_epoch - 1)  # interrupted before the stop
    assert stop_b.stopped_epoch is None
    model_c, hist_c, stop_c, best_c = run(5, tmp_path / "b.ckpt", 30, resume=True)
    assert (stop_c.stopped_epoch, stop_c.best_epoch, stop_c.wait) == (stop_a.stopped_epoch, stop_a.best_epoch, stop_a.wait)
    assert best_c.tracker.best == best_a.tracker.best and best_c.saved == best_a.saved
    assert hist_c.history == hist_a.history
    assert_same_weights(snapshot(model_c), snapshot(model_a))  # the best epoch's weights, restored at the end
    # Resuming the finished run again: it stays stopped and ends with the same weights.
    model_d, hist_d, stop_d, _ = run(6, tmp_path / "b.ckpt", 30, resume=True)
    assert hist_d.epoch == hist_a.epoch
    assert_same_weights(snapshot(model_d), snapshot(model_a))


# -- failures keep the last good checkpoint --------------------------------------------------------------
class _Poison(kp.callbacks.Callback):
    """Put a NaN into the training inputs at the start of a given epoch (counting from 0)."""

    def __init__(self, x, epoch):
        super().__init__()
        self.x, self.epoch = x, epoch
        self.weights_at_epoch_end = []

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            self.x[:] = np.nan

    def on_epoch_end(self, epoch, logs=None):
        self.weights_at_epoch_end.append(snapshot(self.model))


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_nan_loss_names_epoch_step_batch_and_keeps_the_last_good_checkpoint(tmp_path):
    path = tmp_path / "run.ckpt"
    x, y = data()
    model = make_model(seed=1)
    poison = _Poison(x, epoch=1)
    message = r"loss is nan at epoch 2/3, step 9 \(batch index 0 of the epoch.*checkpoint .*run.ckpt keeps the state after epoch 1 \(step 8\)"
    with pytest.raises(FloatingPointError, match=message):
        model.fit(x, y, epochs=3, batch_size=16, callbacks=[poison], checkpoint=path, verbose=0)
    state = kp.load(path)  # still there, intact, from before the bad step
    assert state["progress"]["epoch"] == 1 and state["progress"]["step"] == 8
    saved = {**{k: p.value for k, p in state["model"].params.items()}, **{k: t.value for k, t in state["model"].state().items()}}
    assert_same_weights(saved, poison.weights_at_epoch_end[0])
    assert all(np.all(np.isfinite(v)) for v in saved.values())


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_nan_loss_inside_an_epoch_keeps_the_step_checkpoint_before_it(tmp_path):
    path = tmp_path / "run.ckpt"
    x, y = data()
    model = make_model(seed=1)
    x[5 * 16 :] = np.nan  # batches 5.. of the first epoch (shuffle off)
    with pytest.raises(FloatingPointError, match=r"epoch 1/2, step 6 \(batch index 5.*after batch 4 of epoch 1 \(step 4\)"):
        model.fit(x, y, epochs=2, batch_size=16, shuffle=False, checkpoint=path, checkpoint_every=2, verbose=0)
    assert kp.load(path)["progress"]["step"] == 4


# -- errors ----------------------------------------------------------------------------------------------
def test_resuming_into_a_model_of_another_shape_names_the_parameter_and_both_shapes(tmp_path):
    path = tmp_path / "run.ckpt"
    train(seed=1, epochs=1, checkpoint=path)
    x, y = data()
    other = kp.Sequential(  # the same layers as the saved model, but 8 units where it had 16
        Dense(8), BatchNorm(), Activation("relu"), Dropout(0.3), Dense(16, activation="tanh"), Dropout(0.2), Dense(3)
    )
    other.compile("cross_entropy", "adam")
    with pytest.raises(kp.CheckpointError, match=r"parameter '0.w' has shape \(5, 16\) in the file but \(5, 8\) in the model"):
        other.fit(x, y, epochs=2, checkpoint=path, resume=True, verbose=0)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"resume": True}, ValueError, r"resume=True needs checkpoint=path"),
        ({"checkpoint_every": 5}, ValueError, r"checkpoint_every needs checkpoint=path"),
        ({"checkpoint": "CK", "checkpoint_every": 0}, ValueError, r"checkpoint_every must be an integer >= 1, got 0"),
        ({"checkpoint": "CK", "resume": "yes"}, TypeError, r"resume must be True or False, got 'yes'"),
        ({"checkpoint": 3}, TypeError, r"checkpoint must be a file path, got int"),
        ({"checkpoint": "CK", "resume": True, "initial_epoch": 2}, ValueError, r"initial_epoch=2 or resume=True, not both"),
    ],
)
def test_checkpoint_option_errors(tmp_path, kwargs, error, message):
    if kwargs.get("checkpoint") == "CK":
        kwargs["checkpoint"] = str(tmp_path / "run.ckpt")
    x, y = data()
    with pytest.raises(error, match=message):
        make_model(seed=1).fit(x, y, epochs=1, verbose=0, **kwargs)


def test_resuming_from_a_plain_model_file_says_what_it_is(tmp_path):
    path = tmp_path / "model.ckpt"
    model, _ = train(seed=1, epochs=1)
    model.save(path)
    x, y = data()
    with pytest.raises(kp.CheckpointError, match=r"not a training checkpoint written by fit\(checkpoint=...\)"):
        make_model(seed=1).fit(x, y, epochs=2, checkpoint=path, resume=True, verbose=0)


# -- a real kill --------------------------------------------------------------------------------------------
def _script(*args):
    return [sys.executable, os.path.join(HERE, "resume_cases.py"), *map(str, args)]


def _load_result(out):
    with np.load(out) as f:
        weights = {k: f[k] for k in f.files}
    with open(str(out) + ".json") as f:
        return weights, json.load(f)


@pytest.mark.parametrize("every", [None, 5], ids=["epoch-checkpoints", "every-5-steps"])
def test_sigkill_during_training_then_resume_in_another_process(tmp_path, straight_run, every):
    """Kill a training process in epoch 3 (after epoch 2's checkpoint), resume in a new process."""
    path = tmp_path / "run.ckpt"
    extra = [] if every is None else ["--checkpoint-every", every]
    proc = subprocess.Popen(
        _script("--seed", 1, "--epochs", 4, "--out", tmp_path / "never.npz", "--checkpoint", path,
                "--hang-at-step", 21, *extra),
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "READY"  # step 21 done: inside epoch 3
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        proc.kill()
        proc.stdout.close()
    progress = kp.load(path)["progress"]
    assert progress["step"] == (16 if every is None else 20)
    out = tmp_path / "resumed.npz"
    subprocess.run(
        _script("--seed", 4242, "--epochs", 4, "--out", out, "--checkpoint", path, "--resume", *extra),
        check=True, timeout=120,
    )
    weights, result = _load_result(out)
    assert_same_weights(weights, straight_run[0])
    assert result["history"] == straight_run[1] and result["epoch"] == straight_run[2]


# -- every optimizer, and models without a config ------------------------------------------------------------
@pytest.mark.parametrize(
    "optimizer", ["sgd", "momentum", "nesterov", "adagrad", "adadelta", "rmsprop", "adam", "adamax", "adamw", "lbfgs"]
)
def test_every_optimizer_resumes_bit_identically(tmp_path, optimizer):
    g = np.random.default_rng(0)
    x = g.standard_normal((40, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    full_batch = optimizer == "lbfgs"
    options = {"lr": 1.0} if full_batch else {"lr": 0.01, "grad_noise": 0.01}  # the noise draws from the generator

    def run(seed, epochs, **kw):
        kp.set_seed(seed)
        model = kp.Sequential(Dense(8, activation="tanh"), Dropout(0.2), Dense(2))
        model.compile("cross_entropy", kp.optim.get(optimizer, **options))
        model.fit(x, y, epochs=epochs, batch_size=40 if full_batch else 8, verbose=0, **kw)
        return snapshot(model)

    path = tmp_path / "run.ckpt"
    straight = run(1, 3)
    run(1, 1, checkpoint=path)
    assert_same_weights(run(2, 3, checkpoint=path, resume=True), straight)


def test_a_model_with_a_custom_activation_is_checkpointed_without_its_architecture(tmp_path):
    x, y = data()

    def run(seed, epochs, **kw):
        kp.set_seed(seed)
        model = kp.Sequential(Dense(8, activation=lambda z: kp.tanh(z) * 2.0), Dropout(0.3), Dense(3))
        model.compile("cross_entropy", kp.optim.Adam(lr=0.01))
        model.fit(x, y, epochs=epochs, batch_size=16, verbose=0, **kw)
        return snapshot(model)

    path = tmp_path / "run.ckpt"
    straight = run(1, 3)
    run(1, 1, checkpoint=path)
    saved = kp.load(path)["model"]
    assert set(saved) == {"params", "state"} and saved["params"]["0.w"].shape == (5, 8)  # weights, no config
    assert_same_weights(run(2, 3, checkpoint=path, resume=True), straight)


def test_resuming_inside_an_epoch_of_a_shuffling_dataloader(tmp_path):
    x, y = data()

    class Samples:  # a dataset read sample by sample
        def __len__(self):
            return len(x)

        def __getitem__(self, i):
            return x[i], y[i]

    def run(seed, **kw):
        model = make_model(seed)
        loader = kp.data.DataLoader(Samples(), batch_size=16, shuffle=True)
        model.fit(loader, epochs=3, verbose=0, **kw)
        return model

    straight = run(1)
    path = tmp_path / "run.ckpt"
    with pytest.raises(KeyboardInterrupt):
        run(1, checkpoint=path, checkpoint_every=5, callbacks=[_Crash(12)])
    assert kp.load(path)["progress"]["batch"] == 2  # step 10: the 2nd batch of epoch 2
    resumed = run(3, checkpoint=path, checkpoint_every=5, resume=True)
    assert_same_weights(snapshot(resumed), snapshot(straight))
    assert resumed.history.history == straight.history.history


def test_an_incomplete_training_state_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "odd.ckpt"
    kp.save(path, {"kind": "knetpy-training-state", "version": 1, "progress": {"epoch": 1}})
    x, y = data()
    with pytest.raises(kp.CheckpointError, match=r"odd.ckpt has an incomplete training state \(missing 'model'"):
        make_model(seed=1).fit(x, y, epochs=2, checkpoint=path, resume=True, verbose=0)
