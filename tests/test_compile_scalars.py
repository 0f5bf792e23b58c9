"""A replay passes a Python number that meets a floating array in an elementwise op (``x - 0.5``, relu's 0,
square's gradient's 2) as a 0-d array of the array's dtype, which NumPy takes faster than the number:
the results stay bit for bit the eager ones, for every floating dtype and for numbers NumPy rounds,
that overflow the dtype, or are not finite."""

import sys
import warnings

import numpy as np
import pytest
from compile_cases import assert_same_bits

import knetpy as kp

DTYPES = ["float16", "float32", "float64", "complex64"]
NUMBERS = [0.1, 3, -2.5, 1e-50, 1e300, 2**40, -0.0, 0.0, 0, float("nan"), -float("nan"), float("inf"), 7e4]


def _zero_d_constants(step):
    prog = step._local.fast[1]
    return [v for v in prog.env.values() if type(v) is np.ndarray and v.ndim == 0]


def _replay_equals_eager(fn, *args, calls=5):
    step = kp.compile(fn)
    for i in range(calls):
        a = [(x * (1 + 0.25 * i)).astype(x.dtype) if isinstance(x, np.ndarray) else x for x in args]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # overflow, as eagerly
            got, want = step(*a), fn(*a)
        assert_same_bits(got, want)
    assert step.replays == calls - 2
    return step


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("number", NUMBERS)
def test_a_number_on_either_side_of_add_sub_mul_gives_the_eager_bits(dtype, number):
    g = np.random.default_rng(0)
    x = (g.standard_normal((6, 5)) * 3).astype(dtype)

    def f(x):
        return [kp.add(x, number), kp.sub(number, x), kp.mul(x, number), kp.sub(x, number), kp.mul(number, x)]

    step = _replay_equals_eager(f, x)
    with np.errstate(all="ignore"):
        cast = np.array(number, dtype)
    if np.isfinite(cast) or not np.isfinite(number):  # in the dtype's range: the faster form is taken
        assert any(c.dtype == dtype for c in _zero_d_constants(step))
    else:  # out of range: the number itself, as eager mode passes it
        assert not any(c.dtype == dtype for c in _zero_d_constants(step))


@pytest.mark.filterwarnings("error::DeprecationWarning")  # (np.maximum's output given by position is deprecated)
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_relu_and_the_gradient_of_square_give_the_eager_bits(dtype):
    g = np.random.default_rng(1)
    x = g.standard_normal((8, 4)).astype(dtype)
    x[0, 0], x[1, 1], x[2, 2], x[3, 3] = np.nan, np.inf, -np.inf, -0.0
    w = [g.standard_normal((4, 3)).astype(dtype), np.zeros(3, dtype)]

    def loss(w, x):
        return kp.sum(kp.square(kp.relu(x @ w[0] + w[1]) - 0.5))

    step = _replay_equals_eager(kp.grad(loss), w, x)
    source = step._local.fast[1].source
    assert ", 0)" not in source and "* 2)" not in source  # relu's 0 and square's 2 as 0-d arrays
    assert {float(c) for c in _zero_d_constants(step)} >= {0.0, 2.0, 0.5}


def test_zero_and_minus_zero_keep_their_signs_in_one_process():
    x = np.array([-0.0, 0.0, 1.0], np.float32)
    for number in (0.0, -0.0, 0, -0.0, 0.0):  # each after the others: no cached constant may stand in
        _replay_equals_eager(lambda x, number=number: [kp.add(x, number), kp.mul(x, number)], x)


def test_an_integer_array_keeps_the_number():
    x = np.arange(12, dtype=np.int32).reshape(3, 4)
    step = _replay_equals_eager(lambda x: kp.mul(x, 3), x)
    assert not _zero_d_constants(step)


def test_the_cache_of_constants_stays_bounded(monkeypatch):
    compile_module = sys.modules["knetpy.compile"]  # (kp.compile is the function)

    monkeypatch.setattr(compile_module, "_MAX_SCALARS", 8)
    monkeypatch.setattr(compile_module, "_SCALARS", {})
    x = np.linspace(-1, 1, 6, dtype=np.float32)
    for i in range(20):  # a new number each time: each step records its own constant
        _replay_equals_eager(lambda x, c=0.5 + i: kp.mul(x, c), x)
    assert len(compile_module._SCALARS) <= 8
