"""kp.Model / kp.Sequential: compile, fit, evaluate, predict, summary, weights, input errors."""

import functools
import io

import numpy as np
import pytest
from model_cases import TinyMLP, blobs, compiled_mlp, params_copy

import knetpy as kp
from knetpy.layers import BatchNorm, Dense, Dropout, Flatten


def _mlp(n_in=2, n_out=3, hidden=32):
    return kp.Sequential(Dense(hidden, n_in=n_in, activation="relu"), Dense(n_out))


# -- Sequential -------------------------------------------------------------------------------------------
def test_sequential_constructors_and_param_names():
    a, b = Dense(4, n_in=3), Dense(2)
    for model in (kp.Sequential([a, b]), kp.Sequential(a, b), kp.Sequential().add(a).add(b)):
        assert len(model) == 2 and model[0] is a and list(model) == [a, b]
        assert isinstance(model, kp.Model) and isinstance(model, kp.layers.Layer)
    model = kp.Sequential([a, b])
    model(np.zeros((5, 3), np.float32))
    assert list(model.params) == ["0.w", "0.b", "1.w", "1.b"]
    assert model.count_params() == 3 * 4 + 4 + 4 * 2 + 2
    assert "(1): Dense" in repr(model)


def test_sequential_accepts_functions_and_rejects_non_callables():
    model = kp.Sequential(Dense(3, n_in=2), kp.relu)
    out = model(np.array([[1.0, -1.0]], np.float32))
    assert np.all(out.value >= 0)
    with pytest.raises(TypeError, match="expected a layer or a function, got int"):
        kp.Sequential().add(3)
    with pytest.raises(TypeError, match="got the class Dense; add an instance"):
        kp.Sequential().add(Dense)


# -- compile / fit ------------------------------------------------------------------------------------------
def test_fit_trains_mlp_on_blobs_loss_falls_accuracy_high():
    x, y = blobs(n_per_class=100, spread=0.8)
    model = _mlp()
    model.compile(loss="cross_entropy", optimizer=kp.optim.SGD(lr=0.2), metrics=["accuracy"])
    before = model.evaluate(x, y)
    hist = model.fit(x, y, epochs=8, batch_size=20, verbose=0)
    losses = hist["loss"]
    assert losses[-1] < 0.5 * losses[0]
    assert all(b <= a * 1.05 for a, b in zip(losses, losses[1:]))  # steady descent
    after = model.evaluate(x, y)
    assert after["loss"] < before["loss"] and after["accuracy"] > 0.9  # chance is 1/3


def test_fit_trains_on_spirals_with_names_for_everything():
    x, y = kp.datasets.spirals(n_per_class=100, n_classes=3, seed=0)
    model = kp.Sequential(Dense(64, activation="relu"), Dense(64, activation="relu"), Dense(3))
    model.compile(loss="cross_entropy", optimizer="adam", metrics=["accuracy"])
    model.optimizer.lr = 0.01
    hist = model.fit(x, y, epochs=40, batch_size=32, verbose=0)
    assert hist["accuracy"][-1] > 0.8 and hist["loss"][-1] < hist["loss"][0] / 2


def test_fit_with_loader_and_minibatch_sources():
    x, y = blobs()
    for source in (kp.data.DataLoader((x, y), batch_size=16, shuffle=True), kp.data.minibatch(x, y, 16, shuffle=True)):
        model = compiled_mlp()
        hist = model.fit(source, epochs=5, validation_data=kp.data.minibatch(x, y, 64), verbose=0)
        assert hist.params["steps"] == len(source)
        assert hist["val_accuracy"][-1] > 0.8


def test_fit_binary_logits_uses_threshold_zero_for_accuracy():
    x, y = blobs(n_classes=2, spread=0.5)
    model = kp.Sequential(Dense(1, n_in=2))
    model.compile(loss="bce_with_logits", optimizer=kp.optim.SGD(lr=0.5), metrics=["accuracy"])
    hist = model.fit(x, y[:, None].astype(np.float32), epochs=10, batch_size=20, verbose=0)
    logits = model.predict(x)[:, 0]
    assert hist["accuracy"][-1] == pytest.approx(np.mean((logits > 0) == (y == 1)), abs=0.05)
    assert model.evaluate(x, y[:, None].astype(np.float32))["accuracy"] == pytest.approx(np.mean((logits > 0) == (y == 1)))


def test_fit_with_lbfgs_full_batch():
    x, y = blobs()
    model = _mlp()
    model.compile(loss="cross_entropy", optimizer=kp.optim.LBFGS(lr=1.0, max_iter=5), metrics=["accuracy"])
    hist = model.fit(x, y, epochs=4, batch_size=len(x), verbose=0)
    assert hist["loss"][-1] < hist["loss"][0] and hist["accuracy"][-1] > 0.9


def test_fit_casts_float64_data_once_to_the_model_dtype():
    x, y = blobs()
    model = compiled_mlp()
    dtypes = []
    model.forward = lambda xb, _f=model.forward: (dtypes.append(xb.dtype), _f(xb))[1]
    model.fit(x.astype(np.float64), y, epochs=1, verbose=0)
    assert set(dtypes) == {np.dtype(np.float32)}
    assert model.w1.value.dtype == np.float32


def test_validation_split_takes_the_last_samples_before_shuffling():
    x, y = blobs(n_per_class=10)
    model = compiled_mlp()
    hist = model.fit(x, y, epochs=1, validation_split=0.2, verbose=0)
    assert hist["val_loss"][0] == pytest.approx(model.evaluate(x[24:], y[24:])["loss"], rel=1e-6)
    assert hist.params["steps"] == 1  # 24 training samples, batch 32


def test_initial_epoch_continues_numbering():
    x, y = blobs()
    model = compiled_mlp()
    hist = model.fit(x, y, epochs=5, initial_epoch=3, verbose=0)
    assert hist.epoch == [3, 4]


def test_shuffle_false_does_not_depend_on_the_seed():
    x, y = blobs()
    a, b = compiled_mlp(), compiled_mlp()
    b.set_weights(a.get_weights())
    a.fit(x, y, epochs=2, shuffle=False, verbose=0)
    kp.set_seed(99)
    b.fit(x, y, epochs=2, shuffle=False, verbose=0)
    for k, v in params_copy(a).items():
        np.testing.assert_array_equal(v, b.params[k].value)


def test_training_step_matches_a_hand_written_loop():
    x, y = blobs(n_per_class=20)
    model = compiled_mlp(lr=0.1)
    start = model.get_weights()
    model.fit(x, y, epochs=1, batch_size=15, shuffle=False, verbose=0)
    manual = TinyMLP()
    manual.set_weights(start)
    opt = kp.optim.SGD(manual.params, lr=0.1)
    for i in range(0, len(x), 15):
        loss = kp.losses.cross_entropy(manual(x[i : i + 15]), y[i : i + 15])
        loss.backward()
        opt.step()
        opt.zero_grad()
    for k, p in manual.params.items():
        np.testing.assert_allclose(model.params[k].value, p.value, rtol=1e-6, atol=1e-7)
    assert all(p.grad is None for p in model.params.values())  # zero_grad after the last step


# -- modes ----------------------------------------------------------------------------------------------------
def test_fit_runs_in_training_mode_evaluate_predict_in_eval_mode_and_restore():
    x, y = blobs()
    model = compiled_mlp()
    model.eval()
    model.fit(x, y, epochs=1, batch_size=60, validation_data=(x, y), verbose=0)
    assert model.training is False  # restored
    # dry run (building) in eval, then 3 training batches, then validation in eval
    assert model.modes[-4:] == [True, True, True, False]
    model.train()
    model.modes.clear()
    model.predict(x)
    model.evaluate(x, y)
    assert model.modes == [False, False] and model.training is True


def test_dropout_is_off_in_predict_and_evaluate_and_on_in_fit():
    x, y = blobs()
    model = kp.Sequential(Dense(64, n_in=2, activation="relu"), Dropout(0.5), Dense(3))
    model.compile(loss="cross_entropy", optimizer=kp.optim.SGD(lr=0.1), metrics=["accuracy"])
    p1, p2 = model.predict(x), model.predict(x)
    np.testing.assert_array_equal(p1, p2)  # no random masks
    e1, e2 = model.evaluate(x, y), model.evaluate(x, y)
    assert e1 == e2
    assert model.training is True
    train_out1, train_out2 = model(x).value, model(x).value  # training mode: masks differ
    assert not np.array_equal(train_out1, train_out2)
    # the validation loss of an epoch equals evaluate() with the same weights (dropout off)
    hist = model.fit(x, y, epochs=1, validation_data=(x, y), verbose=0)
    assert hist["val_loss"][0] == pytest.approx(model.evaluate(x, y)["loss"], rel=1e-6)


def test_batchnorm_statistics_untouched_by_predict_and_evaluate():
    x, y = blobs()
    model = kp.Sequential(Dense(8, n_in=2), BatchNorm(), Dense(3))
    model.compile(loss="cross_entropy", optimizer=kp.optim.SGD(lr=0.1))
    model.fit(x, y, epochs=1, verbose=0)
    before = {k: t.value.copy() for k, t in model.state().items()}
    model.predict(x * 10)
    model.evaluate(x * 10, y)
    for k, t in model.state().items():
        np.testing.assert_array_equal(t.value, before[k])


# -- evaluate / predict ----------------------------------------------------------------------------------------
def test_evaluate_equals_loss_and_metrics_over_the_whole_set():
    x, y = blobs()
    model = compiled_mlp(metrics=["accuracy", functools.partial(kp.metrics.top_k_accuracy, k=2)])
    model.fit(x, y, epochs=2, verbose=0)
    out = model.predict(x, batch_size=7)
    assert out.shape == (180, 3) and out.dtype == np.float32
    with kp.no_grad():
        full = model(x).value
    np.testing.assert_allclose(out, full, rtol=1e-6)
    res = model.evaluate(x, y, batch_size=7)
    assert list(res) == model.metrics_names == ["loss", "accuracy", "top_k_accuracy"]
    assert res["loss"] == pytest.approx(float(kp.losses.cross_entropy(full, y)), rel=1e-5)
    assert res["accuracy"] == pytest.approx(np.mean(full.argmax(1) == y))
    top2 = np.argsort(-full, axis=1)[:, :2]
    assert res["top_k_accuracy"] == pytest.approx(np.mean((top2 == y[:, None]).any(axis=1)))


def test_custom_metric_functions_by_name():
    x, y = blobs()
    model = TinyMLP()

    def mean_max_score(pred, target):
        return float(pred.max(axis=1).mean())

    model.compile(loss=kp.nll, optimizer=kp.optim.SGD(lr=0.1), metrics=[mean_max_score, lambda p, t: 1.0])
    hist = model.fit(x, y, epochs=1, verbose=0)
    assert set(hist.history) == {"loss", "mean_max_score", "metric_1"}
    assert hist["metric_1"] == [1.0]
    with pytest.raises(ValueError, match="used twice"):
        model.compile(loss=kp.nll, metrics=["mse", "mse"])


# -- errors ----------------------------------------------------------------------------------------------------
def test_fit_before_compile_is_a_clear_error():
    x, y = blobs()
    with pytest.raises(RuntimeError, match=r"not compiled; call model.compile\(loss="):
        _mlp().fit(x, y, verbose=0)
    with pytest.raises(RuntimeError, match="not compiled"):
        _mlp().evaluate(x, y)


def test_compile_errors_name_the_bad_choice():
    with pytest.raises(ValueError, match="did you mean 'cross_entropy'"):
        _mlp().compile(loss="cross_entropi")
    with pytest.raises(ValueError, match="did you mean 'sgd'"):
        _mlp().compile(loss="mse", optimizer="sgdd")
    with pytest.raises(ValueError, match="did you mean 'accuracy'"):
        _mlp().compile(loss="mse", metrics=["acuracy"])
    with pytest.raises(TypeError, match="loss must be a name"):
        _mlp().compile(loss=3)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"y": np.zeros(9, np.int64)}, ValueError, "x has 10, y has 9"),
        ({"batch_size": 0}, ValueError, "batch_size must be a positive integer, got 0"),
        ({"batch_size": -5}, ValueError, "batch_size must be a positive integer, got -5"),
        ({"batch_size": 2.5}, TypeError, "batch_size must be a positive integer, got 2.5"),
        ({"x": np.array([["a", "b"]] * 10)}, TypeError, "x must hold numbers, got an array of dtype <U1"),
        ({"y": np.array(["cat"] * 10)}, TypeError, "y must hold numbers, got an array of dtype <U3"),
        ({"y": np.array([None] * 10)}, TypeError, "y must hold numbers, got an array of dtype object"),
        ({"x": np.zeros((0, 2), np.float32), "y": np.zeros(0, np.int64)}, ValueError, "empty"),
        ({"y": None}, ValueError, "y \\(the targets\\) is missing"),
        ({"epochs": -1}, ValueError, "epochs must be an integer >= 0, got -1"),
        ({"verbose": 3}, ValueError, "verbose must be 0, 1 or 2, got 3"),
        ({"validation_split": 1.5}, ValueError, r"validation_split must be a fraction in \(0, 1\), got 1.5"),
        ({"validation_split": 0.95}, ValueError, "leaves 0 for training and 10 for validation"),
        ({"validation_split": 0.2, "validation_data": (np.zeros((2, 2)), np.zeros(2))}, ValueError, "not both"),
        ({"validation_data": (np.zeros((2, 2)),)}, ValueError, "validation_data must be a pair"),
        ({"validation_data": (np.zeros((3, 2)), np.zeros(2, np.int64))}, ValueError, r"validation_data\): .*x has 3, y has 2"),
    ],
)
def test_fit_input_errors_name_the_values(kwargs, error, message):
    model = compiled_mlp()
    args = {"x": np.zeros((10, 2), np.float32), "y": np.zeros(10, np.int64), "verbose": 0}
    args.update(kwargs)
    with pytest.raises(error, match=message):
        model.fit(**args)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_nan_loss_stops_with_epoch_step_and_batch_before_updating():
    x, y = blobs(n_per_class=20)
    x[45] = np.nan  # in the 4th batch of 15 (shuffle off)
    model = compiled_mlp()
    snaps = []
    cb = kp.callbacks.LambdaCallback(on_batch_end=lambda b, logs: snaps.append(params_copy(model)))
    with pytest.raises(FloatingPointError, match=r"loss is nan at epoch 1/3, step 4 \(batch index 3 of the epoch"):
        model.fit(x, y, epochs=3, batch_size=15, shuffle=False, callbacks=[cb], verbose=0)
    for k, v in params_copy(model).items():  # the bad batch did not touch the weights
        np.testing.assert_array_equal(v, snaps[-1][k])
        assert np.all(np.isfinite(v))


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_nan_in_a_later_epoch_names_that_epoch():
    x, y = blobs(n_per_class=20)
    model = compiled_mlp()
    poison = kp.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: x.__setitem__(slice(0, 1), np.inf) if e == 1 else None)
    with pytest.raises(FloatingPointError, match=r"epoch 3/4, step 9 \(batch index 0"):
        model.fit(x, y, epochs=4, batch_size=15, shuffle=False, callbacks=[poison], verbose=0)


def test_loss_not_depending_on_parameters_is_reported():
    x, y = blobs()
    model = compiled_mlp()
    model.compile(loss=lambda pred, target: kp.tensor(1.0), optimizer=kp.optim.SGD(lr=0.1))
    with pytest.raises(RuntimeError, match="does not depend on any parameter"):
        model.fit(x, y, verbose=0)


# -- progress output -------------------------------------------------------------------------------------------
def test_verbose_one_without_tty_prints_exactly_one_line_per_epoch(capsys):
    x, y = blobs()
    model = compiled_mlp()
    model.fit(x, y, epochs=3, validation_data=(x, y), verbose=1)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("Epoch 1/3 - 6/6 - ") and "loss: " in lines[0] and "val_accuracy: " in lines[0]
    model.fit(x, y, epochs=2, verbose=0)
    assert capsys.readouterr().out == ""


class _FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_verbose_one_on_a_tty_draws_a_bar_with_eta(monkeypatch):
    import knetpy.progress as progress

    monkeypatch.setattr(progress, "_tqdm", None)  # the built-in bar, whether or not tqdm is installed
    screen = _FakeTTY()
    monkeypatch.setattr("sys.stdout", screen)
    monkeypatch.setattr(progress, "_is_tty", lambda f: True)
    x, y = blobs()
    model = compiled_mlp()
    model.fit(x, y, epochs=2, batch_size=10, verbose=1)
    out = screen.getvalue()
    assert out.count("\n") == 2  # one finished bar per epoch
    assert "\r" in out and "[" in out and "Epoch 2/2 18/18" in out
    assert "loss: " in out and "accuracy: " in out


# -- summary ---------------------------------------------------------------------------------------------------
def test_summary_counts_79510_for_flatten_dense_dense_on_28x28():
    model = kp.Sequential(Flatten(), Dense(100), Dense(10))
    text = model.summary(input_shape=(28, 28), print_fn=None)
    lines = text.splitlines()
    assert any("Flatten" in ln and "(None, 784)" in ln and ln.rstrip().endswith(" 0") for ln in lines)
    assert any("Dense" in ln and "(None, 100)" in ln and "78,500" in ln for ln in lines)
    assert any("Dense" in ln and "(None, 10)" in ln and "1,010" in ln for ln in lines)
    assert "Total params: 79,510" in text
    assert model.count_params() == 79_510  # the layers were built for that shape


def test_summary_prints_and_returns_the_same_text(capsys):
    model = kp.Sequential(Dense(64, n_in=784, activation="relu"), Dense(10))
    text = model.summary()  # n_in gives the input size
    assert capsys.readouterr().out.rstrip("\n") == text
    assert "Total params: 50,890" in text and "(None, 64)" in text


def test_summary_after_fit_uses_seen_input_and_shows_state():
    x, y = blobs()
    model = kp.Sequential(Dense(8), BatchNorm(), Dense(3))
    model.compile(loss="cross_entropy", optimizer="sgd")
    model.fit(x, y, epochs=1, verbose=0)
    text = model.summary(print_fn=None)
    assert "(None, 8)" in text and "BatchNorm" in text
    assert f"Total params: {model.count_params():,}" in text
    assert "Non-trainable state:" in text


def test_summary_of_a_model_subclass_traces_its_children():
    class Net(kp.Model):
        def __init__(self):
            super().__init__()
            self.head = Dense(10)
            self.body = Dense(20)
            self.scale = kp.Param(np.ones(1, np.float32))

        def forward(self, x):
            return self.head(kp.relu(self.body(x))) * self.scale

    net = Net()
    text = net.summary(input_shape=(5,), print_fn=None)
    lines = text.splitlines()
    body = next(i for i, ln in enumerate(lines) if ln.startswith("body"))
    head = next(i for i, ln in enumerate(lines) if ln.startswith("head"))
    assert body < head  # call order, not attribute order
    assert "(None, 20)" in lines[body] and "120" in lines[body] and "(None, 10)" in lines[head]
    assert "(own parameters)" in text and "Total params: 331" in text
    assert "Model output shape: (None, 10)" in text
    assert "forward" not in vars(net.body)  # tracing hooks removed


def test_summary_without_known_input_shape_explains():
    with pytest.raises(ValueError, match=r"pass the shape of one sample without the batch axis"):
        kp.Sequential(Dense(3)).summary()
    with pytest.raises(ValueError, match="input_shape must be positive integers"):
        kp.Sequential(Dense(3)).summary(input_shape=(0, 2))


# -- weights and checkpoints -----------------------------------------------------------------------------------
def test_get_set_weights_roundtrip_and_checks():
    a, b = _mlp(), _mlp()
    x = np.ones((2, 2), np.float32)
    a(x), b(x)  # build the second layers
    b.set_weights(a.get_weights())
    np.testing.assert_array_equal(a.predict(x), b.predict(x))
    w = a.get_weights()
    w["0.w"] += 1  # a copy: the model is unchanged
    assert not np.array_equal(w["0.w"], a.params["0.w"].value)
    with pytest.raises(ValueError, match=r"missing \['1.b'\]"):
        b.set_weights({k: v for k, v in w.items() if k != "1.b"})
    w["0.w"] = np.zeros((3, 3))
    with pytest.raises(ValueError, match=r"'0.w' has shape \(3, 3\), the model's has \(2, 32\)"):
        b.set_weights(w)


def test_save_and_load_sequential(tmp_path):
    x, y = blobs()
    model = kp.Sequential(Dense(16, activation="relu"), BatchNorm(), Dense(3))
    model.compile(loss="cross_entropy", optimizer=kp.optim.SGD(lr=0.1))
    model.fit(x, y, epochs=2, verbose=0)
    model.save(tmp_path / "m.ckpt")
    loaded = kp.load(tmp_path / "m.ckpt")
    assert isinstance(loaded, kp.Sequential) and len(loaded) == 3
    np.testing.assert_allclose(loaded.predict(x), model.predict(x), rtol=1e-6)
    fresh = kp.Sequential(Dense(16, activation="relu"), BatchNorm(), Dense(3))
    fresh(x[:2])  # build it
    fresh.load_weights(tmp_path / "m.ckpt")
    np.testing.assert_allclose(fresh.predict(x), model.predict(x), rtol=1e-6)
