"""Shared helpers for the benchmark scripts: timing, BLAS report, markdown tables."""

from __future__ import annotations

import os
import platform
import sys
import time

#: The exit status of a benchmark whose data is not on this machine: ``knetpy bench`` reports it as skipped.
SKIPPED = 77


def fashion_mnist_or_skip(split, **options):
    """``kp.datasets.fashion_mnist(split)`` from the files on this machine; exit with SKIPPED without them."""
    import knetpy as kp

    try:
        return kp.datasets.fashion_mnist(split, download=False, **options)
    except kp.datasets.DatasetNotFoundError as e:
        print(f"skipped: Fashion-MNIST is not on this machine ({str(e).split(';')[0]}); install it with "
              f"apt-get install dataset-fashion-mnist, or put its files in $KNETPY_DATA/fashion-mnist", file=sys.stderr)
        sys.exit(SKIPPED)


def blas_report() -> str:
    """Which BLAS NumPy runs, with its kernel and threads, and the OpenBLAS variables in effect."""
    try:
        from threadpoolctl import threadpool_info

        libs = [
            f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')}, {i.get('num_threads')} threads)"
            for i in threadpool_info()
            if i.get("user_api") == "blas"
        ]
    except ImportError:
        libs = ["unknown (pip install threadpoolctl)"]
    env = {k: os.environ.get(k, "unset") for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    return f"BLAS: {'; '.join(libs)}; env {env}; {platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def best_of(fn, repeat=3):
    """The fastest of ``repeat`` runs of ``fn()`` (seconds) and its last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def table(rows, reference="PyTorch"):
    """Markdown table of ``rows`` = [(name, seconds, extra)], with the ratio to ``reference``."""
    ref = next((s for n, s, _ in rows if n == reference), None)
    lines = ["| framework | seconds | ratio to " + reference + " | result |", "|---|---|---|---|"]
    for name, sec, extra in rows:
        ratio = f"{sec / ref:.2f}" if ref else "n/a"
        lines.append(f"| {name} | {sec:.3f} | {ratio} | {extra} |")
    return "\n".join(lines)
