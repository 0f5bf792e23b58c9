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


def knetpy_warm_up(convolutions=False):
    """Load knetpy's compiled kernels before a clock starts, as JAX's step is compiled before it: numba
    sets its compiler up at the first kernel a process loads (about 0.7 s, once), which is not a cost
    of the model being timed. ``convolutions``: the Winograd transforms too. Returns the seconds it took."""
    import knetpy as kp

    return kp.ops.fast.warm_up(winograd=convolutions)


def knetpy_sgd_step(forward, params, x, y, lr):
    """One knetpy training step written out: gradients zeroed, ``kp.nll`` of ``forward(x)`` against ``y``,
    ``backward()`` and plain SGD with learning rate ``lr`` on ``params``. Returns the loss (a Tensor)."""
    import knetpy as kp

    for p in params:
        p.zero_grad()
    loss = kp.nll(forward(x), y)
    loss.backward()
    for p in params:
        p -= lr * p.grad
    return loss


def knetpy_lenet(kp, width=1):
    """LeNet from knetpy layers, as the benchmarks train it: conv 5x5x20, pool, conv 5x5x50, pool, dense 500,
    dense 10 (relu after the convolutions and the first dense layer); ``width`` multiplies the channels and
    the hidden units."""
    L = kp.layers
    return kp.Sequential(
        L.Conv2D(20 * width, 5, activation="relu"), L.MaxPool2D(), L.Conv2D(50 * width, 5, activation="relu"),
        L.MaxPool2D(), L.Flatten(), L.Dense(500 * width, activation="relu"), L.Dense(10),
    )


def table(rows, reference="PyTorch"):
    """Markdown table of ``rows`` = [(name, seconds, extra)], with the ratio to ``reference``."""
    ref = next((s for n, s, _ in rows if n == reference), None)
    lines = ["| framework | seconds | ratio to " + reference + " | result |", "|---|---|---|---|"]
    for name, sec, extra in rows:
        ratio = f"{sec / ref:.2f}" if ref else "n/a"
        lines.append(f"| {name} | {sec:.3f} | {ratio} | {extra} |")
    return "\n".join(lines)


# -- machine-readable results, for benchmarks/report.py -----------------------------------------------------
#: A line starting with this, then JSON, is one measured row; benchmarks/report.py collects them.
RESULT_PREFIX = "BENCH-RESULT "


def emit(benchmark, framework, seconds, flops=None, **extra):
    """Print one result as a machine-readable line: ``benchmark`` (the row, e.g. "LeNet"), ``framework``
    (the column: "knetpy", "PyTorch", "JAX", "NumPy by hand", or a variant such as "knetpy grad"),
    the seconds it took, the FLOPs of the work timed (for the FLOP-floor column) and anything else."""
    import json

    row = {"benchmark": benchmark, "framework": framework, "seconds": float(seconds), "flops": flops, **extra}
    print(RESULT_PREFIX + json.dumps(row), flush=True)


# FLOPs of the timed work: 2 per multiply-add of every GEMM (convolutions counted as their GEMMs), the
# forward products and the backward ones a framework must run (no gradient for the input data).
# Elementwise work, pooling and the optimizer update are left out: the floor is what BLAS alone needs.
def dense_flops(sizes, samples):
    """A dense network with layer sizes [n_in, h1, ..., n_out] trained on ``samples`` samples."""
    mults = [a * b for a, b in zip(sizes[:-1], sizes[1:])]
    return 2 * samples * (2 * mults[0] + 3 * sum(mults[1:]))  # forward + weight grad (+ input grad)


def linreg_flops(n, features, steps):
    """Full-batch linear regression: x @ w forward and x.T @ g backward, per step."""
    return 2 * 2 * n * features * steps


def lenet_flops(samples):
    """LeNet on 28x28: conv 5x5x20 (24x24 out), conv 5x5x50 (8x8 out), dense 800-500-10."""
    conv1 = 20 * 1 * 25 * 24 * 24
    conv2 = 50 * 20 * 25 * 8 * 8
    dense = 800 * 500 + 500 * 10
    return 2 * samples * (2 * conv1 + 3 * conv2 + 3 * dense)


def lstm_lm_flops(chars, embed, hidden, vocab):
    """Embedding -> LSTM -> dense language model over ``chars`` characters (batch x time)."""
    per_char = embed * 4 * hidden + hidden * 4 * hidden + hidden * vocab
    return 2 * 3 * chars * per_char  # forward, weight grads, input grads (the embedding needs its rows')
