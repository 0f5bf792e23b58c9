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
may order a sum differently with one thread than with several). Threads are off by default;
``set_num_threads``, or the environment variable ``KNETPY_NUM_THREADS`` at import, turns them on.
"""

from __future__ import annotations

import os
import queue
import threading

import numpy as np

_local = threading.local()  # .inside: this thread is running a part (nested splits run serially)
_threads = 1
_workers = None
_busy = threading.Lock()  # held while the workers run a split op's parts
_blas = None  # [(threadpoolctl BLAS controller, its thread count before)], while threads are on

# Handing a part to a worker thread costs about 20-50 us, so only ops with at least a few hundred
# microseconds of work are split: 256K elements (1 MB of float32), 32 MFLOP.
MIN_ELEMENTS = 1 << 18
MIN_FLOPS = 1 << 25


class _Workers:
    """n daemon threads, each taking (fn, lo, hi) tasks from its own queue."""

    def __init__(self, n):
        self.tasks = [queue.SimpleQueue() for _ in range(n)]
        self.done = queue.SimpleQueue()
        self.threads = [threading.Thread(target=self._loop, args=(q,), daemon=True) for q in self.tasks]
        for t in self.threads:
            t.start()

    def _loop(self, tasks):
        _local.inside = True
        while True:
            task = tasks.get()
            if task is None:
                return
            fn, lo, hi = task
            try:
                fn(lo, hi)
                self.done.put(None)
            except BaseException as e:  # handed to the caller, which re-raises it
                self.done.put(e)

    def stop(self):
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


def set_num_threads(n):
    """Use ``n`` threads inside knetpy's large ops (1: no splitting, BLAS as it was before).

    Like ``torch.set_num_threads``: usually the number of cores. With n > 1 BLAS is set to one
    thread (knetpy's threads each run their own GEMMs) until ``set_num_threads(1)`` gives it its
    thread count back. Needs threadpoolctl for n > 1.
    """
    global _threads, _workers, _blas
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"set_num_threads: n must be a positive int, got {n!r}")
    n = int(n)
    if n > 1:
        controllers = _blas_controllers()
        if _blas is None:
            _blas = [(c, c.num_threads) for c in controllers]
        for c in controllers:
            c.set_num_threads(1)
    elif n == 1 and _blas is not None:
        for c, count in _blas:
            c.set_num_threads(count)
        _blas = None
    if _workers is not None:
        _workers.stop()
    _workers = _Workers(n - 1) if n > 1 else None
    _threads = n


def get_num_threads():
    """The number of threads knetpy's ops split their work over (1: off)."""
    return _threads


def _after_fork_in_child():
    # Worker threads do not survive fork(): the child starts its own (and a lock nobody holds).
    global _workers, _busy
    _busy = threading.Lock()
    if _workers is not None:
        _workers = _Workers(_threads - 1)


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
    k = min(k, n)
    cuts = [n * i // k for i in range(k + 1)]
    return list(zip(cuts[:-1], cuts[1:]))


def run(fn, parts):
    """Call ``fn(lo, hi)`` for every range in ``parts``, in parallel.

    The first range runs on the calling thread. Exceptions in any part are raised here, after
    every part has finished. Safe to call from several threads at once: while one of them has
    the workers, the others run their parts one after the other themselves.
    """
    workers = _workers
    if workers is None or len(parts) > len(workers.tasks) + 1 or not _busy.acquire(blocking=False):
        # threads off meanwhile, or another thread of the program is using the workers: run here
        for lo, hi in parts:
            fn(lo, hi)
        return
    _local.inside = True
    error = None
    try:
        for q, (lo, hi) in zip(workers.tasks, parts[1:]):
            q.put((fn, lo, hi))
        try:
            fn(*parts[0])
        except BaseException as e:
            error = e
        for _ in parts[1:]:
            e = workers.done.get()
            if error is None and e is not None:
                error = e
    finally:
        _local.inside = False
        _busy.release()
    if error is not None:
        raise error


def for_rows(fn, n, work=None, xp=np):
    """``fn(lo, hi)`` over ``n`` rows: split when worth it, else one call ``fn(0, n)``.

    ``xp`` is the op's array namespace: only NumPy work is split (a GPU has parallelism of its own).
    """
    parts = ranges(n, work) if xp is np else None
    if parts is None:
        fn(0, n)
    else:
        run(fn, parts)


def matmul(a, b, out=None):
    """``a @ b`` for 2-D NumPy arrays, split over the rows of ``a`` or the columns of ``b`` (anything
    else, tensors included, and any product with threads off: plain ``a @ b``).

    The larger of the two output dimensions is split; when both are small (a weight gradient
    summed over a long batch) the inner dimension is, and the partial products are added.
    """
    if _threads < 2 or type(a) is not np.ndarray or type(b) is not np.ndarray or a.ndim != 2 or b.ndim != 2:
        return a @ b if out is None else np.matmul(a, b, out=out)
    m, k = a.shape
    n = b.shape[1]
    if ranges(2, 2 * m * n * k, MIN_FLOPS) is None:
        return a @ b if out is None else np.matmul(a, b, out=out)
    if out is None:
        out = np.empty((m, n), dtype=np.result_type(a, b))
    if max(m, n) >= 32 * _threads:
        parts = ranges(max(m, n))
        if m >= n:
            run(lambda lo, hi: np.matmul(a[lo:hi], b, out=out[lo:hi]), parts)
        else:
            run(lambda lo, hi: np.matmul(a, b[:, lo:hi], out=out[:, lo:hi]), parts)
        return out
    if k < 32 * _threads:
        return np.matmul(a, b, out=out)
    parts = ranges(k)
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
    out = np.empty_like(full, dtype=np.result_type(*args))
    cut = [type(a) is np.ndarray and a.ndim == full.ndim and a.shape[0] == full.shape[0] for a in args]

    def part(lo, hi):
        fn(*(a[lo:hi] if c else a for a, c in zip(args, cut)), out=out[lo:hi])

    run(part, parts)
    return out


def _from_environment():
    value = os.environ.get("KNETPY_NUM_THREADS", "").strip()
    if not value:
        return
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"KNETPY_NUM_THREADS must be a positive integer (knetpy's threads), got {value!r}")
    set_num_threads(n)


_from_environment()
