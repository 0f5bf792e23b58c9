"""Automatic threads, the default: knetpy and BLAS threads chosen per op and per fit by the work size."""

import os
import subprocess
import sys

import numpy as np
import pytest
from thread_cases import automatic_threads_on_two_cores, blas_threads

import knetpy as kp
from knetpy import parallel
from knetpy.layers import LSTM, Conv2D, Dense, Flatten, MaxPool2D

threadpoolctl = pytest.importorskip("threadpoolctl")


@pytest.fixture(autouse=True)
def auto_on_two_cores(monkeypatch):
    """Automatic threads as on a 2-core machine, by the size rule alone (timed choices: test_timed_splits.py)."""
    with automatic_threads_on_two_cores(monkeypatch, timed=False):
        yield


@pytest.fixture
def splits(monkeypatch):
    """Every split op: [(number of parts, BLAS threads seen inside each part)]."""
    seen = []
    real = parallel.run

    def spy(fn, parts):
        inside = []

        def part(lo, hi):
            inside.append(blas_threads())
            fn(lo, hi)

        real(part, parts)
        seen.append((len(parts), sorted(inside)))

    monkeypatch.setattr(parallel, "run", spy)
    return seen


def conv_net():
    kp.set_seed(0)
    net = kp.Sequential(Conv2D(16, 3, activation="relu"), MaxPool2D(), Flatten(), Dense(10))
    net(np.zeros((1, 8, 32, 32), dtype=np.float32))
    return net


def test_auto_is_the_default_in_a_fresh_process():
    env = {k: v for k, v in os.environ.items() if k != "KNETPY_NUM_THREADS"}
    code = "import knetpy as kp; print(kp.parallel.is_auto(), kp.get_num_threads(), kp.parallel.cores())"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    auto, threads, cores = done.stdout.split()
    assert auto == "True" and threads == cores
    done = subprocess.run([sys.executable, "-c", code], env={**env, "KNETPY_NUM_THREADS": "auto"},
                          capture_output=True, text=True, check=True)
    assert done.stdout.split()[0] == "True"
    done = subprocess.run([sys.executable, "-c", code], env={**env, "KNETPY_NUM_THREADS": "1"},
                          capture_output=True, text=True, check=True)
    assert done.stdout.split()[:2] == ["False", "1"]


def test_small_ops_never_split_and_keep_blas_as_it_is(splits):
    assert parallel.is_auto() and kp.get_num_threads() == 2
    assert parallel.ranges(1000, parallel.MIN_ELEMENTS - 1) is None
    assert parallel.ranges(1000, parallel.MIN_ELEMENTS) == [(0, 500), (500, 1000)]
    x = np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32)
    w = kp.Param(np.ones((32, 16), dtype=np.float32))
    kp.sum(kp.relu(x @ w)).backward()
    assert splits == []
    assert blas_threads() == 4


def test_a_large_conv_splits_over_the_cores_with_blas_on_one_thread_meanwhile(splits):
    net = conv_net()
    x = np.random.default_rng(0).standard_normal((16, 8, 32, 32)).astype(np.float32)
    kp.sum(net(x)).backward()
    assert splits, "the convolution should have been split"
    assert all(parts == 2 and inside == [1, 1] for parts, inside in splits)
    assert blas_threads() == 4  # put back after every split op


def test_gemms_split_in_the_middle_and_a_lone_huge_gemm_keeps_blas_threads(splits):
    g = np.random.default_rng(0)
    a, b = g.standard_normal((256, 512)).astype(np.float32), g.standard_normal((512, 256)).astype(np.float32)
    assert 2 * 256 * 512 * 256 >= parallel.MIN_FLOPS
    np.testing.assert_allclose(parallel.matmul(a, b), a @ b, rtol=1e-5, atol=1e-4)
    assert splits == [(2, [1, 1])]
    big = g.standard_normal((800, 800)).astype(np.float32)
    assert 2 * 800**3 >= parallel.BLAS_MIN_FLOPS
    parallel.matmul(big, big)
    assert len(splits) == 1  # left to BLAS's own threads


def test_fit_runs_blas_on_one_thread_for_a_small_model_and_puts_it_back(monkeypatch):
    from knetpy import training

    seen = []
    real = training.run

    def spy(*args, **kwargs):
        seen.append(blas_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "run", spy)
    x, y = kp.datasets.spirals(100, 3)
    model = kp.Sequential(Dense(16, activation="relu"), Dense(3))
    model.compile(loss="cross_entropy", optimizer="sgd")
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    assert seen == [1] and blas_threads() == 4

    wide = kp.Sequential(Dense(4096), Dense(10))
    xw = np.zeros((256, 4096), dtype=np.float32)
    wide(xw[:1])
    with parallel.fit_threads(wide, xw) as n:
        assert n is None and blas_threads() == 4  # large GEMMs keep BLAS's threads


def test_set_num_threads_overrides_and_auto_comes_back(splits):
    net = conv_net()
    x = np.random.default_rng(0).standard_normal((16, 8, 32, 32)).astype(np.float32)
    kp.set_num_threads(1)
    assert not parallel.is_auto() and kp.get_num_threads() == 1
    kp.sum(net(x)).backward()
    assert splits == [] and blas_threads() == 4
    with parallel.auto_blas_threads(1000) as n:  # the small-model rule still applies with threads off
        assert n == 1
    kp.set_num_threads(3)
    assert kp.get_num_threads() == 3 and blas_threads() == 1  # held at one until the override ends
    kp.sum(net(x)).backward()
    assert splits and all(parts == 3 for parts, _ in splits)
    assert blas_threads() == 1
    with parallel.fit_threads(net, x) as n:
        assert n is None  # an explicit count is never second-guessed
    kp.set_num_threads(None)
    assert parallel.is_auto() and kp.get_num_threads() == 2 and blas_threads() == 4
    kp.set_num_threads("auto")
    assert parallel.is_auto()
    with pytest.raises(ValueError, match="'auto' or None"):
        kp.set_num_threads("fast")


def training_steps(make, x, y, steps=3):
    """Weights after a few SGD steps of ``make()``'s model on (x, y)."""
    model = make()
    params = model.parameters()
    for _ in range(steps):
        for p in params:
            p.zero_grad()
        out = model(x)
        out = out[0] if isinstance(out, tuple) else out
        loss = kp.mean(out * out) if y is None else kp.nll(out, y)
        loss.backward()
        for p in params:
            p -= 0.1 * p.grad
    return [p.value.copy() for p in params]


@pytest.mark.parametrize("kind", ["conv", "lstm"])
def test_auto_results_equal_one_thread_results(kind, splits):
    g = np.random.default_rng(1)
    if kind == "conv":
        make, x, y = conv_net, g.standard_normal((16, 8, 32, 32)), g.integers(0, 10, 16)
    else:
        def make():
            kp.set_seed(0)
            return LSTM(64, return_sequences=True)

        x, y = g.standard_normal((64, 20, 64)), None
    kp.set_num_threads(1)
    ref = training_steps(make, x, y)
    assert splits == []
    kp.set_num_threads("auto")
    got = training_steps(make, x, y)
    assert splits, "the automatic run should have split its large ops"
    for r, a in zip(ref, got):  # float32 weights: equal up to the rounding of a reordered sum
        np.testing.assert_allclose(a, r, rtol=1e-4, atol=1e-6)


def test_info_says_what_auto_chose_and_why(capsys):
    from knetpy.cli import main

    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "knetpy threads: 2 (automatic, 2 cores here:" in out
    assert parallel.AUTO_RULE in out
    assert "BLAS threads: 4 now" in out


def test_auto_stays_off_without_threadpoolctl(monkeypatch, splits):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "threadpoolctl" else real(name, *args))
    kp.set_num_threads("auto")
    n, why = parallel.threads_setting()
    assert n == 1 and "threadpoolctl is not installed" in why
    kp.sum(conv_net()(np.ones((16, 8, 32, 32), dtype=np.float32))).backward()
    assert splits == []  # without a way to hold BLAS at one thread, nothing is split
