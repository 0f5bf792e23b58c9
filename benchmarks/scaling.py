"""Scaling: a ResNet-20 epoch on CIFAR-format images, and time per sample as batch and width grow.

(a) ResNet-20 (``kp.models.resnet20``: 3x32x32 images, BatchNorm, batch 128, SGD 0.05) against the
same network in PyTorch with the same starting weights, the frameworks taking turns batch by batch.
One CIFAR-10 epoch is 390 batches; ``--batches N`` times the first N and extrapolates to the epoch
(printed as such). CIFAR-10 is used when its files are on the machine, a synthetic CIFAR-format
set otherwise (the output says which; the time does not depend on the pixels).

(b) LeNet and the MLP (784 -> 64 relu -> 10) trained on random MNIST-format batches at batch sizes
32, 64, 128, 256, 512 and widths x1, x2, x4 (LeNet: 20, 50 channels and 500 units times the width;
MLP: 64 hidden units times the width), each step forward, backward and an SGD update, knetpy built
from layers with ``backward()`` against the same model in PyTorch. Printed: microseconds per
sample (best of three rounds, the frameworks alternating), so that the growth of cost with batch
and width is seen.

Both frameworks run at their defaults (threads as they choose them).

    python benchmarks/scaling.py                  # one ResNet-20 epoch and the full sweep
    python benchmarks/scaling.py --batches 20     # 20 ResNet batches, extrapolated to the epoch
    python benchmarks/scaling.py --quick          # seconds: 1 ResNet batch, a small sweep
    python benchmarks/scaling.py --json scaling.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import blas_report, knetpy_lenet, knetpy_sgd_step  # noqa: E402

BATCH, LR, EPOCH_IMAGES = 128, 0.05, 50_000
SWEEP_BATCHES = (32, 64, 128, 256, 512)
SWEEP_WIDTHS = (1, 2, 4)


# -- (a) ResNet-20 --------------------------------------------------------------------------------------
def cifar_batches(n):
    """``n`` training images and labels, and what they are: CIFAR-10 when found, else the synthetic set."""
    import knetpy as kp
    from knetpy.examples.resnet import synthetic_cifar

    try:
        x, y = kp.datasets.cifar10("train", download=False)
        return x[:n], y[:n], "CIFAR-10"
    except kp.datasets.DatasetNotFoundError:
        x, y = synthetic_cifar(n, seed=0)
        return x, y, "SYNTHETIC CIFAR-format images (CIFAR-10 is not on this machine)"


def resnet(batches):
    """Seconds for ``batches`` training batches of ResNet-20 per framework, and the last losses."""
    import resnet as bench

    x, y, source = cifar_batches(BATCH * (batches + 1))
    seconds, last, knet = bench.race(x, y, batches)
    return seconds, last, source, knet.count_params()


def train_resnet20(framework, x, y, batches):
    """``batches`` training steps of ResNet-20 in one framework alone (for benchmarks/memory.py)."""
    if framework == "knetpy":
        import knetpy as kp

        net = kp.models.resnet20()
        for i in range(batches):
            xb, yb = x[i * BATCH:(i + 1) * BATCH], y[i * BATCH:(i + 1) * BATCH]
            knetpy_sgd_step(net, net.parameters(), xb, yb, LR)
        return
    import resnet as bench
    import torch

    net = bench.torch_resnet20(torch).train()
    opt = torch.optim.SGD(net.parameters(), lr=LR)
    for i in range(batches):
        xb, yb = x[i * BATCH:(i + 1) * BATCH], y[i * BATCH:(i + 1) * BATCH]
        bench.torch_step(torch, net, opt, xb, yb)


# -- (b) the sweep -----------------------------------------------------------------------------------------
def knetpy_model(kind, width):
    import knetpy as kp

    if kind == "LeNet":
        return knetpy_lenet(kp, width)
    L = kp.layers
    return kp.Sequential([L.Dense(64 * width, activation="relu"), L.Dense(10)])


def torch_model(torch, kind, width):
    nn = torch.nn
    if kind == "LeNet":
        return nn.Sequential(nn.Conv2d(1, 20 * width, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(20 * width, 50 * width, 5),
                             nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(800 * width, 500 * width), nn.ReLU(),
                             nn.Linear(500 * width, 10))
    return nn.Sequential(nn.Linear(784, 64 * width), nn.ReLU(), nn.Linear(64 * width, 10))


def sweep_point(kind, batch, width, samples, rounds=3):
    """Microseconds per training sample for knetpy and PyTorch at one batch size and width."""
    import torch

    g = np.random.default_rng(0)
    shape = (1, 28, 28) if kind == "LeNet" else (784,)
    steps = max(2, samples // batch)
    xs = g.random((steps, batch, *shape), dtype=np.float32)
    ys = g.integers(0, 10, (steps, batch))
    knet, tnet = knetpy_model(kind, width), torch_model(torch, kind, width)
    knet(xs[0][:1])  # build
    params = knet.parameters()
    topt = torch.optim.SGD(tnet.parameters(), lr=0.01)
    txs, tys = torch.from_numpy(xs), torch.from_numpy(ys)

    def knetpy_steps(n):
        for i in range(n):
            knetpy_sgd_step(knet, params, xs[i], ys[i], 0.01)

    def torch_steps(n):
        for i in range(n):
            topt.zero_grad()
            torch.nn.functional.cross_entropy(tnet(txs[i]), tys[i]).backward()
            topt.step()

    runs = {"knetpy": knetpy_steps, "PyTorch": torch_steps}
    best = dict.fromkeys(runs, float("inf"))
    for run in runs.values():  # warm-up: first-touch pages, lazy initialisation
        run(1)
    for _ in range(rounds):
        for name, run in runs.items():
            tick = time.perf_counter()
            run(steps)
            best[name] = min(best[name], time.perf_counter() - tick)
    return {name: 1e6 * sec / (steps * batch) for name, sec in best.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, default=None,
                   help="time this many ResNet-20 batches and extrapolate to the epoch (default: the whole epoch)")
    p.add_argument("--no-resnet", action="store_true", help="skip (a)")
    p.add_argument("--no-sweep", action="store_true", help="skip (b)")
    p.add_argument("--quick", action="store_true", help="1 ResNet batch and a small sweep (a smoke test)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    a = p.parse_args(argv)
    result = {}
    print(f"Scaling, knetpy against PyTorch at their defaults. {blas_report()}\n")

    if not a.no_resnet:
        full = EPOCH_IMAGES // BATCH
        batches = 1 if a.quick else min(a.batches or full, full)
        seconds, last, source, n_params = resnet(batches)
        epoch = {k: v * full / batches for k, v in seconds.items()}
        part = "one epoch" if batches == full else f"{batches} of {full} batches, EXTRAPOLATED to the epoch"
        print(f"(a) ResNet-20 ({n_params:,} parameters), {part}, batch {BATCH}, SGD {LR}, on {source}\n")
        print("| framework | seconds timed | seconds per epoch | ratio to PyTorch | last loss |\n|---|---|---|---|---|")
        for name in seconds:
            print(f"| {name} | {seconds[name]:.2f} | {epoch[name]:.1f} | {epoch[name] / epoch['PyTorch']:.2f} "
                  f"| {last[name]:.4f} |")
        print()
        result["resnet20"] = {"batches": batches, "epoch_batches": full, "batch": BATCH, "data": source,
                              "extrapolated": batches != full, "seconds": seconds, "epoch_seconds": epoch,
                              "last_loss": last}

    if not a.no_sweep:
        batch_sizes, widths = ((32, 64), (1, 2)) if a.quick else (SWEEP_BATCHES, SWEEP_WIDTHS)
        samples = {"LeNet": 128 if a.quick else 3072, "MLP": 256 if a.quick else 25600}
        rounds = 1 if a.quick else 3
        print(f"(b) microseconds per training sample (forward, backward, SGD), best of {rounds} round(s), random "
              "MNIST-format batches\n")
        print("| model | width | batch | knetpy µs/sample | PyTorch µs/sample | ratio |\n|---|---|---|---|---|---|")
        rows = []
        for kind in ("LeNet", "MLP"):
            for width in widths:
                for batch in batch_sizes:
                    # wider models cost more per sample: fewer samples keep each point's time similar
                    us = sweep_point(kind, batch, width, samples[kind] // width, rounds)
                    rows.append({"model": kind, "width": width, "batch": batch, "us_per_sample": us})
                    print(f"| {kind} | x{width} | {batch} | {us['knetpy']:.1f} | {us['PyTorch']:.1f} "
                          f"| {us['knetpy'] / us['PyTorch']:.2f} |", flush=True)
        result["sweep"] = rows
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)
        print(f"\nwrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
