"""Data-parallel training over MPI: all-reduce bandwidth (1 MB to 64 MB) and MLP / LeNet epoch times at
P = 1 and P = 2 processes on this machine, then the ring all-reduce scaling model for N machines.

Starts its own ``mpiexec -n 2`` runs (needs mpi4py and mpiexec: pip install 'knetpy[distributed]').
The data are random images of MNIST's size (the timing does not depend on their values). The global
batch is the same at every P (100: 50 per rank at P = 2), so P = 2 does the same work per epoch.

    python benchmarks/allreduce.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

LATENCY = 10e-6  # seconds per message hop assumed by the scaling model (a typical Ethernet/RDMA figure)


# -- inside mpiexec ------------------------------------------------------------------------------------
def bandwidth(quick):
    import knetpy as kp
    from knetpy.distributed import comm

    kp.distributed.init()
    w = comm._world
    rows = []
    for mb in (1, 2, 4, 8, 16, 32, 64):
        buf = np.ones(mb * (1 << 20) // 4, np.float32)
        repeat = 3 if quick else max(5, 64 // mb)
        comm.wait([w.comm.Iallreduce(w.MPI.IN_PLACE, buf, op=w.MPI.SUM)], "warm-up")
        kp.distributed.barrier()
        t = time.perf_counter()
        for _ in range(repeat):
            comm.wait([w.comm.Iallreduce(w.MPI.IN_PLACE, buf, op=w.MPI.SUM)], "bench")
        dt = (time.perf_counter() - t) / repeat
        rows.append({"MB": mb, "seconds": dt})
    if kp.distributed.is_main():
        print(json.dumps({"bandwidth": rows, "P": kp.distributed.world_size()}))


def build(kind):
    import knetpy as kp
    from knetpy.layers import Conv2D, Dense, Flatten, MaxPool2D

    if kind == "mlp":
        return kp.Sequential(Flatten(), Dense(64, activation="relu"), Dense(10))
    return kp.Sequential(Conv2D(20, 5, activation="relu"), MaxPool2D(2), Conv2D(50, 5, activation="relu"),
                         MaxPool2D(2), Flatten(), Dense(500, activation="relu"), Dense(10))


def epoch(kind, quick):
    import knetpy as kp

    kp.distributed.init()
    p = kp.distributed.world_size()
    n = (2000 if quick else 10000) if kind == "mlp" else (400 if quick else 2000)
    g = np.random.default_rng(0)
    x = g.random((n, 1, 28, 28), dtype=np.float32)
    y = g.integers(0, 10, n)
    kp.set_seed(0)
    model = build(kind)
    model.compile(loss="cross_entropy", optimizer=kp.optim.SGD(lr=0.05), metrics=["accuracy"])
    model(x[:1])
    batch = 100 // p
    model.fit(x[: 4 * 100], y[: 4 * 100], epochs=1, batch_size=batch, verbose=0, distributed=True)  # warm-up
    kp.distributed.barrier()
    t = time.perf_counter()
    model.fit(x, y, epochs=1, batch_size=batch, verbose=0, distributed=True)
    dt = time.perf_counter() - t
    steps = n // 100
    n_params = sum(v.size for v in model.params.values())
    if kp.distributed.is_main():
        print(json.dumps({"model": kind, "P": p, "seconds": dt, "steps": steps, "samples": n,
                          "params": int(n_params)}))


# -- the driver ----------------------------------------------------------------------------------------
def launch(args, processes, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, __file__, *args]
    if processes > 1:
        cmd = [mpiexec(), "-n", str(processes), *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, env=env)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}")
    return json.loads([line for line in out.stdout.splitlines() if line.startswith("{")][-1])


def mpiexec():
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return shutil.which("mpiexec") or (here if os.path.exists(here) else None)


def ring_seconds(nbytes, n, gbit):
    """Ring all-reduce: 2(N-1) steps, each sending 1/N of the buffer and paying one latency."""
    return 2 * (n - 1) / n * nbytes / (gbit * 1e9 / 8) + 2 * (n - 1) * LATENCY


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short version: fewer repetitions and samples")
    parser.add_argument("--worker", choices=["bandwidth", "mlp", "lenet"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "bandwidth":
        return bandwidth(args.quick)
    if args.worker:
        return epoch(args.worker, args.quick)
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        print("allreduce: skipped, mpi4py is not installed (pip install 'knetpy[distributed]')")
        return None
    if mpiexec() is None:
        print("allreduce: skipped, no mpiexec found (pip install mpich, or a system MPI)")
        return None
    quick = ["--quick"] if args.quick else []
    print(f"# Data-parallel training over MPI ({os.cpu_count()} cores here)\n")
    bw = launch(["--worker", "bandwidth", *quick], 2, 1)
    print("## All-reduce of float32 buffers, 2 processes on this machine (MPICH, shared memory)\n")
    print("| buffer | time | algorithm bandwidth | bus bandwidth (2(P-1)/P x) |\n|---|---|---|---|")
    factor = 2 * (bw["P"] - 1) / bw["P"]  # the bytes each process sends per byte of buffer, in a ring
    for row in bw["bandwidth"]:
        gbs = row["MB"] * (1 << 20) / row["seconds"] / 1e9
        print(f"| {row['MB']} MB | {row['seconds'] * 1e3:.2f} ms | {gbs:.2f} GB/s | {gbs * factor:.2f} GB/s |")
    print("\n## One epoch, global batch 100 (50 per rank at P = 2), SGD\n")
    print("| model | samples | P = 1, 1 thread | P = 1, 2 BLAS threads | P = 2, 1 thread each | speed-up P=2 vs P=1 (1 thread) |")
    print("|---|---|---|---|---|---|")
    steps = {}
    for kind in ("mlp", "lenet"):
        one = launch(["--worker", kind, *quick], 1, 1)
        one2 = launch(["--worker", kind, *quick], 1, 2)
        two = launch(["--worker", kind, *quick], 2, 1)
        steps[kind] = (one["seconds"] / one["steps"], one["params"])
        print(f"| {kind} | {one['samples']} | {one['seconds']:.2f} s | {one2['seconds']:.2f} s | "
              f"{two['seconds']:.2f} s | {one['seconds'] / two['seconds']:.2f}x |")
    print("\n## Scaling model: ring all-reduce of float32 gradients, one process per machine, no overlap\n")
    print(f"Efficiency = compute / (compute + all-reduce), compute = this machine's step time at batch 100 "
          f"per machine (1 thread), latency {LATENCY * 1e6:.0f} us per hop.\n")
    print("| model | gradient bytes per step | network | N = 2 | N = 4 | N = 8 | N = 16 | N = 64 |")
    print("|---|---|---|---|---|---|---|---|")
    for kind, (step, params) in steps.items():
        nbytes = 4 * params
        for gbit in (10, 100):
            effs = [step / (step + ring_seconds(nbytes, n, gbit)) for n in (2, 4, 8, 16, 64)]
            print(f"| {kind} | {nbytes / 1e6:.2f} MB | {gbit} Gb/s | " + " | ".join(f"{e:.0%}" for e in effs) + " |")
    return None


if __name__ == "__main__":
    main()
