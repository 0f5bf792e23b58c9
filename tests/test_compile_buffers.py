"""A replay writes an elementwise result into the array of an operand that nothing else uses (an
array the replay itself made), and only then: results stay bit for bit the eager ones."""

import re

import numpy as np
import pytest
from compile_cases import assert_same_bits

import knetpy as kp


def _source(step):
    return step._local.fast[1].source


def _written_into(step):
    """The variables whose arrays the replay writes a later result into (``out=`` given by position)."""
    return step._local.fast[1].written_into


def _check(fn, *args, calls=6):
    """Compile ``fn``; every call's results equal the eager call's, and results handed out earlier keep
    their values while later calls run."""
    step = kp.compile(fn)
    kept = []
    for i in range(calls):
        a = [x * (1 + 0.1 * i) if isinstance(x, np.ndarray) and x.dtype.kind == "f" else x for x in args]
        got, want = step(*a), fn(*a)
        assert_same_bits(got, want)
        kept.append((got, [np.copy(getattr(t, "value", t)) for t in kp.tree_flatten(got)[0]]))
    for got, copy in kept:
        assert_same_bits([getattr(t, "value", t) for t in kp.tree_flatten(got)[0]], copy)
    assert step.replays == calls - 2
    return step


@pytest.fixture
def data():
    g = np.random.default_rng(0)
    return (g.standard_normal((12, 5)).astype("f"), [(g.standard_normal((5, 4)) * 0.5).astype("f"),
                                                      np.zeros(4, "f")])


def test_a_chain_of_elementwise_ops_writes_into_the_arrays_it_made(data):
    x, w = data

    def loss(w, x):
        return kp.mean(kp.square(kp.tanh(x @ w[0] + w[1]) - 0.5))

    step = _check(kp.grad(loss), w, x)
    into = _written_into(step)
    assert len(into) >= 2  # (x @ w) + b, and the difference for square's gradient, reuse arrays
    assert not any(name.startswith("a") for name in into)  # never into an argument
    for name in into:  # each such call passes the variable's array as its output, by position
        assert re.search(rf"c\d+\(([^()]*, )?{name}, [^()]*(out=)?{name}\)", _source(step))


def test_an_operand_used_twice_keeps_its_values(data):
    x, w = data

    def f(w, x):
        h = x @ w[0]
        return kp.sum((h + 1.0) * (h * 2.0))  # h is read by two ops: neither may write into it

    step = _check(kp.grad(f), w, x)
    assert "v1" not in _written_into(step)


def test_an_intermediate_that_is_returned_is_never_overwritten(data):
    x, w = data

    def f(w, x):
        a = kp.tanh(kp.matmul(x, w[0]))  # (kp ops: on raw arrays, `@` would be NumPy's own)
        b = kp.add(a, 1.0)  # a is returned too: b must be a new array
        c = kp.exp(b)
        return a, b, c

    _check(f, w, x)


def test_an_input_a_vjp_reads_is_never_overwritten(data):
    x, w = data
    x = np.abs(x) + 0.5

    def loss(w, x):
        z = x @ (w[0] * w[0]) + 1.0
        return kp.sum(kp.log(z) * kp.sqrt(z))  # log's and sqrt's gradients read z (log) and the outputs

    _check(kp.grad(loss), w, x)


def test_a_mlp_fit_with_buffer_reuse_equals_eager_fit():
    g = np.random.default_rng(3)
    x = g.standard_normal((96, 6)).astype("f")
    y = g.integers(0, 3, 96)
    trained = {}
    for compile in (True, False):
        kp.set_seed(0)
        model = kp.Sequential(kp.layers.Dense(16, activation="relu"), kp.layers.Dense(8, activation="tanh"),
                              kp.layers.Dense(3))
        model.compile(loss="cross_entropy", optimizer=kp.optim.SGD(lr=0.1, momentum=0.9))
        model.fit(x, y, epochs=3, batch_size=32, verbose=0, compile=compile)
        trained[compile] = model
    assert trained[True]._compiled_step[1]._local.fast[1].written_into
    assert_same_bits(trained[True].params, trained[False].params)


def test_nan_and_infinity_pass_through_reused_arrays_as_eagerly(data):
    x, w = data
    x = x.copy()
    x[0, 0], x[1, 1], x[2, 2] = np.nan, np.inf, -np.inf

    def f(w, x):
        return kp.sub(kp.mul(kp.relu(kp.add(kp.matmul(x, w[0]), w[1])), 3.0), 1.0)

    _check(f, w, x)
