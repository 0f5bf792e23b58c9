"""BLAS's threads for an eager training loop (``loss.backward()`` once a step), chosen by timing whole steps.

A mid-size GEMM (:data:`knetpy.parallel.BLAS_SPLIT_FLOPS` to :data:`knetpy.parallel.BLAS_MIN_FLOPS`) runs on
one BLAS thread, or split over knetpy's threads, by the rule of :mod:`knetpy.parallel`: BLAS's own threads
keep spinning after a product and take the cores from the split ops that follow, which a product timed
alone does not show (a LeNet step took 30% longer with them). Yet where little else is split (an MLP of
784 -> 256 at batch 128), BLAS's two threads run its products 1.4-1.9 times faster than the rule's ways.

So, as ``fit`` does for its epochs (:mod:`knetpy.blas_choice`), an eager loop times its steps both ways:
the end of each ``backward()`` closes a step, and a step whose GEMMs include mid-size ones runs, on its
first calls, with the rule and then with BLAS's own threads for those GEMMs; after three timed steps of
each (one untimed first; :data:`knetpy.parallel.TRIALS`), the loop keeps BLAS's threads only where their
median step took at most :data:`MARGIN` of the rule's, and times both again every :data:`RECHECK` steps,
so that the choice follows the machine. The rule's steps come first, and for :data:`SPIN` seconds after
a step on BLAS's threads neither a step on the rule nor an op site (:func:`knetpy.parallel.by_timing`)
is timed: BLAS's idle threads keep spinning for about 0.1 s, beside whatever runs next. (With the two
ways in turns, LeNet's op sites were timed beside them, chose to run whole on one core, and its steps
took 12.2-13.1 ms against 8.1-10.0 ms without the trial.) Nor do the op sites take timings in a step on
BLAS's threads. A step on BLAS's threads that takes :data:`ABORT` times the rule's fastest ends the trial at
once: the rule is kept (a character LSTM's steps took 1.2 times as long on them, and the rule's steps right
after them longer too). A step is named by the shape of its first mid-size GEMM, which holds the batch size:
a loop that alternates two batch sizes keeps two choices.

Only with automatic threads, BLAS's count not set by the environment or limited by a block (``fit``
limits it for a model whose largest GEMM is under a GFLOP, or chooses it itself by timing), on two or more
cores; in each thread for its own loop.
``kp.set_num_threads(n)`` turns it off. BLAS may round a product differently with several threads than
with one, so steps that choose differently may differ at float rounding.
"""

from __future__ import annotations

import threading
import time

from . import parallel

MARGIN = 0.85  # BLAS's threads are kept when their median step takes at most 85% of the rule's
ABORT = 1.2  # a step on BLAS's threads this many times the rule's fastest keeps the rule at once
RECHECK = 100  # every RECHECK-th step of a decided loop is a timed step of the next way in turn
MAX_LOOPS = 64  # step signatures remembered per thread (then no more are timed)
SPIN = 0.2  # seconds after a step on BLAS's threads that other timings wait for (their threads spin ~0.1 s)
RULE, BLAS = 0, 1  # the two ways: knetpy's rule (one BLAS thread or a split), BLAS's own threads
_clock = time.perf_counter
_local = threading.local()
_spun_until = 0.0  # (any thread's step on BLAS's threads: their spinning takes the cores from all)


class _Loop(parallel._Site):
    """The timings and the choice for one step signature in one thread (the op sites' timings, with this
    module's margin and recheck period, and the trial's early end)."""

    __slots__ = ("fastest_rule",)

    def __init__(self):
        super().__init__(2, MARGIN, RECHECK)
        self.fastest_rule = None  # the fastest step timed on the rule, its first one included

    @staticmethod
    def summary(times):
        """The median step of a way (a step's time is less tied to one moment than an op's)."""
        return sorted(times)[len(times) // 2]

    def next_way(self):
        if self.pick is None:  # the trial: the rule's steps first, then those on BLAS's threads
            self.calls += 1
            return RULE if len(self.times[RULE]) < parallel.TRIALS else BLAS
        return super().next_way()

    def record(self, way, seconds):
        fastest = self.fastest_rule
        if way == RULE:
            self.fastest_rule = seconds if fastest is None else min(fastest, seconds)
        elif fastest is not None and seconds > ABORT * fastest:
            # far slower on BLAS's threads (even a first step): keep the rule, without more such steps
            self.pick = RULE
            return
        super().record(way, seconds)


def applies():
    """Whether eager steps may choose BLAS's threads now (see the module's docstring)."""
    return (parallel._auto and parallel._threads > 1 and not parallel._blas_env and not parallel._blas_chosen
            and not parallel._limited)


def spinning():
    """Whether a step on BLAS's threads ended less than :data:`SPIN` seconds ago (in any thread): timings
    taken now would run beside their spinning threads."""
    return _spun_until > _clock()


def blas_threads_now():
    """Whether this thread's step runs its mid-size GEMMs on BLAS's own threads."""
    return getattr(_local, "way", RULE) == BLAS and applies()


def saw_gemm(m, k, n):
    """:func:`knetpy.parallel.matmul` and its kin call this before each mid-size GEMM: the step's first one
    names the step (its shape holds the batch size) and chooses how the step runs."""
    state = _local.__dict__
    if state.get("current") is not None or not applies():
        return
    loops = state.get("loops")
    if loops is None:
        loops = _local.loops = {}
    loop = loops.get((m, k, n))
    if loop is None:
        if len(loops) >= MAX_LOOPS:
            _local.current = (None, RULE, False)
            return
        loop = loops[(m, k, n)] = _Loop()
    if state.get("start") is None:  # (the first step since the loop began: it cannot be timed)
        _local.current = (loop, RULE, False)
        return
    way = loop.next_way()  # (None: the way chosen, untimed)
    if way is None:
        way, timed = loop.pick, False
    elif way == RULE and loop.pick != BLAS and spinning():
        # (a loop on BLAS's threads times its rule step beside them: it never waits out their spinning)
        way, timed = RULE, False
        loop.turn = RULE  # the next check times the rule
    else:
        timed = True
    _local.current = (loop, way, timed)
    _local.way = way


def step_done():
    """The end of a ``backward()``: the step's time goes to the way it ran; the next step starts."""
    global _spun_until
    state = _local.__dict__
    now = _clock()
    current = state.get("current")
    if current is not None:
        loop, way, timed = current
        if timed and state.get("start") is not None:
            loop.record(way, now - state["start"])
        if way == BLAS:
            _spun_until = now + SPIN
        _local.current = None
        _local.way = RULE
    _local.start = now


def choices():
    """``{(m, k, n) of a step's first mid-size GEMM: way chosen or None}`` for this thread's loops (0: the rule,
    1: BLAS's threads)."""
    return {key: loop.pick for key, loop in getattr(_local, "loops", {}).items()}


def reset():
    """Forget this thread's timings and choices, and any step on BLAS's threads."""
    global _spun_until
    _local.__dict__.clear()
    _spun_until = 0.0
