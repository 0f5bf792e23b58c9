"""fit's BLAS threads chosen by timing for models with mid-size dense GEMMs (knetpy.blas_choice)."""

import numpy as np
import pytest
from thread_cases import blas_threads

import knetpy as kp
from knetpy import blas_choice, parallel
from knetpy.blas_choice import BlasChoice, decide, dense_products
from knetpy.layers import Conv2D, Dense, Flatten

threadpoolctl = pytest.importorskip("threadpoolctl")


@pytest.fixture(autouse=True)
def auto_on_two_cores(monkeypatch):
    """Automatic threads as on an idle 2-core machine, BLAS at 2 threads, nothing set in the environment."""
    monkeypatch.setattr(parallel, "cores", lambda: 2)
    monkeypatch.setattr(parallel, "_blas_env", False)
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        kp.set_num_threads("auto")
        yield
        kp.set_num_threads(1)
    kp.set_num_threads(1)
    assert parallel._blas_chosen == 0


def mlp(seed=0):
    """784 -> 64 relu -> 10: its first layer's products (100 x 784 x 64, 10 MFLOP) are mid-size."""
    kp.set_seed(seed)
    model = kp.Sequential(Dense(64, activation="relu"), Dense(10))
    model(np.zeros((1, 784), np.float32))
    return model


def data(n=400):
    g = np.random.default_rng(1)
    return g.standard_normal((n, 784)).astype(np.float32), g.integers(0, 10, n)


def test_the_products_timed_are_the_dense_layers_mid_size_ones():
    shapes = dense_products(mlp(), np.zeros((100, 784), np.float32))
    # forward and weight gradient of the first layer (it reads the data: no input gradient); the
    # second's (128 KFLOP) are too small
    assert shapes == [(100, 784, 64), (784, 100, 64)]
    assert all(2 * m * k * n >= parallel.BLAS_SPLIT_FLOPS for m, k, n in shapes)


def test_a_later_dense_layer_counts_its_input_gradient_too():
    kp.set_seed(0)
    model = kp.Sequential(Dense(512, activation="relu"), Dense(256))
    model(np.zeros((1, 64), np.float32))
    x = np.zeros((100, 64), np.float32)
    # the second layer's input gradient (100 x 256 x 512) is computed; the first's (100 x 512 x 64) is not
    assert dense_products(model, x) == [(100, 64, 512), (64, 100, 512), (100, 512, 256), (512, 100, 256),
                                        (100, 256, 512)]


def test_a_model_that_is_not_a_sequential_counts_every_product():
    class Net(kp.Model):
        def __init__(self):
            super().__init__()
            self.dense = Dense(64)

        def forward(self, x):
            return self.dense(x)

    net = Net()
    net(np.zeros((1, 784), np.float32))
    assert dense_products(net, np.zeros((100, 784), np.float32)) == [(100, 784, 64), (784, 100, 64), (100, 64, 784)]


def test_blas_threads_are_chosen_only_when_clearly_faster():
    assert decide(1.0, 0.6, 2) == 2
    assert decide(1.0, blas_choice.MARGIN, 4) == 4
    assert decide(1.0, 0.9, 2) == 1  # not worth the risk of a stall
    assert decide(1.0, 1.5, 2) == 1  # a busy machine


def test_a_choice_only_where_it_applies(monkeypatch):
    x = np.zeros((100, 784), np.float32)
    assert isinstance(BlasChoice.for_model(mlp(), x), BlasChoice)
    tiny = kp.Sequential(Dense(16, activation="relu"), Dense(3))
    tiny(np.zeros((1, 2), np.float32))
    assert BlasChoice.for_model(tiny, np.zeros((32, 2), np.float32)) is None  # one BLAS thread anyway
    wide = kp.Sequential(Dense(4096), Dense(10))
    wide(np.zeros((1, 4096), np.float32))
    assert BlasChoice.for_model(wide, np.zeros((256, 4096), np.float32)) is None  # BLAS's threads: the rule
    assert BlasChoice.for_model(mlp(), x.tolist()) is None  # not a host array
    with parallel.blas_threads(1):  # the caller limited BLAS
        assert BlasChoice.for_model(mlp(), x) is None
    kp.set_num_threads(2)  # fixed threads
    assert BlasChoice.for_model(mlp(), x) is None
    kp.set_num_threads("auto")
    monkeypatch.setattr(parallel, "_blas_env", True)  # OPENBLAS_NUM_THREADS and kin
    assert BlasChoice.for_model(mlp(), x) is None
    monkeypatch.setattr(parallel, "_blas_env", False)
    monkeypatch.setattr(parallel, "cores", lambda: 1)
    assert BlasChoice.for_model(mlp(), x) is None


def test_a_conv_net_with_only_small_dense_products_gets_no_choice():
    net = kp.Sequential(Conv2D(16, 3, activation="relu"), Flatten(), Dense(10))
    net(np.zeros((1, 3, 16, 16), np.float32))
    # its largest GEMM is the convolution's (mid-size), its dense one is 100 x 3136 x 10
    x = np.zeros((8, 3, 16, 16), np.float32)
    assert parallel.BLAS_SPLIT_FLOPS <= parallel.largest_gemm_flops(net, x) < parallel.BLAS_MIN_FLOPS
    assert BlasChoice.for_model(net, x) is None


def test_measure_times_both_settings_and_puts_the_choice_in_place():
    choice = BlasChoice.for_model(mlp(), np.zeros((100, 784), np.float32))
    one, many = choice.measure()
    assert one > 0 and many > 0
    with choice:
        choice.epoch_begin()
        assert choice.choices == [choice.current] and choice.current in (1, 2)
        assert blas_threads() == choice.current
    assert blas_threads() == 2  # put back


def clock(choice, steps, seconds, start):
    for i in range(steps):
        choice.step(now=start + (i + 1) * seconds)
    return start + steps * seconds


def test_the_watchdog_goes_back_to_one_thread_when_steps_slow_down(monkeypatch):
    monkeypatch.setattr(blas_choice, "decide", lambda one, many, threads: threads)
    choice = BlasChoice.for_model(mlp(), np.zeros((100, 784), np.float32))
    with choice:
        choice.epoch_begin()
        assert choice.current == 2
        t = clock(choice, 1 + blas_choice.BASELINE_STEPS, 0.001, 0.0)  # the first step starts the clock
        t = clock(choice, blas_choice.PATIENCE - 1, 0.01, t)  # slow, but not for long enough
        t = clock(choice, 5, 0.001, t)
        assert choice.current == 2 and blas_threads() == 2 and choice.dropped == 0
        clock(choice, blas_choice.PATIENCE, 0.01, t)  # ten times slower, PATIENCE steps in a row
        assert choice.current == 1 and blas_threads() == 1 and choice.dropped == 1
        choice.epoch_begin()  # the next epoch chooses again (here: BLAS's threads)
        assert choice.current == 2 and blas_threads() == 2
    assert blas_threads() == 2


def test_compiled_products_are_not_held_at_one_thread_while_a_fit_chooses(monkeypatch):
    held = []
    real = parallel._hold_blas
    monkeypatch.setattr(parallel, "_hold_blas", lambda: held.append(1) or real())
    a = np.ones((100, 784), np.float32)
    b = np.ones((784, 64), np.float32)
    parallel.matmul_one_blas_thread(a, b)
    assert held == [1] and parallel.one_blas_thread(2 * 100 * 784 * 64)
    with BlasChoice.for_model(mlp(), a):
        np.testing.assert_array_equal(parallel.matmul_one_blas_thread(a, b), a @ b)
        assert held == [1] and not parallel.one_blas_thread(2 * 100 * 784 * 64)


def fit_weights(x, y, epochs=2, compile="auto"):
    model = mlp()
    model.compile(loss="cross_entropy", optimizer=kp.optim.SGD(lr=0.1))
    seen = []

    class Spy(kp.callbacks.Callback):
        def on_batch_end(self, batch, logs=None):
            seen.append(blas_threads())

    model.fit(x, y, epochs=epochs, batch_size=100, shuffle=True, verbose=0, compile=compile, callbacks=[Spy()])
    return [p.value.copy() for p in model.parameters()], seen


@pytest.mark.parametrize("compile", ["auto", False])
def test_fit_trains_with_the_chosen_count_and_puts_blas_back(monkeypatch, compile):
    x, y = data()
    chosen = []
    monkeypatch.setattr(blas_choice, "decide", lambda one, many, threads: chosen.append(threads) or threads)
    many, seen = fit_weights(x, y, compile=compile)
    assert chosen == [2, 2] and set(seen) == {2} and len(seen) == 8
    assert blas_threads() == 2 and parallel._blas_chosen == 0
    again, _ = fit_weights(x, y, compile=compile)
    for a, b in zip(many, again):  # the same choices give the same bits
        np.testing.assert_array_equal(a, b)

    monkeypatch.setattr(blas_choice, "decide", lambda one, many, threads: 1)
    one, seen = fit_weights(x, y, compile=compile)
    assert set(seen) == {1} and blas_threads() == 2
    monkeypatch.setattr(BlasChoice, "for_model", classmethod(lambda cls, model, x: None))
    rule, seen = fit_weights(x, y, compile=compile)  # the rule alone: one thread throughout
    assert set(seen) == {1}
    for a, b in zip(one, rule):  # choosing one thread is the rule, bit for bit
        np.testing.assert_array_equal(a, b)
    for a, b in zip(one, many):  # and BLAS's threads agree with it to float rounding
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_fit_chooses_again_at_every_epoch(monkeypatch):
    x, y = data(200)
    answers = iter([2, 1, 2])
    monkeypatch.setattr(blas_choice, "decide", lambda one, many, threads: next(answers))
    _, seen = fit_weights(x, y, epochs=3)
    assert seen == [2, 2, 1, 1, 2, 2]
    assert blas_threads() == 2


def test_fits_in_several_threads_count_themselves_and_leave_nothing_behind(monkeypatch):
    from thread_cases import run_threads

    x, y = data(200)
    monkeypatch.setattr(blas_choice, "decide", lambda one, many, threads: threads)
    weights = {}

    def train(i):
        weights[i] = fit_weights(x, y, epochs=2)[0]

    run_threads(4, train)
    assert parallel._blas_chosen == 0 and blas_threads() == 2
    assert sorted(weights) == [0, 1, 2, 3] and all(np.isfinite(w).all() for ws in weights.values() for w in ws)
