"""BLAS's threads for an eager training loop, chosen by timing whole steps (knetpy.blas_steps): the steps'
mid-size GEMMs run on BLAS's own threads only where such steps were timed faster, the choice is per step
signature and thread, a far slower trial ends at once, and it stays off wherever BLAS's threads are
someone else's choice. Timings come from a fake clock."""

import threading

import numpy as np
import pytest

import knetpy as kp
from knetpy import blas_steps, parallel

MID = (64, 512, 64)  # 4 MFLOP: a mid-size GEMM
SMALL = (4, 8, 4)


@pytest.fixture
def steps(monkeypatch):
    """Automatic threads (2), BLAS free to choose, and a clock the test moves: ``steps.run(seconds)``."""
    monkeypatch.setattr(parallel, "_auto", True)
    monkeypatch.setattr(parallel, "_threads", 2)
    monkeypatch.setattr(parallel, "_blas_env", False)
    monkeypatch.setattr(parallel, "_blas_chosen", 0)
    monkeypatch.setattr(parallel, "_limited", 0)
    now = [0.0]
    monkeypatch.setattr(blas_steps, "_clock", lambda: now[0])
    blas_steps.reset()

    class Steps:
        ways = []

        @staticmethod
        def run(rule_seconds, blas_seconds, shape=MID, n=1):
            """``n`` steps with one GEMM of ``shape``, each taking the time of the way it runs."""
            for _ in range(n):
                blas_steps.saw_gemm(*shape)  # (the step's first mid-size GEMM chooses its way)
                way = blas_steps.BLAS if blas_steps.blas_threads_now() else blas_steps.RULE
                Steps.ways.append(way)
                now[0] += blas_seconds if way == blas_steps.BLAS else rule_seconds
                blas_steps.step_done()

    yield Steps
    blas_steps.reset()


def test_faster_steps_on_blas_threads_keep_them(steps):
    steps.run(1.0, 0.5, n=12)
    # the first step observes; then the rule, then BLAS's threads: one untimed step and TRIALS timed each
    assert steps.ways[:9] == [0, 0, 0, 0, 0, 1, 1, 1, 1]
    assert steps.ways[9:] == [1, 1, 1]
    assert list(blas_steps.choices().values()) == [blas_steps.BLAS]


def test_steps_not_faster_by_the_margin_keep_the_rule(steps):
    steps.run(1.0, 0.9, n=14)  # 90% of the rule's time: over the 85% margin
    assert steps.ways[9:] == [0] * 5
    assert list(blas_steps.choices().values()) == [blas_steps.RULE]


def test_a_far_slower_trial_step_ends_the_trial_at_once(steps):
    steps.run(1.0, 2.0, n=8)
    assert steps.ways == [0, 0, 0, 0, 0, 1, 0, 0]  # one step on BLAS's threads, then the rule
    assert list(blas_steps.choices().values()) == [blas_steps.RULE]


def test_the_choice_is_timed_again_every_recheck_steps(steps, monkeypatch):
    monkeypatch.setattr(blas_steps, "RECHECK", 10)
    steps.run(1.0, 0.5, n=9)
    assert list(blas_steps.choices().values()) == [blas_steps.BLAS]
    steps.run(0.3, 0.5, n=40)  # the machine changed: BLAS's threads are now the slower way
    assert list(blas_steps.choices().values()) == [blas_steps.RULE]
    assert steps.ways[-5:] == [0] * 5


def test_steps_with_other_gemms_have_their_own_choice(steps):
    for _ in range(10):  # a loop alternating two batch sizes
        steps.run(1.0, 0.5, shape=MID)
        steps.run(1.0, 1.0, shape=(32, 512, 64))
    assert sorted(blas_steps.choices().values()) == [blas_steps.RULE, blas_steps.BLAS]


def test_a_step_without_mid_size_gemms_is_neither_timed_nor_changed(steps):
    steps.run(1.0, 0.5, shape=SMALL, n=0)
    for _ in range(5):
        blas_steps.step_done()  # (no GEMM seen: parallel.matmul notes mid-size ones only)
    assert blas_steps.choices() == {}
    assert not blas_steps.blas_threads_now()


@pytest.mark.parametrize("setting", ["fixed threads", "one core", "fit chooses", "limited", "environment"])
def test_off_where_blas_threads_are_someone_elses_choice(steps, monkeypatch, setting):
    name, value = {"fixed threads": ("_auto", False), "one core": ("_threads", 1), "fit chooses": ("_blas_chosen", 1),
                   "limited": ("_limited", 1), "environment": ("_blas_env", True)}[setting]
    monkeypatch.setattr(parallel, name, value)
    steps.run(1.0, 0.1, n=12)
    assert steps.ways == [0] * 12 and blas_steps.choices() == {}


def test_each_thread_chooses_for_its_own_loop(steps):
    steps.run(1.0, 0.5, n=12)
    blas_steps.saw_gemm(*MID)  # the next step begins
    seen = []
    t = threading.Thread(target=lambda: seen.append((blas_steps.blas_threads_now(), blas_steps.choices())))
    t.start()
    t.join()
    assert seen == [(False, {})]
    assert blas_steps.blas_threads_now()


def test_matmul_leaves_blas_its_threads_on_a_chosen_step_and_gives_the_same_product(steps, monkeypatch):
    held = []
    real = parallel._hold_blas
    monkeypatch.setattr(parallel, "_hold_blas", lambda: held.append(1) or real())
    monkeypatch.setattr(parallel, "_blas_is_ours", lambda: True)
    g = np.random.default_rng(0)
    a, b = g.standard_normal(MID[:2]).astype("f"), g.standard_normal(MID[1:]).astype("f")
    steps.run(1.0, 0.5, n=9)
    assert not blas_steps.blas_threads_now()  # (between steps: the next one chooses at its first GEMM)
    calls = len(held)
    on_blas = parallel.matmul(a, b)
    assert blas_steps.blas_threads_now()
    assert len(held) == calls  # neither held at one thread nor split over knetpy's threads
    assert parallel.matmul_one_blas_thread(a, b) is not None and len(held) == calls  # (a compiled step's call too)
    blas_steps.reset()
    on_rule = parallel.matmul_one_blas_thread(a, b)
    assert len(held) == calls + 1
    np.testing.assert_allclose(on_blas, a @ b, rtol=1e-6)
    np.testing.assert_allclose(on_rule, a @ b, rtol=1e-6)


def test_op_timings_are_not_taken_on_a_step_on_blas_threads(steps, monkeypatch):
    monkeypatch.setattr(parallel, "_sites", {})
    steps.run(1.0, 0.5, n=9)
    blas_steps.saw_gemm(*MID)  # the next step begins, on BLAS's threads
    assert blas_steps.blas_threads_now()
    ran = []
    for _ in range(5):
        parallel.by_timing(("test site", 1), [lambda: ran.append(0), lambda: ran.append(1)], default=0)
    assert ran == [0] * 5  # the default way, untimed
    assert parallel._sites == {}


def test_nothing_is_timed_while_blas_threads_spin_after_a_step_on_them(steps, monkeypatch):
    """For SPIN seconds after a step on BLAS's threads (their idle threads spin beside what runs next),
    neither the op sites nor a loop's steps on the rule take timings; afterwards both do again."""
    monkeypatch.setattr(parallel, "_sites", {})
    steps.run(1.0, 2.0, n=6)  # the trial's first step on BLAS's threads is far slower: the rule is kept
    assert steps.ways[-1] == blas_steps.BLAS and blas_steps.spinning()
    ran = []
    site = ("test site", 2)
    for _ in range(5):
        parallel.by_timing(site, [lambda: ran.append(0), lambda: ran.append(1)], default=1)
    assert ran == [1] * 5 and parallel._sites == {}  # the default way, untimed
    # another loop's trial starts beside the spinning threads: its steps on the rule are not timed
    other = (32, 512, 64)
    steps.run(0.05, 0.05, shape=other, n=3)  # (0.15 s: still within SPIN of the step on BLAS's threads)
    assert blas_steps._local.loops[other].warm == [False, False]
    steps.run(0.1, 0.1, shape=other, n=1)
    assert not blas_steps.spinning()
    steps.run(0.1, 0.1, shape=other, n=1)
    assert blas_steps._local.loops[other].warm[blas_steps.RULE]  # its rule's first step ran: the trial goes on
    parallel.by_timing(site, [lambda: ran.append(0), lambda: ran.append(1)], default=1)
    assert site in parallel._sites  # timed again: the site's first call


def test_an_eager_loop_chooses_at_its_backward_calls(steps, monkeypatch):
    """backward() closes each step; the loop's GEMMs are what parallel.matmul saw."""
    now = [0.0]
    monkeypatch.setattr(blas_steps, "_clock", lambda: now[0])
    monkeypatch.setattr(parallel, "_blas_is_ours", lambda: True)
    g = np.random.default_rng(1)
    x, y = g.standard_normal((64, 512)).astype("f"), g.integers(0, 10, 64)
    w = [kp.Param(g.standard_normal((512, 64)).astype("f") * 0.05), kp.Param(np.zeros((64, 10), "f"))]
    losses = []
    for _ in range(12):
        h = kp.relu(parallel_dot(x, w[0]))  # (the step's first mid-size GEMM chooses its way)
        now[0] += 0.5 if blas_steps.blas_threads_now() else 1.0
        loss = kp.nll(h @ w[1], y)
        loss.backward()
        for p in w:
            p -= 0.1 * p.grad
            p.zero_grad()
        losses.append(float(loss))
    assert list(blas_steps.choices().values()) == [blas_steps.BLAS]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]


def parallel_dot(x, w):
    return kp.matmul(x, w)
