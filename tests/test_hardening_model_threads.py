"""Inference in one thread never changes what another thread's model does: predict, evaluate and fit
choose their train/eval mode for the calling thread only."""

import threading
import time

import numpy as np
from thread_cases import run_threads

import knetpy as kp
from knetpy.layers import BatchNorm, Dense, Dropout


def _model(seed=0):
    kp.set_seed(seed)
    model = kp.Sequential(Dense(16, activation="relu"), BatchNorm(), Dropout(0.5), Dense(3))
    model.compile(loss="cross_entropy", optimizer=kp.optim.SGD(lr=0.05))
    return model


def _data(seed=1, n=64):
    g = np.random.default_rng(seed)
    return g.standard_normal((n, 4)).astype(np.float32), g.integers(0, 3, n)


def _running(model):
    return {k: np.array(v, copy=True) for k, v in model.get_weights().items() if "running" in k}


def test_concurrent_predicts_equal_the_single_thread_answer():
    x, y = _data()
    model = _model()
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert model.training  # fit leaves the model in its own (training) mode
    expected = model.predict(x)
    stats = _running(model)
    results = [[] for _ in range(8)]

    def work(i):
        for _ in range(100):
            results[i].append(model.predict(x))

    run_threads(8, work)
    for outs in results:
        assert len(outs) == 100
        for out in outs:
            np.testing.assert_array_equal(out, expected)
    for k, v in _running(model).items():
        np.testing.assert_array_equal(v, stats[k])
    assert model.training and all(layer.training for layer in model.layers())


def test_concurrent_evaluates_equal_the_single_thread_answer():
    x, y = _data()
    model = _model()
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    expected = model.evaluate(x, y)
    results = []

    def work(i):
        for _ in range(30):
            results.append(model.evaluate(x, y))

    run_threads(4, work)
    assert len(results) == 120 and all(r == expected for r in results)


def test_predict_in_other_threads_while_one_thread_fits():
    x, y = _data(n=256)
    training = _model(seed=3)
    frozen = _model(seed=4)
    frozen.fit(x, y, epochs=1, batch_size=32, verbose=0)
    frozen_expected = frozen.predict(x)
    training.fit(x, y, epochs=1, batch_size=32, verbose=0)  # built and bound before the threads start
    stop = threading.Event()
    seen = {"frozen": 0, "same": 0}

    def fitter(_):
        try:
            hist = training.fit(x, y, epochs=15, batch_size=32, verbose=0)
            assert len(hist.history["loss"]) == 15
            # a fast fit may end before the other threads got a turn: keep training until they overlapped
            deadline = time.monotonic() + 60
            while seen["same"] < 3 and time.monotonic() < deadline:
                training.fit(x, y, epochs=1, batch_size=32, verbose=0)
        finally:
            stop.set()

    def predictor(i):
        while not stop.is_set():
            # a model that nobody trains: exactly its single-thread answer
            np.testing.assert_array_equal(frozen.predict(x), frozen_expected)
            seen["frozen"] += 1
            # the model being trained answers too (its eval outputs are checked exactly in the next test)
            out = training.predict(x[:8])
            assert out.shape == (8, 3) and np.isfinite(out).all()
            assert training.training  # this thread, outside predict, sees the model's own mode
            seen["same"] += 1

    def run(i):
        (fitter if i == 0 else predictor)(i)

    run_threads(5, run)
    assert seen["frozen"] > 0 and seen["same"] > 0
    # The fitting thread saw training mode all along: its BatchNorm statistics moved and its loss fell.
    assert training.history.history["loss"][-1] < training.history.history["loss"][0]
    assert training.training and all(layer.training for layer in training.layers())


def test_predict_never_uses_dropout_while_another_thread_trains():
    """Outputs of predict during a fit are exactly the eval-mode function of the weights at that moment:
    a Dropout layer with p=1 zeroes everything in training mode, and nothing in eval mode."""
    x, y = _data(n=128)
    model = kp.Sequential(Dense(8, activation="relu"), Dropout(1.0), Dense(3, bias=False))
    model.compile(loss="cross_entropy", optimizer=kp.optim.SGD(lr=0.01))
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert np.abs(model.predict(x)).sum() > 0
    stop = threading.Event()
    zeros = []

    def run(i):
        if i == 0:
            try:
                model.fit(x, y, epochs=20, batch_size=16, verbose=0)
                # a fast fit may end before any predict finished: keep training until they overlapped
                deadline = time.monotonic() + 60
                while len(zeros) < 3 and time.monotonic() < deadline:
                    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
            finally:
                stop.set()
        else:
            while not stop.is_set():
                out = model.predict(x)
                zeros.append(bool(np.all(out == 0)))

    run_threads(4, run)
    assert zeros and not any(zeros)


def test_thread_mode_is_per_thread_and_train_eval_still_work():
    model = _model()
    x, _ = _data()
    model(x)
    inside = threading.Event()
    release = threading.Event()
    other = {}

    def hold(_):
        with kp.layers.base.thread_mode(model, False):
            other["inside"] = model.training, model[2].training
            inside.set()
            release.wait(5)

    t = threading.Thread(target=hold, args=(0,))
    t.start()
    inside.wait(5)
    assert other["inside"] == (False, False)
    assert model.training and model[2].training  # this thread still sees training mode
    release.set()
    t.join()
    model.eval()
    assert not model.training and not model[2].training
    model.train()
    assert model[2].training
