"""Command line: ``knetpy quickstart`` and ``knetpy info``."""

from __future__ import annotations

import argparse
import platform
import sys
import time

import numpy as np


def quickstart(args) -> int:
    """Train a two-layer MLP on the 3-class spirals with ``kp.grad`` and report accuracy."""
    import knetpy as kp

    kp.set_seed(args.seed)
    x, y = kp.datasets.spirals(n_per_class=300, n_classes=3, noise=0.2)
    order = kp.backend.rng().permutation(len(x))
    x, y = x[order], y[order]
    split = int(0.8 * len(x))
    xtrn, ytrn, xtst, ytst = x[:split], y[:split], x[split:], y[split:]

    def init(*shape):
        return (kp.backend.rng().standard_normal(shape) * np.sqrt(2.0 / shape[0])).astype(np.float32)

    w = [init(2, 100), np.zeros(100, np.float32), init(100, 3), np.zeros(3, np.float32)]

    def predict(w, x):
        return kp.relu(x @ w[0] + w[1]) @ w[2] + w[3]

    def loss(w, x, y):
        return kp.nll(predict(w, x), y)

    dloss = kp.value_and_grad(loss)
    t0 = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        lossval, dw = dloss(w, xtrn, ytrn)
        for wi, gi in zip(w, dw):
            wi -= args.lr * gi
        if epoch == 1 or epoch % max(1, args.epochs // 5) == 0:
            print(f"epoch {epoch:4d}  loss {float(lossval):.4f}  "
                  f"trn {kp.accuracy(predict(w, xtrn), ytrn):.3f}  tst {kp.accuracy(predict(w, xtst), ytst):.3f}")
    acc = kp.accuracy(predict(w, xtst), ytst)
    print(f"test accuracy {acc:.3f} on {len(ytst)} held-out spiral points ({time.perf_counter() - t0:.2f} s)")
    return 0 if acc > 0.9 else 1


def info(args) -> int:
    import knetpy as kp

    print(f"knetpy {kp.__version__}")
    print(f"python {platform.python_version()}  numpy {np.__version__}  machine {platform.machine()}")
    print(f"default dtype {kp.get_dtype()}")
    try:
        from threadpoolctl import threadpool_info

        for lib in threadpool_info():
            print(f"BLAS {lib.get('internal_api')} {lib.get('version')} threads={lib.get('num_threads')} "
                  f"arch={lib.get('architecture')}")
    except ImportError:
        print("BLAS: install threadpoolctl to see which BLAS NumPy uses")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="knetpy", description="knetpy command line")
    sub = parser.add_subparsers(dest="command", required=True)
    q = sub.add_parser("quickstart", help="train a small MLP on an offline dataset and report accuracy")
    q.add_argument("--epochs", type=int, default=500)
    q.add_argument("--lr", type=float, default=1.0)
    q.add_argument("--seed", type=int, default=0)
    q.set_defaults(func=quickstart)
    i = sub.add_parser("info", help="version, backend and BLAS")
    i.set_defaults(func=info)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
