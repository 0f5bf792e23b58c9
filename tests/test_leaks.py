"""Training steps do not leak: the tape is freed after each backward pass, and no reference cycle keeps
a graph alive until the cycle collector happens to run.

Memory is measured with tracemalloc (Python and NumPy allocations): the memory held after step
1,000 and after step 10,000 must be the same up to noise. A leak of a single small object per step
(a float in a list: 32 bytes) would add more than the bound over the 9,000 steps in between.
"""

import gc
import tracemalloc
import weakref

import numpy as np
import pytest

import knetpy as kp
from knetpy.layers import BatchNorm, Dense, Dropout

GROWTH_BOUND = 256 * 1024  # bytes


def _data():
    g = np.random.default_rng(0)
    x = g.standard_normal((16, 8)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int64)


def _params():
    r = kp.backend.rng()
    return [
        kp.Param((r.standard_normal((8, 16)) * 0.3).astype(np.float32)),
        kp.Param(np.zeros(16, np.float32)),
        kp.Param((r.standard_normal((16, 2)) * 0.3).astype(np.float32)),
        kp.Param(np.zeros(2, np.float32)),
    ]


def _loss(w, x, y):
    h = kp.relu(x @ w[0] + w[1])
    return kp.nll(h @ w[2] + w[3], y)


def _backward_steps():
    """Endless training steps in the PyTorch style: loss.backward(), opt.step(), opt.zero_grad()."""
    x, y = _data()
    w = _params()
    opt = kp.optim.SGD(w, lr=0.05)
    while True:
        loss = _loss(w, x, y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        yield float(loss.value)


def _grad_steps():
    """Endless training steps in the Knet style: gradients from kp.grad, a hand-written update."""
    x, y = _data()
    w = _params()
    grad_fn = kp.value_and_grad(_loss)
    while True:
        value, grads = grad_fn(w, x, y)
        for p, g in zip(w, grads):
            p.value -= 0.05 * g
        yield float(value)


STYLES = {"backward": _backward_steps, "kp.grad": _grad_steps}


@pytest.mark.parametrize("style", list(STYLES))
def test_ten_thousand_steps_hold_no_more_memory_than_one_thousand(style):
    steps = STYLES[style]()
    losses = []
    tracemalloc.start()
    try:
        for i, value in enumerate(steps, start=1):
            if i == 1:
                losses.append(value)
            if i == 1_000:
                at_1000 = tracemalloc.get_traced_memory()[0]
            if i == 10_000:
                at_10000 = tracemalloc.get_traced_memory()[0]
                break
    finally:
        tracemalloc.stop()
    losses.append(value)
    assert losses[1] < losses[0]  # it really trained
    assert at_10000 - at_1000 < GROWTH_BOUND, f"{style}: grew by {at_10000 - at_1000} bytes over 9,000 steps"


def test_fit_holds_no_more_memory_after_3000_steps_than_after_1000():
    """The same through Model.fit with Dense, BatchNorm, Dropout, Adam and an accuracy metric."""
    g = np.random.default_rng(1)
    x = g.standard_normal((800, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    model = kp.Sequential(Dense(16), BatchNorm(), Dense(16, activation="relu"), Dropout(0.2), Dense(2))
    model.compile("cross_entropy", "adam", metrics=["accuracy"])
    held = {}

    def measure(batch, logs):
        if model.optimizer.iterations in (1_000, 3_000):
            held[model.optimizer.iterations] = tracemalloc.get_traced_memory()[0]

    tracemalloc.start()
    try:
        model.fit(x, y, epochs=30, batch_size=8, verbose=0, callbacks=[kp.callbacks.LambdaCallback(on_batch_end=measure)])
    finally:
        tracemalloc.stop()
    assert held[3_000] - held[1_000] < GROWTH_BOUND, f"grew by {held[3_000] - held[1_000]} bytes over 2,000 steps"


# -- no reference cycles ---------------------------------------------------------------------------------
class _gc_disabled:
    """Only reference counting frees objects inside (the cycle collector is off)."""

    def __enter__(self):
        gc.collect()
        gc.disable()

    def __exit__(self, *exc):
        gc.enable()


@pytest.mark.parametrize("style", list(STYLES))
def test_training_steps_create_no_reference_cycles(style):
    steps = STYLES[style]()
    next(steps)  # first-call setup (optimizer state, caches) is not the steady state
    with _gc_disabled():
        for _ in range(200):
            next(steps)
        assert gc.collect() == 0


def test_layer_model_steps_create_no_reference_cycles():
    x, y = _data()
    model = kp.Sequential(Dense(16), BatchNorm(), Dense(16, activation="relu"), Dropout(0.2), Dense(2))
    model(x)
    opt = kp.optim.Adam(model.params, lr=0.01)

    def step():
        loss = kp.losses.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()

    step()
    with _gc_disabled():
        for _ in range(100):
            step()
        assert gc.collect() == 0


def test_an_intermediate_dies_after_backward_even_while_the_loss_is_kept():
    x, y = _data()
    w = _params()
    with _gc_disabled():
        hidden = kp.relu(x @ w[0] + w[1])
        loss = kp.nll(hidden @ w[2] + w[3], y)
        ref = weakref.ref(hidden)
        del hidden
        assert ref() is not None  # the graph holds it until backward
        loss.backward()
        assert ref() is None  # backward released the graph; the loss alone keeps nothing alive
        assert loss.value.shape == ()


def test_intermediates_inside_kp_grad_die_when_it_returns():
    x, y = _data()
    w = _params()
    refs = []

    def loss_fn(w):
        hidden = kp.relu(x @ w[0] + w[1])
        refs.append(weakref.ref(hidden))
        return kp.nll(hidden @ w[2] + w[3], y)

    with _gc_disabled():
        grads = kp.grad(loss_fn)(w)
        assert refs[0]() is None
    assert [g.shape for g in grads] == [p.shape for p in w]


def test_a_forward_pass_without_backward_is_freed_when_dropped():
    x, y = _data()
    w = _params()
    with _gc_disabled():
        hidden = kp.relu(x @ w[0] + w[1])
        loss = kp.nll(hidden @ w[2] + w[3], y)
        ref = weakref.ref(hidden)
        del hidden, loss
        assert ref() is None
