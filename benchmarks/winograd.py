"""Winograd against direct convolution: one layer's forward pass and both gradients, knetpy on one thread.

The layers are LeNet's second convolution (5x5, 20 -> 50 channels on 12x12, batch 100) and
ResNet-20's 3x3 layers (batch 128, 16/32/64 channels on 32x32/16x16/8x8, padding 1). Each row times
``conv4`` and its backward pass with knetpy's threads off and at its automatic threads, Winograd on
and off (``set_winograd``) in each, taking turns in rounds so that the machine's slow spells hit all
alike. With the compiled transforms (numba) the automatic threads split Winograd's convolution over
the cores; without them Winograd is taken only with the threads off. "error" is the largest difference
from the float64 direct convolution over the output, input gradient and filter gradient, relative
to each one's largest magnitude.

    python benchmarks/winograd.py              # 15 rounds
    python benchmarks/winograd.py --rounds 3   # a quick look
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import blas_report  # noqa: E402

LAYERS = [  # name, batch, C_in, C_out, size, kernel, padding
    ("LeNet conv 2", 100, 20, 50, 12, 5, 0),
    ("ResNet-20 16ch", 128, 16, 16, 32, 3, 1),
    ("ResNet-20 32ch", 128, 32, 32, 16, 3, 1),
    ("ResNet-20 64ch", 128, 64, 64, 8, 3, 1),
]


def layer_step(kp, w, x, gy, padding):
    """conv4 forward and backward; returns (y, dx, dw) as arrays."""
    wt, xt = kp.Param(w), kp.Param(x)
    y = kp.conv4(wt, xt, padding=padding, mode=1)
    y.backward(gy)
    return y.value, xt.grad, wt.grad


def error(kp, w, x, gy, padding):
    """Largest relative difference of the float32 results from float64's direct convolution."""
    prev = kp.ops.winograd.set_winograd(False)
    try:
        want = layer_step(kp, w.astype(np.float64), x.astype(np.float64), gy.astype(np.float64), padding)
    finally:
        kp.ops.winograd.set_winograd(prev)
    got = layer_step(kp, w, x, gy, padding)
    return max(float(np.abs(g - r).max() / np.abs(r).max()) for g, r in zip(got, want))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="timing rounds, each setting once per round")
    args = parser.parse_args(argv)
    import knetpy as kp
    from knetpy.ops import winograd

    print(f"{blas_report()}\n")
    print("| layer | Winograd, 1 thread (ms) | direct, 1 thread (ms) | ratio | automatic threads, Winograd on (ms) "
          "| automatic threads, direct (ms) | ratio | Winograd taken | error (1 thread) |")
    print("|---|---|---|---|---|---|---|---|---|")
    auto = kp.parallel.is_auto()
    for name, n, cin, cout, size, k, pad in LAYERS:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((n, cin, size, size)).astype(np.float32)
        w = (rng.standard_normal((cout, cin, k, k)) / np.sqrt(cin * k * k)).astype(np.float32)
        out = size + 2 * pad - k + 1
        gy = rng.standard_normal((n, cout, out, out)).astype(np.float32)
        geom = kp.ops.conv.ConvGeometry((pad, pad), (1, 1), (1, 1), 1, False)
        settings = {"wino": (1, True), "direct": (1, False), "auto": ("auto", True), "auto direct": ("auto", False)}
        times = {s: [] for s in settings}
        for _ in range(args.rounds):
            for s, (threads, on) in settings.items():
                kp.set_num_threads(threads)
                prev = winograd.set_winograd(on)
                try:
                    layer_step(kp, w, x, gy, pad)  # warm: scratch memory, BLAS
                    t = time.perf_counter()
                    layer_step(kp, w, x, gy, pad)
                    times[s].append(time.perf_counter() - t)
                finally:
                    winograd.set_winograd(prev)
        kp.set_num_threads(1)
        taken = winograd.plan(w.shape, geom, (out, out), w, x) is not None
        err = error(kp, w, x, gy, pad)
        kp.set_num_threads("auto" if auto else kp.get_num_threads())
        ms = {s: 1e3 * float(np.median(v)) for s, v in times.items()}
        print(f"| {name} | {ms['wino']:.2f} | {ms['direct']:.2f} | {ms['wino'] / ms['direct']:.2f} | {ms['auto']:.2f} "
              f"| {ms['auto direct']:.2f} | {ms['auto'] / ms['auto direct']:.2f} | {'yes' if taken else 'no'} "
              f"| {err:.1e} |")


if __name__ == "__main__":
    main()
