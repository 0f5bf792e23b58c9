"""Helpers of the thread tests: running a function in several threads, counting split ops, BLAS threads."""

import contextlib
import threading

import knetpy as kp
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


@contextlib.contextmanager
def automatic_threads_on_two_cores(monkeypatch, timed):
    """Automatic threads as on a 2-core machine, with BLAS at 4 threads to see what knetpy sets, and
    the timed choices on or off (off: the size rule alone)."""
    for name in parallel.BLAS_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(parallel, "cores", lambda: 2)
    monkeypatch.setattr(parallel, "TIMED", timed)
    with threadpoolctl.threadpool_limits(limits=4, user_api="blas"):
        kp.set_num_threads("auto")
        try:
            yield
        finally:
            kp.set_num_threads(1)
    kp.set_num_threads(1)
