"""knetpy's own threads: large ops split along their leading axis and run side by side.

NumPy runs elementwise loops, copies and reductions on one core, and releases the GIL while it
does, so Python threads can run them in parallel. With threads on (``kp.set_num_threads(n)``,
n > 1), the ops whose non-GEMM work dominates small CNNs and LSTMs (im2col and col2im, pooling,
bias and activation, the recurrent gate math) and the GEMMs between them are cut into ``n`` parts
along the batch (or the rows of a GEMM) and run on ``n`` threads: the caller's and n - 1 workers.

Two thread pools on the same cores fight (an idle OpenBLAS thread keeps spinning for a while after
each call, taking the core a knetpy thread wants), so while knetpy's threads are on, BLAS runs one
thread (threadpoolctl sets it, and ``set_num_threads(1)`` puts the old count back). The large
GEMMs of knetpy's ops go through :func:`matmul` here, so they are split instead.

Each part runs the same code as the whole op on its rows, so results equal the one-thread results
up to floating-point rounding (a GEMM split along its inner dimension adds partial sums, and BLAS
may order a sum differently with one thread than with several).

By default the threads are automatic (:data:`AUTO_RULE`): an op large enough to pay for the
hand-off may split over the cores, and BLAS runs one thread only while its parts run (then gets its
count back); a lone GEMM of a GFLOP or more still uses BLAS's own threads, and small ops run as
plain NumPy. Whether a large op splits is timed per op site and size (:func:`by_timing`): its ways
run in turns on the first calls and the faster is kept, because on some machines ops of a few
milliseconds run slower split than whole. ``Model.fit`` also runs BLAS on one thread for models
whose GEMMs are small.
``set_num_threads(n)`` (or ``KNETPY_NUM_THREADS=n`` at import) fixes the count instead;
``set_num_threads("auto")`` or ``set_num_threads(None)`` goes back to automatic.

With knetpy's threads off, :func:`auto_blas_threads` runs a block with one BLAS thread when the
model's GEMMs are too small for BLAS's threads to pay (:data:`BLAS_RULE`).
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time

import numpy as np

_local = threading.local()  # .inside: this thread is running a part (nested splits run serially)
_threads = 1
_auto = False  # threads chosen per op by the work size (AUTO_RULE); set at the end of this module
_auto_why = ""  # why automatic threads chose _threads, for `knetpy info`
_workers = None
_config = threading.Lock()  # serialises set_num_threads (the pool and the saved BLAS counts)
_blas = None  # [(threadpoolctl BLAS controller, its thread count before)], while threads are on

# Handing a part to a worker thread costs about 20-50 us, so only ops with at least a few hundred
# microseconds of work are split: 256K elements (1 MB of float32), 32 MFLOP.
MIN_ELEMENTS = 1 << 18
MIN_FLOPS = 1 << 25

# Timed choices of the automatic threads (see by_timing)
TIMED = True  # False: automatic threads split by size alone (every op the size rule lets split does)
TRIALS = 3  # timings per way (after one untimed call of each), the fastest of each compared (_Site.summary)
RECHECK = 64  # every RECHECK-th call of a decided site is a timed call of the next way in turn
SPLIT_MARGIN = 0.9  # a way other than the first (whole, on one core) must take at most 90% of its time
MAX_SITES = 4096  # beyond this many (site, shape) keys, new ones split by size alone
AFTER = 1.0  # a timed call is charged the time until the next timed op, up to AFTER times its own more


class _Workers:
    """n daemon threads, each taking (fn, lo, hi, done) tasks from its own queue.

    One split op at a time holds the pool (:meth:`claim` / :meth:`release`). Resizing retires a
    pool with :meth:`close` without waiting: a pool still held stops its threads only when the op
    holding it releases it, so an op never waits on threads that were told to quit before its parts.
    """

    def __init__(self, n):
        self.tasks = [queue.SimpleQueue() for _ in range(n)]
        self._lock = threading.Lock()
        self._held = self._closed = self._stopped = False
        self.threads = [threading.Thread(target=self._loop, args=(q,), daemon=True, name=f"knetpy-worker-{i}")
                        for i, q in enumerate(self.tasks)]
        for t in self.threads:
            t.start()

    @staticmethod
    def _loop(tasks):
        _local.inside = True
        while True:
            task = tasks.get()
            if task is None:
                return
            fn, lo, hi, done = task
            try:
                fn(lo, hi)
            except BaseException as e:  # handed to the caller, which re-raises it
                done.put(e)
            else:
                done.put(None)

    def claim(self):
        """Hold the pool for one op: False when another op holds it or it was retired."""
        with self._lock:
            if self._held or self._closed:
                return False
            self._held = True
            return True

    def release(self):
        with self._lock:
            self._held = False
            stop = self._closed
        if stop:
            self._stop()

    def close(self):
        """Retire the pool: its threads quit now, or when the op holding it releases it."""
        with self._lock:
            self._closed = True
            stop = not self._held
        if stop:
            self._stop()

    def _stop(self):
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        for q in self.tasks:
            q.put(None)


def _blas_controllers():
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        raise ImportError(
            "kp.set_num_threads(n > 1) needs threadpoolctl, to keep BLAS from competing with knetpy's "
            "threads: pip install 'knetpy[fast]' (or threadpoolctl)"
        ) from None
    return ThreadpoolController().select(user_api="blas").lib_controllers


def _auto_count():
    """(threads, why) for automatic threads: the cores, when BLAS can be held at one thread meanwhile."""
    import importlib.util

    n = cores()
    if n < 2:
        return 1, "one core here, so nothing is split"
    if importlib.util.find_spec("threadpoolctl") is None:
        return 1, ("off: threadpoolctl is not installed, so knetpy cannot keep BLAS's threads from competing "
                   "with its own (pip install 'knetpy[fast]')")
    return n, f"{n} cores here"


def set_num_threads(n):
    """Use ``n`` threads inside knetpy's large ops (1: no splitting, BLAS as it was before);
    ``"auto"`` or None: choose by each op's size (the default, :data:`AUTO_RULE`).

    Like ``torch.set_num_threads``: usually the number of cores. With n > 1 BLAS is set to one
    thread (knetpy's threads each run their own GEMMs) until ``set_num_threads(1)`` (or "auto")
    gives it its thread count back. Needs threadpoolctl for n > 1.
    """
    global _threads, _workers, _blas, _auto, _auto_why
    auto = n is None or (isinstance(n, str) and n.strip().lower() == "auto")
    if not auto and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
        raise ValueError(f"set_num_threads: n must be a positive int, 'auto' or None, got {n!r}")
    n, why = _auto_count() if auto else (int(n), "")
    # Never waits for running ops (so it may be called from inside one): an op keeps the pool it
    # claimed, and the old pool's threads quit once that op is done with it.
    with _config:
        if n > 1 and not auto:
            controllers = _blas_controllers()
            if _blas is None:
                _blas = [(c, c.num_threads) for c in controllers]
            for c in controllers:
                c.set_num_threads(1)
        elif _blas is not None:
            _put_back(_blas)
            _blas = None
        # automatic threads start their workers at the first op that splits (see run)
        old, _workers = _workers, (_Workers(n - 1) if n > 1 and not auto else None)
        _threads, _auto, _auto_why = n, auto, why
        _sites.clear()  # timed choices start again
        if old is not None:
            old.close()


def get_num_threads():
    """The number of threads knetpy's ops split their work over (1: off); with automatic threads,
    the most a large op uses (small ops are never split)."""
    return _threads


def is_auto():
    """True while knetpy chooses its threads by each op's size (the default; see :data:`AUTO_RULE`)."""
    return _auto


AUTO_RULE = (f"ops of at least {MIN_ELEMENTS >> 10}K elements or {MIN_FLOPS >> 20} MFLOP (im2col/col2im, "
             "pooling, bias and activation, the recurrent kernels, GEMMs) are split over the cores, with BLAS "
             "on one thread while their parts run; smaller ops run as NumPy does, a smaller GEMM over 0.5 MFLOP "
             "with BLAS held at one thread, and GEMMs of 1 GFLOP or more with BLAS's own threads; fit runs BLAS "
             "on one thread when the model's largest GEMM is under 1 GFLOP; each op site that could split "
             "times its ways on its first calls (whole on one core with BLAS at one thread, split) and keeps the "
             f"faster, timing one of them again every {RECHECK}th call")


def threads_setting():
    """``(threads, reason)``: knetpy's threads now and what chose them, for ``knetpy info``."""
    if _auto:
        why = f"automatic, {_auto_why}: {AUTO_RULE}"
        counts = timed_choices()
        if counts:
            names = {0: "whole", 1: "split", None: "still being timed"}
            why += "; op sites so far: " + ", ".join(f"{counts[k]} {names[k]}" for k in (0, 1, None) if k in counts)
        return _threads, why
    source = "KNETPY_NUM_THREADS" if os.environ.get("KNETPY_NUM_THREADS") else "kp.set_num_threads"
    state = "on" if _threads > 1 else "off"
    return _threads, f"{state}, set by {source}, {cores()} cores here; kp.set_num_threads('auto') lets knetpy choose"


def _after_fork_in_child():
    # Worker threads do not survive fork(): the child starts its own pool (and a lock nobody holds).
    global _workers, _config
    _config = threading.Lock()
    if _workers is not None:
        _workers = None if _auto else _Workers(_threads - 1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def cores():
    """The number of cores this process may run on (``taskset`` and container limits respected)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def ranges(n, work=None, minimum=None):
    """``n`` rows cut into one (lo, hi) range per thread, or None when the op should not split.

    ``work`` is the op's size (elements, or FLOPs with ``minimum=MIN_FLOPS``); small ops, ops
    already inside a part, and runs with threads off get None.
    """
    k = _threads
    if k < 2 or n < 2 or getattr(_local, "inside", False):
        return None
    if work is not None and work < (MIN_ELEMENTS if minimum is None else minimum):
        return None
    return _cut(n, k)


def _cut(n, k):
    k = min(k, n)
    cuts = [n * i // k for i in range(k + 1)]
    return list(zip(cuts[:-1], cuts[1:]))


def run(fn, parts):
    """Call ``fn(lo, hi)`` for every range in ``parts``, in parallel.

    The first range runs on the calling thread. An exception in any part is raised here (the
    first one, with its own type and traceback), after every part has finished. Safe to call from
    several threads at once: while one of them holds the workers, the others run their parts one
    after the other themselves; and safe while ``set_num_threads`` resizes the pool.
    """
    workers = _workers
    if workers is None and _auto and _threads > 1 and not getattr(_local, "inside", False):
        workers = _auto_workers()
    if (workers is None or len(parts) > len(workers.tasks) + 1 or getattr(_local, "inside", False)
            or not workers.claim()):
        # threads off meanwhile, a nested split, or another thread is using the workers: run here
        for lo, hi in parts:
            fn(lo, hi)
        return
    # Each op has its own done queue, so a part of an op abandoned half-way (an interrupt while
    # waiting) can never be counted as a part of the next one.
    done = queue.SimpleQueue()
    _local.inside = True
    error = None
    sent = 0
    held = ()
    try:
        if _auto:
            held = _hold_blas()
        for q, (lo, hi) in zip(workers.tasks, parts[1:]):
            q.put((fn, lo, hi, done))
            sent += 1
        try:
            fn(*parts[0])
        except BaseException as e:
            error = e
        for _ in range(sent):
            e = done.get()
            if error is None and e is not None:
                error = e
    finally:
        _local.inside = False
        _put_back(held)
        workers.release()
    if error is not None:
        try:
            raise error
        finally:
            error = None  # no reference cycle through this frame's traceback


def _auto_workers():
    """The pool of automatic threads, started on first use (so importing knetpy starts no thread)."""
    global _workers
    with _config:
        if _workers is None and _auto and _threads > 1:
            _workers = _Workers(_threads - 1)
        return _workers


_auto_blas = None  # NumPy's BLAS controllers (threadpoolctl), found once: finding them takes ~1 ms


def blas_controllers():
    """threadpoolctl's controllers of the loaded BLAS libraries, found once ([] without threadpoolctl)."""
    global _auto_blas
    if _auto_blas is None:
        try:
            _auto_blas = _blas_controllers()
        except ImportError:
            _auto_blas = []
    return _auto_blas


def _hold_blas():
    """Set BLAS to one thread while an automatic split runs: [(controller, count to put back)].

    Two multi-threaded GEMMs at once would oversubscribe the cores (OpenBLAS even serialises them).
    Only counts above one are saved, so two holds that overlap (in two threads) never leave BLAS at one.
    """
    held = []
    for c in blas_controllers():
        count = c.get_num_threads()
        if count and count > 1:
            c.set_num_threads(1)
            held.append((c, count))
    return held


def _put_back(held):
    """Give BLAS back the counts :func:`_hold_blas` saved."""
    for c, count in held:
        c.set_num_threads(count)


@contextlib.contextmanager
def _blas_on_one_thread():
    """The block with BLAS held at one thread (:func:`_hold_blas`), its counts put back after."""
    held = _hold_blas()
    try:
        yield
    finally:
        _put_back(held)


def _blas_is_ours():
    """Whether knetpy may set BLAS's threads for an op now: automatic threads, BLAS's count not chosen by
    the environment or by a fit (knetpy.blas_choice), and not inside a split (which holds it already)."""
    return _auto and not _blas_env and not _blas_chosen and not getattr(_local, "inside", False)


# -- timed choices -------------------------------------------------------------------------------------
# Whether a split pays depends on the machine as much as on the op's size: on some 2-vCPU machines a
# LeNet training step (ops of a few milliseconds) took 8-26% longer with its large ops split than with
# none, where ResNet-20's step, whose ops are 10-50 times larger, ran 1.3-1.65 times faster; on others
# neither gained. So with automatic threads each op site that the size rule would split times its ways
# (whole on one core, split) in turns on its first calls, and keeps the fastest; every RECHECK-th call
# runs the next way in turn, so that the choice follows the machine.
_sites = {}  # key -> _Site
_clock = time.perf_counter


class _Site:
    """The timings and the choice of one op site at one size (an eager loop's steps too, knetpy.blas_steps:
    ``margin`` and ``recheck`` in place of SPLIT_MARGIN and RECHECK)."""

    __slots__ = ("times", "warm", "pick", "calls", "turn", "margin", "recheck")

    def __init__(self, ways, margin=None, recheck=None):
        self.times = [[] for _ in range(ways)]  # each way's last TRIALS timings
        self.warm = [False] * ways  # whether the way has run once (its first call is not timed)
        self.pick = None  # the chosen way, once every way has TRIALS timings
        self.calls = 0
        self.turn = 0  # the way the next timed call runs
        self.margin = margin
        self.recheck = recheck

    def next_way(self):
        """The way a timed call runs now, or None: run :attr:`pick`, untimed."""
        self.calls += 1
        if self.pick is not None and self.calls % (self.recheck or RECHECK):
            return None
        way = self.turn
        self.turn = (way + 1) % len(self.times)
        return way

    def record(self, way, seconds):
        if not self.warm[way]:
            self.warm[way] = True
            return
        times = self.times[way]
        times.append(seconds)
        del times[:-TRIALS]
        if all(len(t) == TRIALS for t in self.times):
            figures = [self.summary(t) for t in self.times]
            best = min(range(len(figures)), key=figures.__getitem__)
            margin = SPLIT_MARGIN if self.margin is None else self.margin
            self.pick = best if figures[best] <= margin * figures[0] else 0

    @staticmethod
    def summary(times):
        """A way's figure from its last TRIALS timings: the fastest. Whatever else the machine does can
        only make a timing longer, and a split more than a whole op: after the process sat idle (the
        LeNet benchmark's turns pause 0.15 s every 20 steps) the first four steps took 10.5-12.5 ms split
        against 7.6-8.5 later (2-core AMD EPYC), as slow as whole, and the rechecks that fell there, with
        medians, left every site of LeNet on one core (11.4 ms a step, against 8.4 split)."""
        return min(times)


def by_timing(key, ways, default):
    """Call one of ``ways`` (functions of no arguments that compute the same result; ``ways[0]`` runs
    the op whole on one core) and return its result: the one timed fastest for ``key`` (an op site and
    its sizes; see :data:`TIMED`), or ``ways[default]`` with the timed choices off.

    A timed call counts from its start to the start of the next call of ``by_timing`` on this thread
    (at most AFTER times its own time more): what a split costs the ops after it (BLAS's threads woken
    again, data left in the other core's cache) is charged to it. Timed alone, each of a LeNet step's
    split ops ran faster than whole while the step with them split ran slower.
    """
    if not TIMED:
        return ways[default]()
    if _steps_module is not None and (_steps_module.blas_threads_now() or _steps_module.spinning()):
        # a step on BLAS's threads (knetpy.blas_steps), or just after one: their spinning would skew the timings
        _local.timed = None
        site = _sites.get(key)
        return ways[default if site is None or site.pick is None else site.pick]()
    now = _clock()
    last = getattr(_local, "timed", None)
    if last is not None:
        _local.timed = None
        site, way, tick, took = last
        site.record(way, min(now - tick, (1 + AFTER) * took))
    site = _sites.get(key)
    if site is None:
        if len(_sites) >= MAX_SITES:
            return ways[default]()
        site = _sites.setdefault(key, _Site(len(ways)))
    way = site.next_way()
    if way is None:
        return ways[site.pick]()
    result = ways[way]()
    _local.timed = (site, way, now, _clock() - now)  # closed by the next timed op (a raise: not counted)
    return result


def timed_choices():
    """``{way: number of sites}`` over the op sites decided so far (0: whole, 1: split), and the
    number still being timed under the key None."""
    counts = {}
    for site in list(_sites.values()):
        counts[site.pick] = counts.get(site.pick, 0) + 1
    return counts


def for_rows(fn, n, work=None, xp=np, minimum=None, whole=None):
    """``fn(lo, hi)`` over ``n`` rows: split when worth it, else one call ``fn(0, n)``.

    ``xp`` is the op's array namespace: only NumPy work is split (a GPU has parallelism of its own).
    ``work`` and ``minimum`` are :func:`ranges`'s. With automatic threads, whether a large op splits
    is timed per op site and size (:func:`by_timing`); ``whole()``, when given, is how the op runs
    on one core then (the algorithm of knetpy's threads off), instead of ``fn(0, n)``; either runs with
    BLAS at one thread (:func:`on_one_core`).
    """
    parts = ranges(n, work, minimum) if xp is np else None
    if parts is None:
        fn(0, n)
        return
    code = getattr(fn, "__code__", None)
    if not _auto or code is None:
        run(fn, parts)
        return
    by_timing((code, n, work, len(parts)), (lambda: on_one_core(whole or (lambda: fn(0, n))), lambda: run(fn, parts)),
              default=1)


def on_one_core(fn):
    """``fn()`` with BLAS held at one thread, as the whole way of an op timed against its split runs.

    Not only so that the whole way is what it says: an OpenBLAS thread that has run part of a product
    keeps spinning for about 0.1 s after it (2-core AMD EPYC), and a knetpy worker then shares its core
    with it. With the GEMMs inside LeNet's convolutions left to BLAS's two threads, every split op of the
    step ran beside such a thread, and each timed slower than whole (Winograd's backward pass: 4.4 ms
    split against 4.1 whole, and 3.2 split with no BLAS thread spinning). BLAS as it is where the user or
    a fit chose its threads (:func:`_blas_is_ours`).
    """
    if not _blas_is_ours():
        return fn()
    with _blas_on_one_thread():
        return fn()


def matmul(a, b, out=None):
    """``a @ b`` for 2-D NumPy arrays, split over the rows of ``a`` or the columns of ``b`` (anything
    else, tensors included, and any product with threads off: plain ``a @ b``).

    The larger of the two output dimensions is split; when both are small (a weight gradient
    summed over a long batch) the inner dimension is, and the partial products are added.
    """
    threads = _threads  # read once: another thread may change it while this product runs
    if type(a) is not np.ndarray or type(b) is not np.ndarray or a.ndim != 2 or b.ndim != 2:
        return a @ b if out is None else np.matmul(a, b, out=out)
    m, k = a.shape
    n = b.shape[1]
    dtype = np.result_type(a, b)
    if out is None and k == b.shape[0] and dtype.kind in "fc" and m * n * dtype.itemsize >= _recycle().MIN_BYTES:
        # from the buffer pool: a weight gradient made every step, freed at the next zero_grad, would
        # otherwise move the top of the heap, which malloc gives back to the system and takes again
        # (page faults: LeNet's 1.6 MB dense gradient, about 800 a step)
        out = _recycle().empty(np, (m, n), dtype)
    if threads < 2:
        return a @ b if out is None else np.matmul(a, b, out=out)
    if _auto and BLAS_SPLIT_FLOPS <= 2 * m * n * k < BLAS_MIN_FLOPS:
        # an eager loop's steps may run their mid-size GEMMs on BLAS's own threads (knetpy.blas_steps)
        steps = _blas_steps()
        steps.saw_gemm(m, k, n)
        if steps.blas_threads_now():
            return a @ b if out is None else np.matmul(a, b, out=out)
    # automatic threads leave a GEMM of a GFLOP or more to BLAS's own threads, which split it as well
    if (ranges(2, 2 * m * n * k, MIN_FLOPS) is None or (max(m, n) < 32 * threads and k < 32 * threads)
            or (_auto and 2 * m * n * k >= BLAS_MIN_FLOPS)):
        return _whole_matmul(a, b, out)
    if _auto:
        # (not BLAS's own threads as a third way: they keep spinning after the product, and take the
        # cores from the split ops that follow, which this product's timing would not see)
        ways = (lambda: _whole_matmul(a, b, out), lambda: _split_matmul(a, b, out, threads))
        return by_timing(("matmul", m, k, n, a.dtype, b.dtype, out is None, threads), ways, default=1)
    return _split_matmul(a, b, out, threads)


def _recycle():
    from .ops import recycle  # (knetpy.ops imports this module)

    return recycle


_steps_module = None


def _blas_steps():
    global _steps_module
    if _steps_module is None:  # (once: it imports this module; an import statement costs a microsecond a call)
        from . import blas_steps

        _steps_module = blas_steps
    return _steps_module


def _whole_matmul(a, b, out):
    """``a @ b`` unsplit, with BLAS held at one thread where :func:`one_blas_thread` says so."""
    m, k = a.shape
    if one_blas_thread(2 * m * k * b.shape[1]):
        return matmul_one_blas_thread(a, b, out)
    return a @ b if out is None else np.matmul(a, b, out=out)


def _split_matmul(a, b, out, threads):
    """``a @ b`` split over ``threads`` threads (see :func:`matmul`)."""
    m, k = a.shape
    n = b.shape[1]
    if out is None:
        out = np.empty((m, n), dtype=np.result_type(a, b))
    if max(m, n) >= 32 * threads:
        parts = _cut(max(m, n), threads)
        if m >= n:
            run(lambda lo, hi: np.matmul(a[lo:hi], b, out=out[lo:hi]), parts)
        else:
            run(lambda lo, hi: np.matmul(a, b[:, lo:hi], out=out[:, lo:hi]), parts)
        return out
    parts = _cut(k, threads)
    partial = np.empty((len(parts), m, n), dtype=out.dtype)
    index = {lo: i for i, (lo, _) in enumerate(parts)}

    def block(lo, hi):
        np.matmul(a[:, lo:hi], b[lo:hi], out=partial[index[lo]])

    run(block, parts)
    np.sum(partial, axis=0, out=out)
    return out


def elementwise(fn, *args):
    """``fn(*args, out=...)`` (a ufunc, or a function with that signature) split over the leading
    axis of its result when large; args are NumPy arrays and scalars, broadcast as usual.

    The result takes the memory layout of the largest argument (channels-last stays so).
    """
    if _threads < 2:
        return fn(*args)
    full = None
    for a in args:
        if type(a) is np.ndarray and (full is None or a.size > full.size):
            full = a
    if full is None or full.ndim == 0:
        return fn(*args)
    parts = ranges(full.shape[0], full.size)
    if parts is None:
        return fn(*args)
    try:
        if np.broadcast_shapes(*(np.shape(a) for a in args)) != full.shape:
            return fn(*args)
    except ValueError:
        return fn(*args)  # raises NumPy's broadcast error for the caller to word
    cut = [type(a) is np.ndarray and a.ndim == full.ndim and a.shape[0] == full.shape[0] for a in args]

    def split(whole=False):
        out = np.empty_like(full, dtype=np.result_type(*args))
        if whole:
            fn(*args, out=out)
            return out

        def part(lo, hi):
            fn(*(a[lo:hi] if c else a for a, c in zip(args, cut)), out=out[lo:hi])

        run(part, parts)
        return out

    if not _auto:
        return split()
    key = (fn, tuple((np.shape(a), np.result_type(a)) for a in args), len(parts))
    return by_timing(key, (lambda: split(whole=True), split), default=1)


# -- BLAS threads for small models ---------------------------------------------------------------------
# OpenBLAS wakes its threads for any GEMM above about 0.5 MFLOP, and idle ones keep spinning after each
# call. A GEMM under about 4 ms of one core's work (1 GFLOP) gains little from a second thread, and on
# a busy machine a BLAS thread that is not scheduled stalls the whole product: the quickstart took
# 5-20 s with the default threads under load and 2-5 s with one.
BLAS_MIN_FLOPS = 10**9
BLAS_ENVIRONMENT = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")
BLAS_RULE = (f"one thread for models whose largest GEMM is under {BLAS_MIN_FLOPS / 1e9:g} GFLOP, else BLAS's "
             "own count; fit times one thread against BLAS's count at each epoch for models with dense products "
             "of 0.5 MFLOP or more (knetpy.blas_choice), and an eager loop times its steps both ways (knetpy.blas_steps); "
             "knetpy's threads (which set BLAS to one) and "
             "OPENBLAS_NUM_THREADS/OMP_NUM_THREADS take precedence")


# A lone GEMM that OpenBLAS would spread over its threads (over about 0.5 MFLOP: m * n * k > 4 * 65536)
# but under BLAS_MIN_FLOPS runs on one BLAS thread while threads are automatic: the same rule as fit's,
# per product, so that a kp.grad loop at the defaults is not stalled on a busy machine either.
BLAS_SPLIT_FLOPS = 2 * 4 * 65536
_blas_env = any(os.environ.get(k) for k in BLAS_ENVIRONMENT)  # the user chose BLAS's threads


_blas_chosen = 0  # fits running now whose BLAS threads are chosen by timing (knetpy.blas_choice)


def one_blas_thread(flops):
    """Whether :func:`matmul` runs a plain GEMM of ``flops`` with one BLAS thread."""
    return BLAS_SPLIT_FLOPS <= flops < BLAS_MIN_FLOPS and _blas_is_ours()


def matmul_one_blas_thread(a, b, out=None):
    """``a @ b`` with BLAS held at one thread (its count is put back after); as it is while a fit
    chooses BLAS's threads by timing, or an eager loop's step runs on them (:mod:`knetpy.blas_steps`)
    (a compiled step records this call once and replays it)."""
    if _blas_chosen:
        return a @ b if out is None else np.matmul(a, b, out=out)
    steps = _blas_steps()
    steps.saw_gemm(a.shape[0], a.shape[1], b.shape[1])
    if steps.blas_threads_now():
        return a @ b if out is None else np.matmul(a, b, out=out)
    with _blas_on_one_thread():
        return a @ b if out is None else np.matmul(a, b, out=out)


def blas_threads_for(flops):
    """The BLAS threads for work whose largest GEMM takes ``flops``: 1 when small, None (leave BLAS
    as it is) when large enough for BLAS's threads to pay."""
    return 1 if flops < BLAS_MIN_FLOPS else None


def largest_gemm_flops(model, x):
    """A rough estimate of the FLOPs of the largest GEMM a training step of ``model`` on the batch ``x``
    runs: 2 * batch * weight size for matrices (per time step in recurrent layers), times the input's
    positions (H * W, an upper bound) for convolution kernels. ``model`` must be built."""
    batch = x.shape[0] if np.ndim(x) else 1
    positions = int(np.prod(np.shape(x)[2:])) if np.ndim(x) > 2 else 1
    largest = 0
    for w in model.parameters():
        size = int(np.prod(w.shape))
        if len(w.shape) == 2:
            largest = max(largest, 2 * batch * size)
        elif len(w.shape) > 2:
            largest = max(largest, 2 * batch * size * positions)
    return largest


def blas_setting():
    """``(threads, reason)``: the BLAS threads in effect now (None when threadpoolctl is missing) and why."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None, "unknown: threadpoolctl is not installed, so knetpy leaves BLAS as it is"
    libs = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    # NumPy's BLAS is the one knetpy runs (SciPy may have loaded a second)
    counts = sorted({i["num_threads"] for i in libs if "numpy" in str(i.get("filepath"))}
                    or {i["num_threads"] for i in libs})
    threads = max(counts) if counts else None
    env = [f"{k}={os.environ[k]}" for k in BLAS_ENVIRONMENT if os.environ.get(k)]
    if _threads > 1 and not _auto:
        reason = f"knetpy's {_threads} threads are on, so BLAS runs one"
    elif _blas_chosen:
        reason = "chosen by a fit running now, from timings of its model's GEMMs (knetpy.blas_choice)"
    elif _limited:
        reason = "one thread for a small model, by the rule below"
    elif env:
        reason = "set in the environment: " + ", ".join(env)
    else:
        reason = "BLAS's own setting, by default one per core"
    return threads, reason


_limited = 0  # blocks of blas_threads(...) that limit BLAS now


@contextlib.contextmanager
def blas_threads(n):
    """Run the block with BLAS limited to ``n`` threads (None: as it is); yields ``n`` when applied,
    else None.

    Nothing changes while knetpy's threads are set on (BLAS is at one thread then), when the environment
    sets BLAS's threads (the user chose), or without threadpoolctl (an optional dependency).
    """
    global _limited
    if n is None or (_threads > 1 and not _auto) or any(os.environ.get(k) for k in BLAS_ENVIRONMENT):
        yield None
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield None
        return
    with threadpool_limits(limits=int(n), user_api="blas"):
        _limited += 1
        try:
            yield int(n)
        finally:
            _limited -= 1


def auto_blas_threads(flops):
    """``blas_threads(blas_threads_for(flops))``: one BLAS thread for the block when its largest GEMM
    is small (see :data:`BLAS_RULE`)."""
    return blas_threads(blas_threads_for(flops))


@contextlib.contextmanager
def fit_threads(model, x, choose=True):
    """BLAS threads for training ``model`` on batches like ``x`` (``Model.fit``): with automatic
    threads, one BLAS thread when its largest GEMM is small (:data:`BLAS_RULE`), else as it is.

    With ``choose``, a model with mid-size dense GEMMs gets a :class:`knetpy.blas_choice.BlasChoice`
    instead (yielded): fit's loop times one thread against BLAS's own count at each epoch's start.
    """
    if not _auto or x is None or not hasattr(x, "shape"):
        yield None
        return
    if choose:
        from .blas_choice import BlasChoice

        choice = BlasChoice.for_model(model, x)
        if choice is not None:
            with choice:
                yield choice
            return
    with auto_blas_threads(largest_gemm_flops(model, x)) as n:
        yield n


def _from_environment():
    value = os.environ.get("KNETPY_NUM_THREADS", "").strip()
    if not value or value.lower() == "auto":
        set_num_threads("auto")
        return
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"KNETPY_NUM_THREADS must be a positive integer (knetpy's threads), got {value!r}")
    set_num_threads(n)


_from_environment()
