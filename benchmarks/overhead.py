"""Per-op dispatch overhead: a tiny matmul + add + relu + sum, forward and backward.

The arrays are so small (8x8) that the arithmetic is negligible: what is measured is the cost of
recording ops and running their VJPs. Prints microseconds per step for knetpy and PyTorch.

    python benchmarks/overhead.py [--steps 20000]
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import best_of, blas_report  # noqa: E402


def run_knetpy(steps):
    import knetpy as kp

    g = np.random.default_rng(0)
    w = kp.Param(g.standard_normal((8, 8)).astype(np.float32))
    b = kp.Param(np.zeros(8, np.float32))
    x = g.standard_normal((8, 8)).astype(np.float32)
    for _ in range(steps):
        loss = kp.sum(kp.relu(x @ w + b))
        loss.backward()
        w.grad = b.grad = None


def run_knetpy_grad(steps):
    import knetpy as kp

    g = np.random.default_rng(0)
    w = [g.standard_normal((8, 8)).astype(np.float32), np.zeros(8, np.float32)]
    x = g.standard_normal((8, 8)).astype(np.float32)
    dloss = kp.grad(lambda w, x: kp.sum(kp.relu(x @ w[0] + w[1])))
    for _ in range(steps):
        dloss(w, x)


def run_numpy(steps):
    g = np.random.default_rng(0)
    w = g.standard_normal((8, 8)).astype(np.float32)
    b = np.zeros(8, np.float32)
    x = g.standard_normal((8, 8)).astype(np.float32)
    for _ in range(steps):
        h = x @ w + b
        y = np.maximum(h, 0)
        y.sum()
        gh = (h > 0).astype(np.float32)
        x.T @ gh
        gh.sum(0)


def run_torch(steps):
    import torch

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    w = torch.randn(8, 8, generator=g, requires_grad=True)
    b = torch.zeros(8, requires_grad=True)
    x = torch.randn(8, 8, generator=g)
    for _ in range(steps):
        loss = torch.relu(x @ w + b).sum()
        loss.backward()
        w.grad = b.grad = None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20_000)
    a = p.parse_args(argv)
    rows = []
    for name, fn in [("knetpy (backward)", run_knetpy), ("knetpy (grad)", run_knetpy_grad),
                     ("NumPy by hand", run_numpy), ("PyTorch", run_torch)]:
        try:
            sec, _ = best_of(lambda fn=fn: fn(a.steps), 3)
        except ImportError:
            continue
        rows.append((name, sec))
    ref = dict(rows).get("PyTorch")
    print(f"Per-op overhead: 8x8 matmul + add + relu + sum, forward and backward. {blas_report()}\n")
    print("| framework | µs per step | ratio to PyTorch |\n|---|---|---|")
    for name, sec in rows:
        ratio = f"{sec / ref:.2f}" if ref else "n/a"
        print(f"| {name} | {sec / a.steps * 1e6:.1f} | {ratio} |")


if __name__ == "__main__":
    main()
