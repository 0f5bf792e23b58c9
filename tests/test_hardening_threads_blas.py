"""BLAS threads for small models: the rule, the context that applies it, the examples that use it, `info`."""

import sys

import numpy as np
import pytest
from thread_cases import blas_threads

import knetpy as kp
from knetpy import parallel
from knetpy.layers import Dense

threadpoolctl = pytest.importorskip("threadpoolctl")


@pytest.fixture(autouse=True)
def clean_setting(monkeypatch):
    """Threads off, no BLAS thread variables in the environment, several BLAS threads to limit."""
    for name in parallel.BLAS_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    kp.set_num_threads(1)
    try:
        import sklearn.datasets  # noqa: F401 - loads SciPy's BLAS now, so that the limits below cover it
    except ImportError:
        pass
    with threadpoolctl.threadpool_limits(limits=4, user_api="blas"):  # as on a machine with cores to spare
        yield
    kp.set_num_threads(1)


def test_the_rule_picks_one_thread_for_small_work_and_leaves_large_work_alone():
    assert parallel.blas_threads_for(0) == 1
    assert parallel.blas_threads_for(parallel.BLAS_MIN_FLOPS - 1) == 1
    assert parallel.blas_threads_for(parallel.BLAS_MIN_FLOPS) is None
    assert parallel.blas_threads_for(50 * parallel.BLAS_MIN_FLOPS) is None


def test_largest_gemm_estimate_puts_the_quickstart_below_and_a_wide_mlp_above():
    from knetpy.examples.quickstart import small_cnn

    kp.set_seed(0)
    digits = np.zeros((32, 1, 8, 8), dtype=np.float32)
    cnn = small_cnn()
    cnn(digits[:1])
    # the second convolution: 2 * 32 images * 64 positions * (32 * 3 * 3) * 64 filters
    assert parallel.largest_gemm_flops(cnn, digits) == 2 * 32 * 64 * 32 * 9 * 64
    assert parallel.blas_threads_for(parallel.largest_gemm_flops(cnn, digits)) == 1

    wide = kp.Sequential(Dense(4096, activation="relu"), Dense(10))
    x = np.zeros((256, 4096), dtype=np.float32)
    wide(x[:1])
    assert parallel.largest_gemm_flops(wide, x) == 2 * 256 * 4096 * 4096
    assert parallel.blas_threads_for(parallel.largest_gemm_flops(wide, x)) is None


def test_the_context_limits_blas_and_puts_it_back():
    assert blas_threads() == 4
    with parallel.auto_blas_threads(1000) as n:
        assert n == 1 and blas_threads() == 1
        assert parallel.blas_setting() == (1, "one thread for a small model, by the rule below")
    assert blas_threads() == 4
    with parallel.auto_blas_threads(10 * parallel.BLAS_MIN_FLOPS) as n:
        assert n is None and blas_threads() == 4
    assert parallel.blas_setting()[0] == 4


def test_set_num_threads_and_the_environment_take_precedence(monkeypatch):
    kp.set_num_threads(2)
    with parallel.auto_blas_threads(1000) as n:
        assert n is None and blas_threads() == 1
        kp.set_num_threads(1)  # the override still puts BLAS's count back
        assert blas_threads() == 4
    assert blas_threads() == 4
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "4")
    with parallel.auto_blas_threads(1000) as n:
        assert n is None and blas_threads() == 4
    assert "OPENBLAS_NUM_THREADS=4" in parallel.blas_setting()[1]


def test_without_threadpoolctl_nothing_changes_and_nothing_fails(monkeypatch):
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # import threadpoolctl raises ImportError
    with parallel.auto_blas_threads(1000) as n:
        assert n is None
    assert parallel.blas_setting()[0] is None
    assert "threadpoolctl is not installed" in parallel.blas_setting()[1]


@pytest.fixture
def threads_during_fit(monkeypatch):
    """The BLAS thread count seen at the start of every Model.fit."""
    seen = []
    real_fit = kp.Model.fit

    def fit(self, *args, **kwargs):
        seen.append(blas_threads())
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(kp.Model, "fit", fit)
    return seen


@pytest.mark.parametrize("dataset", ["digits", "spirals"])
def test_the_quickstart_trains_with_one_blas_thread(tmp_path, capsys, threads_during_fit, dataset):
    pytest.importorskip("sklearn")
    from knetpy.examples import quickstart

    result = quickstart.main(["--dataset", dataset, "--epochs", "1", "--out", str(tmp_path), "--no-plot"])
    assert result["blas_threads"] == 1
    assert threads_during_fit == [1]
    assert blas_threads() == 4  # put back afterwards


def test_the_mlp_example_trains_with_one_blas_thread(tmp_path, capsys, threads_during_fit):
    pytest.importorskip("sklearn")
    from knetpy.examples import mlp

    mlp.main(["--dataset", "digits", "--epochs", "1", "--out", str(tmp_path), "--no-plot"])
    assert threads_during_fit == [1]
    assert blas_threads() == 4


def test_info_says_which_threads_are_in_effect_and_why(capsys):
    from knetpy.cli import main

    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "knetpy threads: 1 (off, set by kp.set_num_threads" in out
    assert "BLAS threads: 4 now (BLAS's own setting, by default one per core)" in out
    assert f"BLAS rule: {parallel.BLAS_RULE}" in out and "largest GEMM is under 1 GFLOP" in out

    kp.set_num_threads(2)
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "knetpy threads: 2 (on, set by kp.set_num_threads" in out
    assert "BLAS threads: 1 now (knetpy's 2 threads are on, so BLAS runs one)" in out
