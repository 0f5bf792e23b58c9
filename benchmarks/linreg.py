"""LinReg on the Boston housing data: 13 -> 1, full batch 506, 10,000 SGD steps, lr 0.1.

Knet's first benchmark, written Knet-style with ``kp.grad``, timed against the same loop in PyTorch
(and hand-written NumPy and JAX when installed) in one run. Per-op overhead is the whole cost here:
each step is five small ops forward and back, and the update. The "knetpy" row compiles the whole
step, its ``kp.optim.update`` included, as JAX's row jits its step; "knetpy grad, update by hand" compiles
the gradient only and writes ``w -= lr * g`` in Python, as Knet's own example does.

    python benchmarks/linreg.py [--steps 10000] [--data housing.data]

The data is the copy of housing.data shipped with knetpy unless --data names another.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import peers_jax  # noqa: E402
from common import best_of, blas_report, emit, linreg_flops, table  # noqa: E402


def load(path=None):
    import knetpy as kp

    x, y = kp.datasets.housing(path, standardize=True)
    return x.astype(np.float32), y.astype(np.float32)


def init(seed=1):
    g = np.random.default_rng(seed)
    return [(g.standard_normal((13, 1)) * 0.1).astype(np.float32), np.zeros(1, np.float32)]


def loss(w, x, y):
    import knetpy as kp

    return kp.mean(kp.square(x @ w[0] + w[1] - y))


def run_knetpy(x, y, steps, lr):
    """The whole training step compiled: gradient and SGD update recorded once, then replayed on raw arrays."""
    import knetpy as kp

    w = init()
    opts = kp.optim.optimizers(w, kp.optim.SGD, lr=lr)
    dloss = kp.grad(loss)

    @kp.compile
    def train_step(w, x, y):
        kp.optim.update(w, dloss(w, x, y), opts)  # the update is replayed with the step

    for _ in range(steps):
        train_step(w, x, y)
    return float(loss(w, x, y))


def run_knetpy_by_hand(x, y, steps, lr, compiled=True):
    """Knet's own loop: the (compiled) gradient, and the update written out."""
    import knetpy as kp

    dloss = kp.compile(kp.grad(loss)) if compiled else kp.grad(loss)
    w = init()
    for _ in range(steps):
        for wi, gi in zip(w, dloss(w, x, y)):
            wi -= lr * gi
    return float(loss(w, x, y))


def run_numpy(x, y, steps, lr):
    w, b = init()
    n = len(x)
    for _ in range(steps):
        err = x @ w + b - y
        g = err * (2.0 / n)
        w -= lr * (x.T @ g)
        b -= lr * g.sum(0)
    return float(np.mean((x @ w + b - y) ** 2))


def run_torch(x, y, steps, lr):
    import torch

    torch.set_num_threads(os.cpu_count())
    X, Y = torch.from_numpy(x), torch.from_numpy(y)
    w0, b0 = init()
    w = torch.tensor(w0, requires_grad=True)
    b = torch.tensor(b0, requires_grad=True)
    for _ in range(steps):
        loss = ((X @ w + b - Y) ** 2).mean()
        gw, gb = torch.autograd.grad(loss, (w, b))
        with torch.no_grad():
            w -= lr * gw
            b -= lr * gb
    return float(((X @ w + b - Y) ** 2).mean().detach())


def run_jax(x, y, steps, lr):
    """The same loop in JAX (benchmarks/peers_jax.py): the final MSE."""
    return peers_jax.linreg(x, y, init(), steps, lr)[1]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=10_000)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--data", default=None, help="housing.data (default: the copy shipped with knetpy)")
    a = p.parse_args(argv)
    x, y = load(a.data)
    eager = lambda x, y, steps, lr: run_knetpy_by_hand(x, y, steps, lr, compiled=False)  # noqa: E731
    timed = {"knetpy": run_knetpy, "knetpy grad, update by hand": run_knetpy_by_hand, "knetpy eager": eager,
             "NumPy by hand": run_numpy, "PyTorch": run_torch}
    if peers_jax.available():  # timed without its compilation, which runs before its clock starts
        timed["JAX"] = lambda x, y, steps, lr: peers_jax.linreg(x, y, init(), steps, lr)
    best = {}
    # Rounds taking turns, each framework once a round, and each one's fastest round: at 10-20 µs a step
    # the machine's noise of the moment would otherwise decide (the first framework in a fresh process
    # ran up to 1.5x slower than the same code later).
    for _ in range(a.repeat):
        for name, fn in list(timed.items()):
            try:
                if name == "JAX":
                    sec, final = fn(x, y, a.steps, a.lr)
                else:
                    sec, final = best_of(lambda fn=fn: fn(x, y, a.steps, a.lr), 1)
            except ImportError:
                del timed[name]
                continue
            if name not in best or sec < best[name][0]:
                best[name] = (sec, final)
    rows = [(name, sec, f"final MSE {final:.3f}") for name, (sec, final) in best.items()]
    print(f"LinReg housing, {a.steps} steps, best of {a.repeat} rounds taking turns. {blas_report()}\n")
    print(table(rows))
    for name, sec, extra in rows:
        emit("LinReg", name, sec, linreg_flops(*x.shape, a.steps), result=extra)


if __name__ == "__main__":
    main()
