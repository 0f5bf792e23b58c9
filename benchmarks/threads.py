"""What splitting an op over knetpy's threads costs on this machine, and where the second core goes.

Three tables, each measured in rounds that take turns (medians):

1. **One split.** ``kp.parallel.run`` over two parts (the calling thread runs one, a knetpy worker
   the other), with parts that do nothing and with parts of one NumPy call of about 50 us: right
   after the previous split, and after 1 ms idle (the worker asleep, to be woken).
2. **One part beside another thread.** Half of LeNet's batch through its second convolution three
   ways: Winograd's rows (``kp.ops.winograd.conv_rows``) with the NumPy transforms (a few NumPy calls
   per few samples, Python between them) and with the compiled ones (two GIL-free calls and a batched
   GEMM per run of samples; only with numba), and the im2col GEMM (one NumPy call). Each alone; beside a
   BLAS GEMM on the other core (dense arithmetic that needs no GIL); and beside a second copy of itself
   on the other half (what a split runs). A part that slows down beside its copy but not beside the
   GEMM shares something with its copy: the GIL for the NumPy loop; for the GIL-free compiled part,
   the core's loads and stores (on a VM whose two vCPUs share one physical core, for instance).
3. **A training step** (layers + backward, plain SGD, random data) of LeNet (batch 100; its ops take a
   few milliseconds each) and of ResNet-20 (batch 128; tens of milliseconds), with knetpy's threads
   off and automatic, taking turns.

    python benchmarks/threads.py            # 15 rounds
    python benchmarks/threads.py --quick    # 3 rounds
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import blas_report, knetpy_lenet, knetpy_sgd_step  # noqa: E402


@contextlib.contextmanager
def threads_restored(kp):
    """knetpy's threads as they were (automatic or a count) once the block ends."""
    before = "auto" if kp.parallel.is_auto() else kp.get_num_threads()
    try:
        yield
    finally:
        kp.set_num_threads(before)


def median_us(samples):
    return float(np.median(samples)) * 1e6


# -- 1. one split -----------------------------------------------------------------------------------------
def split_costs(kp, rounds):
    a = np.random.default_rng(0).random(12_000, np.float32)
    outs = [np.empty_like(a), np.empty_like(a)]

    def busy(lo, hi):
        for _ in range(10):  # about 50 us of one NumPy call per part, the GIL released inside
            np.sqrt(a, out=outs[lo])

    def idle(lo, hi):
        pass

    solo = []
    for _ in range(50 * rounds):
        tick = time.perf_counter()
        busy(0, 1)
        solo.append(time.perf_counter() - tick)
    rows = []
    for name, part in (("empty parts", idle), ("parts of ~50 us", busy)):
        for gap in (0.0, 1e-3):
            times = []
            for _ in range(100 * rounds):
                if gap:
                    time.sleep(gap)
                tick = time.perf_counter()
                kp.parallel.run(part, [(0, 1), (1, 2)])
                times.append(time.perf_counter() - tick)
            rows.append((name, "after 1 ms idle" if gap else "back to back", median_us(times)))
    return median_us(solo), rows


# -- 2. one part beside another thread --------------------------------------------------------------------
def beside(first, second, reps):
    """Median seconds of ``first()`` while ``second`` runs in a loop on another thread (None: alone)."""
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            second()

    other = threading.Thread(target=loop) if second else None
    if other:
        other.start()
    try:
        first()
        times = []
        for _ in range(reps):
            tick = time.perf_counter()
            first()
            times.append(time.perf_counter() - tick)
    finally:
        stop.set()
        if other:
            other.join()
    return float(np.median(times))


def part_costs(kp, rounds):
    """LeNet's second convolution on half the batch (50 samples), one thread, BLAS on one thread."""
    rng = np.random.default_rng(0)
    n, half = 100, 50
    x = rng.random((n, 12, 12, 20), np.float32)  # channels-last, as the op keeps it
    w = rng.standard_normal((50, 20, 5, 5)).astype(np.float32)
    geom = kp.ops.conv.ConvGeometry((0, 0), (1, 1), (1, 1), 1, False)
    plan = kp.ops.winograd.plan_for(w.shape, geom, (8, 8), np.float32)
    rows = np.empty((n * 64, 50), np.float32)
    cols = rng.random((n * 64, 500), np.float32)  # the gathered windows of the im2col path
    wm = rng.standard_normal((500, 50)).astype(np.float32)
    big_a, big_b = rng.random((1024, 1024), np.float32), rng.random((1024, 1024), np.float32)
    big_out = np.empty((1024, 1024), np.float32)

    def winograd(lo):
        return lambda: kp.ops.winograd.conv_rows(w, x[lo:lo + half], plan, False, rows[lo * 64:(lo + half) * 64])

    def gemm(lo):
        return lambda: np.matmul(cols[lo * 64:(lo + half) * 64], wm, out=rows[lo * 64:(lo + half) * 64])

    def blas_elsewhere():
        np.matmul(big_a, big_b, out=big_out)

    ways = [("Winograd rows, NumPy transforms (several NumPy calls)", winograd, False)]
    if kp.ops.fast.available():
        ways.append(("Winograd rows, compiled transforms (GIL-free calls)", winograd, True))
    ways.append(("im2col GEMM (one NumPy call)", gemm, False))
    table = []
    for name, make, compiled in ways:
        prev = kp.ops.fast.set_fast(compiled)
        try:
            alone, by_blas, by_copy = [], [], []
            for _ in range(rounds):
                alone.append(beside(make(0), None, 10))
                by_blas.append(beside(make(0), blas_elsewhere, 10))
                by_copy.append(beside(make(0), make(half), 10))
        finally:
            kp.ops.fast.set_fast(prev)
        table.append((name, *(float(np.median(t)) * 1e3 for t in (alone, by_blas, by_copy))))
    return table


# -- 3. training steps ---------------------------------------------------------------------------------------
MODELS = [  # name, constructor, batch, input shape, steps per turn
    ("LeNet (batch 100)", knetpy_lenet, 100, (1, 28, 28), 5),
    ("ResNet-20 (batch 128)", lambda kp: kp.models.resnet20(), 128, (3, 32, 32), 1),
]


def step_times(kp, rounds):
    """{model: (ms per step with knetpy's threads off, ms with automatic threads)}: plain SGD steps on
    random data, the two settings taking turns (the first step of each turn not timed)."""
    rng = np.random.default_rng(0)
    out = {}
    with threads_restored(kp):
        for name, build, batch, shape, per_turn in MODELS:
            x = rng.random((batch, *shape), np.float32)
            y = rng.integers(0, 10, batch)
            kp.set_seed(0)
            net = build(kp)
            net(x[:1])
            params = net.parameters()
            times = {1: [], "auto": []}
            for _ in range(rounds):
                for setting, samples in times.items():
                    kp.set_num_threads(setting)
                    knetpy_sgd_step(net, params, x, y, 0.01)
                    for _ in range(per_turn):
                        tick = time.perf_counter()
                        knetpy_sgd_step(net, params, x, y, 0.01)
                        samples.append(time.perf_counter() - tick)
                    time.sleep(0.02)
            out[name] = tuple(float(np.median(times[k])) * 1e3 for k in (1, "auto"))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="rounds of turns (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="3 rounds")
    args = parser.parse_args()
    rounds = 3 if args.quick else args.rounds
    if rounds < 1:
        parser.error(f"--rounds must be at least 1, got {rounds}")

    import knetpy as kp

    kp.ops.fast.warm_up(winograd=True)
    cores = kp.parallel.cores()
    print(f"\nWhat a split over knetpy's threads costs here ({cores} cores, {rounds} rounds)")
    print(blas_report())
    if cores < 2:
        print("\nOne core: knetpy never splits an op here; nothing to measure.")
        return

    solo, rows = split_costs(kp, rounds)
    print(f"\n1. One split into two parts (a part alone: {solo:.0f} us)\n")
    print("| parts | when | us per split |\n|---|---|---|")
    for name, when, us in rows:
        print(f"| {name} | {when} | {us:.0f} |")

    with threads_restored(kp):
        kp.set_num_threads(1)  # each part runs whole on its own thread
        with kp.parallel.blas_threads(1):
            table = part_costs(kp, rounds)
    print("\n2. Half of LeNet's conv 2 (50 samples) on one thread, ms (ratio to alone)\n")
    print("| part | alone | beside a BLAS GEMM | beside a copy of itself |\n|---|---|---|---|")
    for name, alone, by_blas, by_copy in table:
        print(f"| {name} | {alone:.2f} | {by_blas:.2f} ({by_blas / alone:.2f}) | {by_copy:.2f} ({by_copy / alone:.2f}) |")

    print("\n3. A training step, ms: knetpy's threads off and automatic\n")
    print("| model | threads off | automatic | ratio automatic / off |\n|---|---|---|---|")
    for name, (off, auto) in step_times(kp, rounds).items():
        print(f"| {name} | {off:.1f} | {auto:.1f} | {auto / off:.2f} |")


if __name__ == "__main__":
    main()
