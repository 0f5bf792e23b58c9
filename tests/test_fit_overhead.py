"""fit's cheap per-step paths (plain SGD's lean step, accuracy by counting) match the general ones bit for bit."""

import numpy as np
import pytest
from model_cases import blobs

import knetpy as kp
from knetpy import metrics
from knetpy.optim.base import Optimizer
from knetpy.optim.sgd import SGD


def _fit(monkeypatch, general, compile=True, epochs=3, **sgd):
    with monkeypatch.context() as m:
        if general:
            m.setattr(SGD, "_plain", lambda self: False)  # every step through the general pipeline
        kp.set_seed(0)
        x, y = blobs(60)
        model = kp.Sequential([kp.layers.Dense(16, activation="relu"), kp.layers.Dense(3)])
        model.compile(loss="cross_entropy", optimizer=SGD(lr=0.3, **sgd), metrics=["accuracy"])
        hist = model.fit(x, y, epochs=epochs, batch_size=16, shuffle=True, verbose=0, compile=compile)
        weights = [p.value.copy() for p in model.params.values()]
        return hist.history, weights, model.optimizer


@pytest.mark.parametrize("compile", [True, False])
@pytest.mark.parametrize("sgd", [{}, {"momentum": 0.9}, {"weight_decay": 1e-3}, {"clip_norm": 0.5}])
def test_fit_with_sgd_equals_the_general_step_bit_for_bit(monkeypatch, compile, sgd):
    h_fast, w_fast, opt_fast = _fit(monkeypatch, False, compile, **sgd)
    h_ref, w_ref, opt_ref = _fit(monkeypatch, True, compile, **sgd)
    assert h_fast == h_ref
    for a, b in zip(w_fast, w_ref):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert opt_fast.iterations == opt_ref.iterations
    assert opt_fast.state.keys() == opt_ref.state.keys()
    for key in opt_ref.state:
        assert opt_fast.state[key]["step"] == opt_ref.state[key]["step"]


def test_plain_sgd_takes_the_lean_step(monkeypatch):
    calls = []
    general = Optimizer.step
    monkeypatch.setattr(Optimizer, "step", lambda self, closure=None: calls.append(1) or general(self, closure))
    p, q = kp.Param(np.ones(3, np.float32)), kp.Param(np.ones(2, np.float32))
    opt = SGD([p, q], lr=0.5)
    p.grad = np.array([1.0, 2.0, 4.0], np.float32)  # q has no gradient: left alone, as in the general path
    opt.step()
    assert calls == []
    assert np.array_equal(p.value, np.array([0.5, 0.0, -1.0], np.float32)) and p.value.dtype == np.float32
    assert np.array_equal(q.value, np.ones(2, np.float32))
    assert opt.iterations == 1 and opt.state == {"0": {"step": 1}}
    for kw in ({"momentum": 0.5}, {"weight_decay": 0.1}, {"clip_value": 1.0}, {"grad_noise": 0.1}):
        other = SGD([kp.Param(np.ones(3, np.float32))], lr=0.5, **kw)
        other.params["0"].grad = np.ones(3, np.float32)
        other.step()
    assert len(calls) == 4  # anything beyond plain SGD goes through the general pipeline


def test_lean_step_defers_to_the_general_path_for_casts_groups_and_bad_shapes():
    p = kp.Param(np.ones(2, np.float32))
    opt = SGD([p], lr=0.5)
    p.grad = np.array([1.0, 3.0])  # float64 gradient: cast to the parameter's dtype first
    opt.step()
    assert p.value.dtype == np.float32 and np.array_equal(p.value, np.array([0.5, -0.5], np.float32))
    a, b = kp.Param(np.ones(2)), kp.Param(np.ones(2))
    grouped = SGD([{"params": [a]}, {"params": [b], "lr": 0.1}], lr=1.0)
    a.grad, b.grad = np.ones(2), np.ones(2)
    grouped.step()
    assert np.array_equal(a.value, np.zeros(2)) and np.allclose(b.value, 0.9)
    opt.zero_grad()
    p.grad = np.ones(3, np.float32)
    with pytest.raises(ValueError, match="shape"):
        opt.step()
    assert np.array_equal(p.value, np.array([0.5, -0.5], np.float32))  # nothing half-applied


@pytest.mark.parametrize("shape,onehot", [((50, 7), False), ((50, 7), True), ((1, 3), False), ((8, 4, 5), False)])
def test_accuracy_by_counting_equals_the_mean(shape, onehot):
    g = np.random.default_rng(0)
    pred = g.standard_normal(shape).astype(np.float32)
    labels = g.integers(0, shape[1], (shape[0], *shape[2:]))
    labels[: shape[0] // 2] = pred.argmax(axis=1)[: shape[0] // 2]
    target = np.eye(shape[1], dtype=np.float32)[labels] if onehot else labels
    if onehot:
        target = np.moveaxis(target, -1, 1)
    got = metrics.accuracy(pred, target)  # the metric fit(metrics=["accuracy"]) uses
    assert type(got) is float
    assert got == float(np.mean(pred.argmax(axis=1) == labels))
