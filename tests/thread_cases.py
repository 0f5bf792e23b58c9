"""Running a function in several threads at once for the thread-safety tests."""

import threading


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
