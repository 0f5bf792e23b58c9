"""fit compiles its step by default when every part of it is knetpy's own code, and only then."""

import warnings

import numpy as np
import pytest
from model_cases import blobs, compiled_mlp

import knetpy as kp
from knetpy import training
from knetpy.compile import Compiled

L = kp.layers


def _model(*layers, loss="cross_entropy"):
    kp.set_seed(0)
    model = kp.Sequential(list(layers))
    model.compile(loss=loss, optimizer=kp.optim.SGD(lr=0.1, momentum=0.9), metrics=["accuracy"])
    return model


def _trained(make, **fit):
    model = make()
    x, y = blobs(40)
    hist = model.fit(x, y, epochs=2, batch_size=16, verbose=0, **fit)
    return model, hist.history, {k: p.value.copy() for k, p in model.params.items()}


@pytest.mark.parametrize("make", [
    lambda: _model(L.Dense(16, activation="relu"), L.Dense(3)),
    lambda: _model(L.Dense(16), L.BatchNorm(), L.Activation("tanh"), L.Dropout(0.3), L.Dense(3)),
    lambda: _model(L.Reshape((2, 1)), L.LSTM(8), L.Dense(3)),
], ids=["dense", "batchnorm_dropout", "lstm"])
def test_a_model_of_knetpy_layers_compiles_by_default_and_trains_as_eager_fit(make):
    assert training.compiles_by_default(make())
    default, hist, weights = _trained(make)
    step = training.compiled_step(default)
    assert step.replays > 0  # the default replayed its step
    _, eager_hist, eager_weights = _trained(make, compile=False)
    assert hist == eager_hist
    for k in weights:
        assert weights[k].tobytes() == eager_weights[k].tobytes(), k


def test_compile_false_never_compiles():
    model, _, _ = _trained(lambda: _model(L.Dense(3)), compile=False)
    assert getattr(model, "_compiled_step", None) is None


def test_a_forward_of_your_own_trains_eagerly_and_runs_every_step():
    model = compiled_mlp()  # a Model subclass whose forward records each call
    assert not training.compiles_by_default(model)
    x, y = blobs(40)
    model.fit(x, y, epochs=1, batch_size=10, verbose=0)
    batches = -(-len(x) // 10)
    assert len(model.modes) == batches + 1  # every batch ran the forward (and fit's build call)
    assert getattr(model, "_compiled_step", None) is None


def test_user_code_inside_the_step_turns_the_default_off():
    seen = []

    def my_activation(z):
        seen.append(1)
        return kp.relu(z)

    def my_loss(out, y):
        return kp.nll(out, y)

    assert not training.compiles_by_default(_model(L.Dense(4, activation=my_activation), L.Dense(3)))
    assert not training.compiles_by_default(_model(L.Dense(4), L.Lambda(kp.relu), L.Dense(3)))
    assert not training.compiles_by_default(_model(L.Dense(3), loss=my_loss))
    assert training.compiles_by_default(_model(L.Dense(4, activation="relu"), L.Dense(3), loss="cross_entropy"))
    assert training.compiles_by_default(_model(L.Dense(4, activation=kp.relu), L.Dense(3), loss=kp.nll))

    class MySequential(kp.Sequential):
        pass

    model = MySequential([L.Dense(3)])
    model.compile(loss="cross_entropy", optimizer="sgd")
    assert not training.compiles_by_default(model)

    model = _model(L.Dense(4, activation=my_activation), L.Dense(3))
    x, y = blobs(40)
    before = len(seen)
    model.fit(x, y, epochs=1, batch_size=10, verbose=0)
    assert len(seen) - before == -(-len(x) // 10) + 1  # the activation ran on every batch (and the build call)


def test_layers_nested_in_a_layer_are_checked_too():
    class Mine(kp.layers.Layer):
        def forward(self, x):
            return x

    inner = kp.Sequential([L.Dense(4), Mine()])
    assert not training.compiles_by_default(_model(inner, L.Dense(3)))
    assert training.compiles_by_default(_model(kp.Sequential([L.Dense(4)]), L.Dense(3)))


@pytest.mark.parametrize("bad", [None, 1, 0, "yes", 1.0])
def test_compile_takes_true_false_or_auto(bad):
    model = _model(L.Dense(3))
    x, y = blobs(8)
    with pytest.raises(ValueError, match=rf"fit: compile must be True, False or 'auto', got {bad!r}"):
        model.fit(x, y, verbose=0, compile=bad)


def test_the_automatic_fallback_to_eager_is_quiet():
    def edits_in_place(x):  # cannot be replayed: it changes its argument
        x += 1
        return kp.sum(kp.tensor(x) * 2)

    loud, quiet = kp.compile(edits_in_place), Compiled(edits_in_place, warn=False)
    with pytest.warns(kp.CompileWarning):
        for _ in range(3):
            loud(np.ones(3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(3):
            quiet(np.ones(3))


def test_a_copy_of_a_compiled_model_trains_itself_not_the_original():
    import copy

    model, _, _ = _trained(lambda: _model(L.Dense(8, activation="relu"), L.Dense(3)))
    assert getattr(model, "_compiled_step", None) is not None
    twin = copy.deepcopy(model)
    before = {k: p.value.copy() for k, p in model.params.items()}
    x, y = blobs(40)
    twin.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert training.compiled_step(twin).replays > 0
    for k, p in model.params.items():
        assert p.value.tobytes() == before[k].tobytes(), k  # the original was not trained
    assert any(twin.params[k].value.tobytes() != before[k].tobytes() for k in before)


def test_an_adopted_trace_keeps_no_copy_of_the_batches_it_was_recorded_on():
    model, _, _ = _trained(lambda: _model(L.Dense(8, activation="relu"), L.Dense(3)))
    step = training.compiled_step(model)
    entries = list(step._local.cache.values())
    assert entries and all(e.programs for e in entries)
    for e in entries:
        for prog in e.programs.values():
            assert prog.inputs == ()


def test_ever_new_shapes_stop_being_recorded_and_train_as_eager_fit():
    from knetpy.compile import AUTO_SIGNATURES

    def fit(compile):
        model = _model(L.Dense(8, activation="relu"), L.Dense(3))
        x, y = blobs(40)
        history = []
        for size in range(3, 3 + 2 * AUTO_SIGNATURES + 2):  # every fit with batches of a new size
            hist = model.fit(x, y, epochs=1, batch_size=size, shuffle=False, verbose=0, compile=compile)
            history.append(hist.history)
        return model, history

    auto, hist = fit("auto")
    eager, eager_hist = fit(False)
    assert hist == eager_hist
    for k, p in auto.params.items():
        assert p.value.tobytes() == eager.params[k].value.tobytes(), k
    step = training.compiled_step(auto)
    assert len(step._local.cache) == AUTO_SIGNATURES  # the rest ran eagerly, nothing more kept
    assert step.replays > 0 and step.traces <= 2 * AUTO_SIGNATURES

    loud = kp.compile(lambda x: kp.sum(kp.tensor(x) * 2))  # kp.compile keeps recording every new shape
    for n in range(1, AUTO_SIGNATURES + 4):
        loud(np.ones(n))
    assert len(loud._local.cache) == AUTO_SIGNATURES + 3
