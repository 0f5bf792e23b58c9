"""A replay's shortcuts for small steps (a linear regression's): a one-element operand of an elementwise op
passed as a 0-d view, a one-element parameter updated by scalar arithmetic, and square's gradient where the
gradient reaching it is the same on every call (a mean's) made with one multiply. Each gives the eager
bits, for values that round, overflow or are not finite, and keeps to the eager shapes and dtypes."""

import re
import warnings

import numpy as np
import pytest
from compile_cases import assert_same_bits

import knetpy as kp
from knetpy import training

SPECIAL = [np.nan, np.inf, -np.inf, -0.0, 3e38, 1e-45]


def _source(step):
    return step._local.fast[1].source


def _replay_equals_eager(fn, make_args, calls=5):
    """Compile ``fn``; on calls with the arguments ``make_args(i)`` its results equal eager mode's."""
    step = kp.compile(fn)
    for i in range(calls):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # overflow, NaN: as eagerly
            got, want = step(*make_args(i)), fn(*make_args(i))
        assert_same_bits(got, want)
    assert step.replays == calls - 2
    return step


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
@pytest.mark.parametrize("bias_shape", [(1,), (1, 1), (1, 1, 1)])
def test_a_one_element_operand_gives_the_eager_bits_and_shape(dtype, bias_shape):
    g = np.random.default_rng(0)
    x = (g.standard_normal((6, 3)) * 3).astype(dtype)
    with np.errstate(over="ignore"):  # (3e38 is float16's infinity)
        x.flat[:len(SPECIAL)] = SPECIAL

    def f(x, b):
        return [kp.add(x, b), kp.sub(b, x), kp.mul(x, b), kp.sub(x, b)]

    for value in [0.5, *SPECIAL]:
        with np.errstate(over="ignore"):
            b = np.full(bias_shape, value, dtype)
        step = _replay_equals_eager(f, lambda i, b=b: ((x * (1 + i)).astype(dtype), (b * (1 - i)).astype(dtype)))
        # (a 0-d view of a (1, 1, 1) bias would drop the leading axis of the (1, 6, 3) result)
        assert (".reshape(())" in _source(step)) is (len(bias_shape) <= 2)


def test_a_one_element_operand_of_another_dtype_is_passed_as_it_is():
    x = np.arange(6, dtype="f").reshape(3, 2)
    b = np.array([0.1])  # float64: the result is float64, as eagerly
    step = _replay_equals_eager(lambda x, b: kp.add(x, b), lambda i: (x + i, b * i))
    assert ".reshape(())" not in _source(step)
    assert step(x, b).dtype == np.float64


def test_a_bias_of_one_unit_takes_the_view_in_a_compiled_gradient():
    g = np.random.default_rng(1)
    x, y = g.standard_normal((20, 4)).astype("f"), g.standard_normal((20, 1)).astype("f")
    w = [g.standard_normal((4, 1)).astype("f"), np.array([0.3], "f")]

    def loss(w, x, y):
        return kp.mean(kp.square(x @ w[0] + w[1] - y))

    step = _replay_equals_eager(kp.grad(loss), lambda i: (w, x * (1 + i), y))
    assert ".reshape(())" in _source(step)


def _regression(dtype, bias_shape, seed=0):
    g = np.random.default_rng(seed)
    x = g.standard_normal((30, 4)).astype(dtype)
    y = (x @ g.standard_normal((4, 1)) + 1.5).astype(dtype)
    return [(g.standard_normal((4, 1)) * 0.1).astype(dtype), np.zeros(bias_shape, dtype)], x, y


def _train_step(opts):
    dloss = kp.grad(lambda w, x, y: kp.mean(kp.square(x @ w[0] + w[1] - y)))

    def step(w, x, y):
        kp.optim.update(w, dloss(w, x, y), opts)

    return step


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
@pytest.mark.parametrize("bias_shape", [(1,), (1, 1), ()])
def test_a_one_element_parameter_is_updated_as_eagerly(dtype, bias_shape):
    w, x, y = _regression(dtype, bias_shape)
    we = [a.copy() for a in w]
    opts, opts_e = (kp.optim.optimizers(v, kp.optim.SGD, lr=0.05) for v in (w, we))
    step, eager = kp.compile(_train_step(opts)), _train_step(opts_e)
    for i in range(10):
        if i == 6:
            for o in (*opts, *opts_e):
                o.lr = 0.3  # a new rate: read on the next replay
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            step(w, x, y)
            eager(we, x, y)
        assert_same_bits(w, we)
    assert step.replays == 8
    assert [o.iterations for o in opts] == [o.iterations for o in opts_e] == [10, 10]
    assert [o.state["array"]["step"] for o in opts] == [10, 10]
    # float16's scalar arithmetic is not promised to be its ufunc's: the ufunc stays
    assert (f"a1[{(0,) * len(bias_shape)!r}] = " in _source(step)) is (dtype != "float16")


def test_a_one_element_update_overflows_and_keeps_nan_as_eagerly():
    for value in (3e38, np.inf, np.nan):
        w, x, y = _regression("float32", (1,))
        y[:] = value
        we = [a.copy() for a in w]
        opts, opts_e = (kp.optim.optimizers(v, kp.optim.SGD, lr=10.0) for v in (w, we))
        step, eager = kp.compile(_train_step(opts)), _train_step(opts_e)
        with np.errstate(all="ignore"):
            for _ in range(5):
                step(w, x, y)
                eager(we, x, y)
                assert_same_bits(w, we)
        assert step.replays == 3


@pytest.mark.parametrize("reduce", [kp.mean, kp.sum])
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
def test_the_gradient_of_square_under_a_mean_is_one_multiply_with_the_eager_bits(reduce, dtype):
    g = np.random.default_rng(2)
    x = g.standard_normal((12, 3)).astype(dtype)
    x[0, 0], x[1, 1] = np.finfo(dtype).max, np.finfo(dtype).max / 1.5  # 2 * x overflows, (2 / n) * x does not
    x[2, 2], x[3, 0], x[4, 1] = np.nan, -np.inf, -0.0
    w = [np.zeros_like(x)]

    def loss(w, x):
        return reduce(kp.square(w[0] + x))  # its gradient: square's, element by element

    step = _replay_equals_eager(kp.grad(loss), lambda i: (w, (x * (1 - 0.1 * i)).astype(dtype)))
    prog = step._local.fast[1]
    # after the sum, one statement: np.multiply(k, v1, v1), k the reduction's gradient times 2 made while tracing
    lines = [line.strip() for line in prog.source.splitlines()]
    computed = [line for line in lines if re.match(r"v\d+ = ", line) and not re.fullmatch(r"v\d+ = v\d+", line)]
    assert len(computed) == 2 and computed[0] == "v1 = (a0 + a1)", prog.source
    fn, k = re.fullmatch(r"v\d+ = (c\d+)\((k\d+), v1, v1\)", computed[1]).groups()
    assert prog.env[fn] is np.multiply
    seed_gradient = np.full(x.shape, 1 / x.size if reduce is kp.mean else 1, dtype)
    assert_same_bits(prog.env[k], seed_gradient * 2)
    if reduce is kp.mean:  # where 2 * x overflows, the gradient does not (the eager formula's order)
        assert np.isfinite(step(w, x)[0][:2, :2]).all()


def test_the_gradient_of_square_under_another_op_gives_the_eager_bits():
    g = np.random.default_rng(3)
    x = g.standard_normal((8, 3)).astype("f")
    x[0, 0] = 3e38
    w = [g.standard_normal((3, 2)).astype("f")]

    def loss(w, x):
        return kp.mean(kp.tanh(kp.square(x @ w[0])))  # square's incoming gradient differs per call

    _replay_equals_eager(kp.grad(loss), lambda i: (w, (x * (1 + i)).astype("f")))


def test_the_eager_gradient_of_square_is_2x_times_the_incoming_gradient():
    x = kp.Param(np.array([1.5, -2.0, 0.0], "d"))
    y = kp.square(x)
    y.backward(np.array([1.0, 0.5, 3.0]))
    np.testing.assert_array_equal(x.grad, [3.0, -2.0, 0.0])


def _regression_fit(compile):
    kp.set_seed(0)
    w, x, y = _regression("float32", (1,), seed=4)
    model = kp.Sequential(kp.layers.Dense(8, activation="tanh"), kp.layers.Dense(1))
    model.compile(loss="mse", optimizer=kp.optim.SGD(lr=0.05))
    hist = model.fit(x, y, epochs=3, batch_size=10, shuffle=False, verbose=0, compile=compile)
    return hist.history, {k: p.value.copy() for k, p in model.params.items()}, model


def test_fit_updates_a_one_unit_bias_as_eager_fit_does():
    eager, compiled = _regression_fit(False), _regression_fit(True)
    assert eager[0] == compiled[0]
    assert eager[1].keys() == compiled[1].keys()
    for k in eager[1]:
        assert_same_bits(eager[1][k], compiled[1][k])
    step = training.compiled_step(compiled[2])
    assert step.replays > 0
    assert "[(0,)] = " in step._local.fast[1].source  # the (1,) bias of the last layer, by scalar arithmetic
    assert [p._version for p in compiled[2].params.values()] == [p._version for p in eager[2].params.values()]
