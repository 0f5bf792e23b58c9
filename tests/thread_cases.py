"""Helpers of the thread tests: running a function in several threads, counting split ops, BLAS threads."""

import threading

from knetpy import parallel

try:
    import threadpoolctl
except ImportError:  # the tests that read BLAS threads skip without it
    threadpoolctl = None


def run_threads(n, target):
    """Call ``target(i)`` for i in range(n), each in its own thread; re-raise the first error here."""
    errors = []

    def guarded(i):
        try:
            target(i)
        except BaseException as e:  # reported in the main thread, not lost in a worker
            errors.append(e)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def count_splits(monkeypatch):
    """A list that receives the number of parts of every op handed to the workers (``parallel.run``)."""
    calls = []
    real_run = parallel.run

    def counting_run(fn, parts):
        calls.append(len(parts))
        return real_run(fn, parts)

    monkeypatch.setattr(parallel, "run", counting_run)
    return calls


def blas_threads():
    """The thread count of NumPy's BLAS (SciPy, loaded by scikit-learn, may bring a second one)."""
    libs = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    counts = {i["num_threads"] for i in libs if "numpy" in i["filepath"]} or {i["num_threads"] for i in libs}
    assert len(counts) == 1, libs
    return counts.pop()
