"""fit(compile=True) trains exactly as eager fit: the same histories, weights and layer state, bit for bit."""

import pytest
from model_cases import blobs, compiled_mlp

import knetpy as kp
from knetpy import training


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
@pytest.mark.parametrize("optimizer", [lambda: kp.optim.SGD(lr=0.1, momentum=0.9), lambda: kp.optim.Adam(lr=0.01)],
                         ids=["sgd_momentum", "adam"])
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
