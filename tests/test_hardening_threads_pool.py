"""The worker pool of kp.set_num_threads under stress: resizing while ops run, errors, interrupts, fork.

These use the real split thresholds (MIN_ELEMENTS, MIN_FLOPS) and arrays large enough to cross them.
Anything that could hang runs in a thread joined with a timeout, so a deadlock fails the test.
"""

import signal
import threading
import time
import traceback

import numpy as np
import pytest
from thread_cases import count_splits

import knetpy as kp
from knetpy import parallel

pytest.importorskip("threadpoolctl")

TIMEOUT = 120  # seconds; the work below takes a few on a loaded 2-core machine


@pytest.fixture(autouse=True)
def threads_off_afterwards():
    kp.set_num_threads(1)
    yield
    kp.set_num_threads(1)


@pytest.fixture
def split_counter(monkeypatch):
    """The number of parts of each op that went to the workers (parallel.run called)."""
    return count_splits(monkeypatch)


def finish_within(target, timeout=TIMEOUT):
    """Run ``target`` in a thread; fail (not hang) when it has not finished after ``timeout``."""
    errors = []

    def wrapped():
        try:
            target()
        except BaseException as e:  # noqa: BLE001 - reported in the test's thread
            errors.append(e)

    t = threading.Thread(target=wrapped, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"still running after {timeout} s: a split op is stuck in the worker pool"
    if errors:
        raise errors[0]


def big_operands(seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((300, 256))  # 2*300*256*220 FLOPs > MIN_FLOPS
    b = rng.standard_normal((256, 220))
    x = rng.standard_normal((512, 512))  # MIN_ELEMENTS elements
    y = rng.standard_normal((512, 512))
    assert 2 * a.shape[0] * a.shape[1] * b.shape[1] >= parallel.MIN_FLOPS and x.size >= parallel.MIN_ELEMENTS
    return a, b, x, y


def test_resizing_while_ops_run_never_deadlocks(split_counter):
    a, b, x, y = big_operands()
    want_ab, want_xy = a @ b, x * y
    w = kp.Param(a)
    stop = threading.Event()
    worst = []

    def ops():
        while not stop.is_set():
            worst.append(np.abs(parallel.matmul(a, b) - want_ab).max())
            worst.append(np.abs(parallel.elementwise(np.multiply, x, y) - want_xy).max())
            got = kp.matmul(w, b).value  # the same through the framework's op
            worst.append(np.abs(got - want_ab).max())

    def resize():
        for i in range(300):
            kp.set_num_threads(1 + i % 4)
            time.sleep(0.0005 * (i % 3))
        kp.set_num_threads(1)

    def both():
        worker = threading.Thread(target=ops, daemon=True)
        worker.start()
        try:
            resize()
        finally:
            stop.set()
            worker.join(TIMEOUT)
        assert not worker.is_alive()

    finish_within(both)
    assert worst and max(worst) < 1e-9
    assert any(n > 1 for n in split_counter), "no op was split: the test did not exercise the pool"


def test_set_num_threads_from_inside_a_part():
    kp.set_num_threads(2)
    seen = []

    def part(lo, hi):
        kp.set_num_threads(3 if lo == 0 else 2)  # resized by the caller's part and by the worker's
        seen.append((lo, hi))

    finish_within(lambda: parallel.run(part, [(0, 5), (5, 10)]))
    assert sorted(seen) == [(0, 5), (5, 10)]
    a, b, _, _ = big_operands(1)
    np.testing.assert_allclose(parallel.matmul(a, b), a @ b, rtol=1e-12, atol=1e-12)


def test_nested_split_with_a_resize_inside():
    kp.set_num_threads(2)
    a, b, _, _ = big_operands(2)
    results = {}

    def outer(lo, hi):
        kp.set_num_threads(4)
        results[lo] = parallel.matmul(a, b)  # nested: runs serially in this part

    finish_within(lambda: parallel.run(outer, [(0, 1), (1, 2)]))
    for got in results.values():
        np.testing.assert_allclose(got, a @ b, rtol=1e-12, atol=1e-12)
    assert kp.get_num_threads() == 4


class PartFailed(Exception):
    pass


def _failing_part(lo, hi):
    if lo > 0:  # only the workers' parts
        raise PartFailed(f"rows {lo}:{hi} failed")


def test_worker_exception_reaches_the_caller_and_the_pool_stays_usable(split_counter):
    kp.set_num_threads(3)
    with pytest.raises(PartFailed, match=r"rows \d+:\d+ failed") as info:
        parallel.run(_failing_part, [(0, 1), (1, 2), (2, 3)])
    frames = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert "_failing_part" in frames  # the worker's own frame is in the traceback

    a, b, x, y = big_operands(3)
    split_counter.clear()
    for _ in range(5):  # no message left from the failed op is taken for one of these
        np.testing.assert_allclose(parallel.matmul(a, b), a @ b, rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(parallel.elementwise(np.multiply, x, y), x * y)
    assert split_counter and all(n == 3 for n in split_counter)


def test_an_op_interrupted_while_waiting_leaves_nothing_for_the_next_one():
    """Ctrl-C while the caller waits for a slow worker part: the next op still waits for its own parts."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_kill"):
        pytest.skip("needs to signal the main thread")
    kp.set_num_threads(2)
    main = threading.main_thread().ident

    def slow(lo, hi):
        if lo > 0:
            time.sleep(0.6)

    timer = threading.Timer(0.15, lambda: signal.pthread_kill(main, signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        parallel.run(slow, [(0, 1), (1, 2)])
    timer.join()

    seen = []

    def record(lo, hi):
        if lo > 0:
            time.sleep(0.3)  # still running when the interrupted op's worker part reports
        seen.append(lo)

    finish_within(lambda: parallel.run(record, [(0, 1), (1, 2)]))
    assert sorted(seen) == [0, 1], "run returned before its worker part finished"


def test_several_user_threads_issue_split_ops_at_once(split_counter):
    kp.set_num_threads(2)
    operands = [big_operands(seed) for seed in range(4)]
    errors = []

    def work(a, b, x, y):
        want_ab, want_xy = a @ b, x + y
        for _ in range(10):
            if np.abs(parallel.matmul(a, b) - want_ab).max() > 1e-9:
                errors.append("matmul")
            if not np.array_equal(parallel.elementwise(np.add, x, y), want_xy):
                errors.append("add")

    def all_threads():
        threads = [threading.Thread(target=work, args=ops) for ops in operands]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    finish_within(all_threads)
    assert not errors
    assert any(n == 2 for n in split_counter)


def _split_matmul_in_child(seed):
    kp.set_num_threads(kp.get_num_threads())  # resizing works in the child too
    a, b, _, _ = big_operands(seed)
    return float(np.abs(parallel.matmul(a, b) - a @ b).max())


def test_fork_while_another_thread_runs_split_ops():
    import multiprocessing as mp

    if "fork" not in mp.get_all_start_methods():
        pytest.skip("no fork on this platform")
    kp.set_num_threads(2)
    a, b, _, _ = big_operands(5)
    stop = threading.Event()

    def ops():
        while not stop.is_set():
            parallel.matmul(a, b)

    busy = threading.Thread(target=ops, daemon=True)
    busy.start()
    try:
        ctx = mp.get_context("fork")
        with ctx.Pool(1) as pool:
            result = pool.apply_async(_split_matmul_in_child, (6,))
            assert result.get(TIMEOUT) < 1e-9
    finally:
        stop.set()
        busy.join(TIMEOUT)
    assert not busy.is_alive()
