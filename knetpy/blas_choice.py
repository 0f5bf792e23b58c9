"""BLAS's threads for ``fit``, chosen by timing the model's own GEMMs (models whose GEMMs are mid-size).

knetpy runs BLAS on one thread for a model whose largest GEMM is under a GFLOP
(:data:`knetpy.parallel.BLAS_RULE`): on a busy machine a BLAS thread that is not scheduled stalls the
whole product (a 784-64-10 MLP's fit took 2-6 times longer with BLAS's two threads than with one, once
16.9 s against this module's 1.5 s, while one or two other processes kept the 2 cores busy). On an idle
machine the same GEMMs (100 x 784 x 64, 10 MFLOP) run 1.7 times faster on two threads, and that is most
of what such a model's step costs.

So for a model with a GEMM of at least :data:`knetpy.parallel.BLAS_SPLIT_FLOPS` (below that OpenBLAS
runs one thread anyway) and none of a GFLOP, ``fit`` times its dense layers' products (forward, weight
gradient, input gradient, with the batch's shape) on one BLAS thread and on BLAS's own count at the
start of every epoch, interleaved, and runs the epoch on the faster: BLAS's threads only when they are
at least :data:`MARGIN` faster, since one thread is the safe choice. Within the epoch a watchdog goes
back to one thread when steps become :data:`SLOWDOWN` times slower than the epoch's first ones for
:data:`PATIENCE` steps in a row (the machine got busy).

Rounding: BLAS may sum a product in another order with several threads than with one, so two fits
whose choices differ (one on an idle machine, one on a busy one) differ at float rounding; fits that
choose alike give the same bits. A fixed thread count turns the choice off:
``kp.set_num_threads(n)``, ``KNETPY_NUM_THREADS``, or ``OPENBLAS_NUM_THREADS`` (and its kin).
"""

from __future__ import annotations

import threading
import time

import numpy as np

from . import parallel

MARGIN = 0.85  # BLAS's threads are chosen when they take at most 85% of one thread's time
SLOWDOWN = 3.0  # the watchdog's limit on a step, as a multiple of the epoch's first steps (median)
PATIENCE = 4  # steps in a row over the limit before the watchdog acts
REPEATS = 7  # timings per setting (interleaved; medians compared)
BASELINE_STEPS = 8  # steps whose median the watchdog compares with (after the epoch's first)
_count_lock = threading.Lock()  # fits in several threads count themselves in parallel._blas_chosen


def dense_products(model, x):
    """The ``(m, k, n)`` shapes of the GEMMs a training step of ``model``'s 2-D weights runs on a batch
    like ``x`` (forward, weight gradient, input gradient), each of at least BLAS_SPLIT_FLOPS. The dense
    layer that reads the data itself (a Sequential's first layer) has no input gradient: its products
    are the forward pass and the weight gradient only."""
    batch = x.shape[0]
    reads_data = _first_dense_weight(model)
    shapes = []
    for w in model.parameters():
        if len(w.shape) != 2:
            continue
        k, n = (int(s) for s in w.shape)
        products = ((batch, k, n), (k, batch, n)) if w is reads_data else ((batch, k, n), (k, batch, n), (batch, n, k))
        for shape in products:
            if 2 * shape[0] * shape[1] * shape[2] >= parallel.BLAS_SPLIT_FLOPS:
                shapes.append(shape)
    return shapes


def _first_dense_weight(model):
    """The weight of the Dense layer that takes a Sequential's input, or None (another first layer, or
    another kind of model, whose products are all counted)."""
    from .layers.core import Dense
    from .model import Sequential

    if not isinstance(model, Sequential) or not model._layers or not isinstance(model._layers[0], Dense):
        return None
    return model._layers[0].params.get("w")


def decide(one, many, threads):
    """The thread count for medians ``one`` (seconds on one thread) and ``many`` (on ``threads``)."""
    return threads if many <= MARGIN * one else 1


class BlasChoice:
    """BLAS's thread count for a fit, chosen per epoch by timing (see the module's docstring).

    Use :meth:`for_model` (None where it does not apply), then ``with choice:`` around the fit,
    :meth:`epoch_begin` before each epoch's first step and :meth:`step` after each step.
    """

    def __init__(self, controllers, threads, shapes, dtype):
        self.controllers = controllers  # threadpoolctl's controllers of the loaded BLAS libraries
        self._before = [(c, c.get_num_threads()) for c in controllers]  # each one's count, put back at the end
        self.threads = threads  # the count timed against one thread (the largest of them)
        self.current = threads
        self.choices = []  # the count chosen at each epoch's start
        self.dropped = 0  # epochs the watchdog sent back to one thread
        g = np.random.default_rng(0)
        self._operands = []
        for m, k, n in shapes:
            a = g.standard_normal((m, k)).astype(dtype)
            b = g.standard_normal((k, n)).astype(dtype)
            self._operands.append((a, b, np.empty((m, n), dtype)))
        self._last = None
        self._steps = []
        self._limit = None
        self._slow = 0

    @classmethod
    def for_model(cls, model, x):
        """A choice for training ``model`` (built) on batches like ``x``, or None: knetpy's threads
        fixed, BLAS's threads set in the environment or limited by the caller, one core, no
        threadpoolctl, a batch not on the host, or no mid-size dense GEMM."""
        if (not parallel.is_auto() or parallel._blas_env or parallel._limited or parallel.cores() < 2
                or type(x) is not np.ndarray or x.ndim < 1):
            return None
        largest = parallel.largest_gemm_flops(model, x)
        if not parallel.BLAS_SPLIT_FLOPS <= largest < parallel.BLAS_MIN_FLOPS:
            return None
        shapes = dense_products(model, x)
        if not shapes:
            return None
        controllers = parallel.blas_controllers()
        counts = [c.get_num_threads() or 1 for c in controllers]
        if not counts or max(counts) < 2:
            return None
        dtype = next((w.value.dtype for w in model.parameters() if len(w.shape) == 2), np.dtype(np.float32))
        if dtype.kind != "f":
            return None
        return cls(controllers, max(counts), shapes, dtype)

    def __enter__(self):
        with _count_lock:
            parallel._blas_chosen += 1
        return self

    def __exit__(self, *exc):
        with _count_lock:
            parallel._blas_chosen -= 1
        for c, count in self._before:
            c.set_num_threads(count)
        self.current = self.threads
        return False

    def _set(self, n):
        for c in self.controllers:
            c.set_num_threads(n)
        self.current = n

    def _time_products(self, n):
        self._set(n)
        # one product untimed: a thread count just raised wakes BLAS's idle threads, which a step's
        # products back to back do not pay
        a, b, out = self._operands[0]
        np.matmul(a, b, out=out)
        tick = time.perf_counter()
        for a, b, out in self._operands:
            np.matmul(a, b, out=out)
        return time.perf_counter() - tick

    def measure(self):
        """(median seconds on one thread, median on BLAS's count) for the model's products, interleaved
        so that a slow spell of the machine hits both alike; the first round warms both up."""
        one, many = [], []
        for i in range(REPEATS + 1):
            t1 = self._time_products(1)
            tn = self._time_products(self.threads)
            if i:
                one.append(t1)
                many.append(tn)
        return float(np.median(one)), float(np.median(many))

    def epoch_begin(self):
        """Time both settings and run the epoch on the faster."""
        n = decide(*self.measure(), self.threads)
        self._set(n)
        self.choices.append(n)
        self._last = None
        self._steps = []
        self._limit = None
        self._slow = 0

    def step(self, now=None):
        """After each step: the watchdog (only while BLAS's threads are chosen)."""
        now = time.perf_counter() if now is None else now
        last, self._last = self._last, now
        if last is None or self.current == 1:
            return
        took = now - last
        if self._limit is None:
            self._steps.append(took)
            if len(self._steps) == BASELINE_STEPS:
                self._limit = SLOWDOWN * float(np.median(self._steps))
            return
        self._slow = self._slow + 1 if took > self._limit else 0
        if self._slow >= PATIENCE:
            self._set(1)
            self.dropped += 1
