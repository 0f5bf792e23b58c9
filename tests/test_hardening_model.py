"""Models and layers as newcomers use them: complex data refused, shuffled toy data and a warning for
sorted labels, Keras and PyTorch habits (input_shape, Input, state_dict, predict_proba), empty batches."""

import warnings

import numpy as np
import pytest

import knetpy as kp
from knetpy.layers import (
    LSTM,
    AvgPool2D,
    BatchNorm,
    Conv1D,
    Conv2D,
    Conv2DTranspose,
    Conv3D,
    Dense,
    Dropout,
    Embedding,
    Flatten,
    GlobalMaxPool2D,
    Input,
    MaxPool2D,
)


def _mlp(**first):
    return kp.Sequential(Dense(8, activation="relu", **first), BatchNorm(), Dense(3))


def _xy(n=40, seed=0):
    g = np.random.default_rng(seed)
    return g.standard_normal((n, 4)).astype(np.float32), g.integers(0, 3, n)


# -- complex (and other non-real) data is refused, never cast ---------------------------------------------
COMPLEX = (np.ones((6, 4)) + 1j * np.arange(24).reshape(6, 4)).astype(np.complex64)


@pytest.mark.parametrize("call, who", [
    (lambda m, y: m.fit(COMPLEX, y, verbose=0), "fit: x"),
    (lambda m, y: m.predict(COMPLEX), "predict: x"),
    (lambda m, y: m.evaluate(COMPLEX, y), "evaluate: x"),
    (lambda m, y: m.fit(COMPLEX.real, y + 0j, verbose=0), "fit: y"),
    (lambda m, y: m.fit(COMPLEX.real, y, validation_data=(COMPLEX, y), verbose=0), r"fit \(validation_data\): x"),
    (lambda m, y: m.fit(kp.data.DataLoader((COMPLEX, y), batch_size=2), verbose=0), "Sequential: the input"),
    (lambda m, y: m.fit(kp.data.DataLoader((COMPLEX.real, y + 0j), batch_size=2), verbose=0), "fit: y"),
])
def test_model_entry_points_refuse_complex_data(call, who):
    model = _mlp()
    model.compile(loss="cross_entropy")
    y = np.zeros(6, np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # NumPy's ComplexWarning would mean a cast happened
        with pytest.raises(TypeError, match=who + r" must hold real numbers, got an array of dtype complex"):
            call(model, y)


@pytest.mark.parametrize("layer, shape", [
    (Dense(3), (6, 4)), (Dropout(0.5), (6, 4)), (Flatten(), (6, 4)), (Conv2D(2, 3), (2, 1, 5, 5)),
    (MaxPool2D(), (2, 1, 4, 4)), (LSTM(3), (2, 5, 4)), (BatchNorm(), (6, 4)), (kp.layers.Activation("relu"), (6, 4)),
])
def test_layers_refuse_complex_inputs(layer, shape):
    x = np.ones(shape) + 1j
    name = type(layer).__name__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for given in (x, kp.Tensor(x)):
            with pytest.raises(TypeError, match=f"{name}: the input must hold real numbers, got an array of dtype complex128"):
                layer(given)


def test_float_casts_refuse_complex_and_datetimes():
    with pytest.raises(TypeError, match="expected real numbers for dtype float32, got an array of dtype complex128"):
        kp.Tensor(np.array([1 + 2j]), dtype=np.float32)
    with pytest.raises(TypeError, match="expected real numbers"):
        kp.backend.as_array(np.array([1 + 2j]), np.float64)
    model = _mlp()
    days = np.array(["2020-01-01"] * 4, dtype="datetime64[D]").reshape(4, 1)
    with pytest.raises(TypeError, match=r"predict: x must hold real numbers, got an array of dtype datetime64\[D\]"):
        model.predict(days)
    # integers, booleans and floats of any width are real and still accepted
    for x in (np.ones((3, 4), np.uint8), np.ones((3, 4), bool), np.ones((3, 4), np.float16)):
        assert model.predict(x).shape == (3, 3)


# -- toy data comes shuffled; validation_split warns about sorted or unseen classes ----------------------
def test_spirals_are_shuffled_reproducibly():
    x, y = kp.datasets.spirals(100, 3, seed=0)
    assert not np.all(np.diff(y) >= 0)  # not sorted by class
    tail = y[-60:]  # validation_split=0.2 of 300
    np.testing.assert_array_equal(np.unique(tail), [0, 1, 2])
    x2, y2 = kp.datasets.spirals(100, 3, seed=0)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    kp.set_seed(7)
    a = kp.datasets.spirals(20, 2)
    kp.set_seed(7)
    b = kp.datasets.spirals(20, 2)
    np.testing.assert_array_equal(a[1], b[1])
    # the same points as the sorted version, in another order
    xs, ys = kp.datasets.spirals(100, 3, seed=0, shuffle=False)
    assert np.all(np.diff(ys) >= 0)
    assert sorted(map(tuple, xs.round(6))) == sorted(map(tuple, x.round(6)))


@pytest.mark.parametrize("y, fraction, message", [
    (np.repeat([0, 1, 2], 20), 0.4, r"hold class \[2\] that the training part lacks"),
    (np.repeat([0, 1, 2, 3], 15), 0.5, r"hold classes \[2, 3\] that the training part lacks"),
    (np.repeat([0, 1, 2], 20), 0.2, "sorted by class"),
    (np.eye(3, dtype=np.float32)[np.repeat([0, 1, 2], 20)], 0.4, r"class \[2\]"),
])
def test_validation_split_warns_about_classes_missing_from_training(y, fraction, message):
    x = np.random.default_rng(0).standard_normal((60, 4)).astype(np.float32)
    model = kp.Sequential(Dense(y.shape[1] if y.ndim == 2 else 4))
    model.compile(loss="cross_entropy")
    with pytest.warns(UserWarning, match=f"fit: validation_split={fraction} takes the last .*{message}"):
        model.fit(x, y, epochs=1, validation_split=fraction, verbose=0)


def test_validation_split_is_quiet_for_shuffled_labels_and_regression():
    x = np.random.default_rng(0).standard_normal((60, 4)).astype(np.float32)
    model = _mlp()
    model.compile(loss="cross_entropy")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(x, np.random.default_rng(1).permutation(np.repeat([0, 1, 2], 20)), validation_split=0.2, verbose=0)
        reg = kp.Sequential(Dense(1))
        reg.compile(loss="mse")
        reg.fit(x, np.sort(x[:, :1], axis=0), validation_split=0.2, verbose=0)  # sorted float targets: not classes


# -- input_shape= and Input -------------------------------------------------------------------------------
@pytest.mark.parametrize("make, sample, params", [
    (lambda s: Dense(5, input_shape=s), (4,), {"w": (4, 5), "b": (5,)}),
    (lambda s: Conv2D(6, 3, input_shape=s), (3, 8, 8), {"w": (6, 3, 3, 3), "b": (6,)}),
    (lambda s: Conv1D(2, 3, input_shape=s), (4, 9), {"w": (2, 4, 3), "b": (2,)}),
    (lambda s: BatchNorm(input_shape=s), (7,), {"gamma": (7,), "beta": (7,)}),
    (lambda s: Embedding(10, 4, input_shape=s), (5,), {"w": (10, 4)}),
    (lambda s: LSTM(5, input_shape=s), (None, 6), {"w_ih_l0": (6, 20), "w_hh_l0": (5, 20)}),
])
def test_any_layer_takes_input_shape_and_builds_at_once(make, sample, params):
    layer = make(sample)
    assert layer.built and layer.input_shape == (None, *sample)
    got = {k: tuple(v.shape) for k, v in layer.params.items()}
    assert {k: got[k] for k in params} == params


def test_input_shape_lets_summary_and_state_dict_work_before_data():
    model = kp.Sequential(Dense(8, activation="relu", input_shape=(4,)), BatchNorm(), Dense(3))
    text = model.summary(print_fn=None)
    assert "(None, 3)" in text and "Total params: 83" in text
    assert all(layer.built for layer in model)  # built as they were added: the input shape is known
    # a whole model takes input_shape too, and then every layer is built
    whole = kp.Sequential(Dense(8), BatchNorm(), Dense(3), input_shape=(4,))
    assert all(layer.built for layer in whole) and whole.input_shape == (None, 4)
    assert list(whole.state_dict()) == list(_built_mlp().state_dict())


def test_input_layer_declares_the_sample_shape():
    model = kp.Sequential(Input((1, 8, 8)), Conv2D(4, 3), MaxPool2D(), Flatten(), Dense(2))
    text = model.summary(print_fn=None)
    assert "(None, 1, 8, 8)" in text and "(None, 36)" in text and "(None, 2)" in text
    assert model.predict(np.zeros((3, 1, 8, 8), np.float32)).shape == (3, 2)
    with pytest.raises(ValueError, match=r"Input expects inputs of shape \(N, 1, 8, 8\), got \(N, 1, 9, 9\)"):
        model.predict(np.zeros((3, 1, 9, 9), np.float32))
    assert kp.Sequential(Input((None, 3)), LSTM(2)).predict(np.zeros((2, 7, 3), np.float32)).shape == (2, 2)
    with pytest.raises(ValueError, match="Input: input_shape is the shape of one sample"):
        Input((0, 3))
    with pytest.raises(ValueError, match="Dense: input_shape is the shape of one sample"):
        Dense(3, input_shape="abc")


def test_input_model_saves_and_loads(tmp_path):
    model = kp.Sequential(Input((4,)), Dense(3))
    x = np.ones((2, 4), np.float32)
    model.save(tmp_path / "m.ckpt")
    np.testing.assert_array_equal(kp.load(tmp_path / "m.ckpt").predict(x), model.predict(x))


# -- named_parameters, state_dict, load_state_dict ----------------------------------------------------------
def _built_mlp(seed=0):
    kp.set_seed(seed)
    model = _mlp()
    model(np.zeros((2, 4), np.float32))
    return model


def test_named_parameters_and_state_dict():
    model = _built_mlp()
    names = [n for n, _ in model.named_parameters()]
    assert names == ["0.w", "0.b", "1.gamma", "1.beta", "2.w", "2.b"]
    assert all(p is model.params[n] for n, p in model.named_parameters())
    sd = model.state_dict()
    assert set(sd) == set(names) | {"1.running_mean", "1.running_var", "1.batches_seen"}
    sd["0.w"] += 1  # copies: the model is unchanged
    assert not np.array_equal(sd["0.w"], model.params["0.w"].value)


def test_load_state_dict_copies_params_and_running_statistics():
    a, b = _built_mlp(0), _built_mlp(1)
    x, y = _xy()
    a.compile(loss="cross_entropy")
    a.fit(x, y, epochs=2, verbose=0)  # moves the running statistics too
    result = b.load_state_dict(a.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    np.testing.assert_array_equal(b.predict(x), a.predict(x))
    np.testing.assert_array_equal(b.state()["1.running_mean"].value, a.state()["1.running_mean"].value)


def test_load_state_dict_errors_and_strict_false():
    a, b = _built_mlp(0), _built_mlp(1)
    before = b.state_dict()
    sd = a.state_dict()
    del sd["2.b"]
    sd["head.w"] = np.zeros(3)
    with pytest.raises(ValueError, match=r"load_state_dict: names differ: missing \['2.b'\], not in the model \['head.w'\]"):
        b.load_state_dict(sd)
    for k, v in b.state_dict().items():  # nothing changed
        np.testing.assert_array_equal(v, before[k])
    result = b.load_state_dict(sd, strict=False)
    assert result.missing_keys == ["2.b"] and result.unexpected_keys == ["head.w"]
    np.testing.assert_array_equal(b.params["0.w"].value, a.params["0.w"].value)
    np.testing.assert_array_equal(b.params["2.b"].value, before["2.b"])
    bad = a.state_dict()
    bad["0.w"] = np.zeros((3, 3))
    with pytest.raises(ValueError, match=r"'0.w' has shape \(3, 3\), the model's has \(4, 8\)"):
        b.load_state_dict(bad, strict=False)  # shapes are checked even when names may differ
    bad["0.w"] = a.state_dict()["0.w"] + 1j
    with pytest.raises(TypeError, match="'0.w' has dtype complex.*model's float32"):
        b.load_state_dict(bad)
    with pytest.raises(ValueError, match="the model is not built yet"):
        _mlp().load_state_dict(a.state_dict())


# -- predict returns logits; predict_proba and predict_classes ---------------------------------------------
def test_predict_proba_and_classes_for_logits():
    model = _built_mlp()
    x, _ = _xy()
    logits = model.predict(x)
    p = model.predict_proba(x)
    np.testing.assert_allclose(p, np.exp(logits) / np.exp(logits).sum(1, keepdims=True), rtol=1e-5)
    np.testing.assert_array_equal(model.predict_classes(x), logits.argmax(1))
    assert model.predict_classes(x).dtype == np.int64


def test_predict_proba_passes_probabilities_through():
    kp.set_seed(0)
    soft = kp.Sequential(Dense(3, activation="softmax"))
    x, _ = _xy()
    np.testing.assert_array_equal(soft.predict_proba(x), soft.predict(x))
    sig = kp.Sequential(Dense(1, activation="sigmoid"))
    np.testing.assert_array_equal(sig.predict_proba(x), sig.predict(x))
    np.testing.assert_array_equal(sig.predict_classes(x), (sig.predict(x)[:, 0] > 0.5).astype(np.int64))


def test_predict_proba_sigmoid_for_one_logit():
    kp.set_seed(0)
    model = kp.Sequential(Dense(1))
    x, _ = _xy()
    logit = model.predict(x)
    np.testing.assert_allclose(model.predict_proba(x), 1 / (1 + np.exp(-logit)), rtol=1e-5)
    classes = model.predict_classes(x)
    assert classes.shape == (len(x),)
    np.testing.assert_array_equal(classes, (logit[:, 0] > 0).astype(np.int64))
    # from_logits=False: the model's forward already ends in probabilities
    np.testing.assert_array_equal(model.predict_proba(x, from_logits=False), logit)


# -- an empty batch through conv and pool layers ------------------------------------------------------------
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("layer, shape, out", [
    (lambda: Conv2D(4, 3), (0, 2, 8, 8), (0, 4, 6, 6)),
    (lambda: Conv2D(4, 3, padding="same", activation="tanh"), (0, 2, 8, 8), (0, 4, 8, 8)),
    (lambda: Conv2D(4, 3, groups=2), (0, 2, 8, 8), (0, 4, 6, 6)),
    (lambda: Conv2D(4, 3), (0, 1, 8, 8), (0, 4, 6, 6)),
    (lambda: Conv1D(4, 3), (0, 2, 8), (0, 4, 6)),
    (lambda: Conv3D(2, 2), (0, 1, 4, 4, 4), (0, 2, 3, 3, 3)),
    (lambda: Conv2DTranspose(3, 3), (0, 2, 5, 5), (0, 3, 7, 7)),
    (lambda: MaxPool2D(), (0, 2, 8, 8), (0, 2, 4, 4)),
    (lambda: AvgPool2D(), (0, 2, 8, 8), (0, 2, 4, 4)),
    (lambda: GlobalMaxPool2D(), (0, 2, 4, 4), (0, 2)),
    (lambda: Flatten(), (0, 2, 3), (0, 6)),
])
def test_empty_batch_gives_an_empty_batch_and_zero_gradients(layer, shape, out, threads):
    kp.set_num_threads(threads)
    try:
        lay = layer()
        y = lay(np.zeros(shape, np.float32))
        assert y.shape == out
        x = kp.Param(np.zeros(shape, np.float32))
        kp.sum(lay(x)).backward()
        assert x.grad.shape == shape
        for p in lay.params.values():
            assert p.grad.shape == p.shape and not np.any(p.grad)
    finally:
        kp.set_num_threads(1)


def test_conv_model_on_an_empty_batch():
    model = kp.Sequential(Conv2D(4, 3, activation="relu"), MaxPool2D(), Flatten(), Dense(2))
    model(np.zeros((2, 1, 8, 8), np.float32))
    assert model(np.zeros((0, 1, 8, 8), np.float32)).shape == (0, 2)


def test_layers_after_a_nested_sequential_with_input_shape_build_at_once():
    inner = kp.Sequential([kp.layers.Dense(5, input_shape=(3,)), kp.layers.Dense(4)])
    outer = kp.Sequential([inner, kp.layers.Dense(2)])
    assert outer.count_params() == (3 * 5 + 5) + (5 * 4 + 4) + (4 * 2 + 2)  # before any call
    assert outer.predict(np.ones((2, 3), "f")).shape == (2, 2)
