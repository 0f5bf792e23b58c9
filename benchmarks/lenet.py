"""LeNet on Fashion-MNIST, one epoch: knetpy against PyTorch in the same run.

Model: conv 5x5x20 -> relu -> maxpool 2 -> conv 5x5x50 -> relu -> maxpool 2 -> dense 500 relu ->
dense 10; batch 100, plain SGD with learning rate 0.1, softmax cross-entropy. Both frameworks start
from the same weights and see the batches in the same order; the frameworks take turns, 20 batches each
(``--chunk``), so that the machine's slow spells hit them alike. knetpy runs twice: written the Knet
way (``kp.conv4``/``kp.pool`` on raw arrays, the loss differentiated with ``kp.grad``), and built
from layers (``Conv2D(..., activation="relu")``, ``MaxPool2D``, ``Dense``) with ``backward()``.

    python benchmarks/lenet.py                 # full epoch, both frameworks
    python benchmarks/lenet.py --batches 10    # a quick subset
    python benchmarks/lenet.py --profile ops   # where knetpy's time goes (cProfile; or: layers)
    python benchmarks/lenet.py --threads 1     # knetpy without its own threads (BLAS threads only)

knetpy runs at its defaults (automatic threads: its large ops, im2col, GEMMs, pooling, bias and
activation, are split over the cores by size), as PyTorch runs with ``torch.set_num_threads(cores)``.
JAX (a jit-compiled step, benchmarks/peers_jax.py) takes its turns too when it is installed.

OpenBLAS reads OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE when NumPy loads; ``--native-blas`` re-runs
this script without them so OpenBLAS picks its kernel for the processor itself. The BLAS that ran
is printed with the table.

Data: Fashion-MNIST as kp.datasets finds it (e.g. /usr/share/datasets/fashion-mnist/, the Debian package
dataset-fashion-mnist); without it the benchmark is skipped.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import peers_jax  # noqa: E402
from common import emit, fashion_mnist_or_skip, knetpy_sgd_step, knetpy_warm_up, lenet_flops  # noqa: E402

BATCH = 100
LR = 0.1


def load(split):
    """Fashion-MNIST images (N, 1, 28, 28) float32 in [0, 1] and int64 labels, verified by kp.datasets."""
    x, y = fashion_mnist_or_skip(split)
    return x.astype(np.float32), y


# -- PyTorch --------------------------------------------------------------------------------------------
def torch_model(torch, seed):
    torch.manual_seed(seed)
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 20, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(20, 50, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(800, 500),
        nn.ReLU(),
        nn.Linear(500, 10),
    )


def initial_weights(model):
    """The torch model's starting weights in knetpy's layout (dense weights as (n_in, n_out))."""
    c1, c2, d1, d2 = (model[i] for i in (0, 3, 7, 9))

    def arr(t):
        return t.detach().numpy().astype(np.float32).copy()

    return [
        arr(c1.weight),
        arr(c1.bias).reshape(1, -1, 1, 1),
        arr(c2.weight),
        arr(c2.bias).reshape(1, -1, 1, 1),
        arr(d1.weight).T.copy(),
        arr(d1.bias),
        arr(d2.weight).T.copy(),
        arr(d2.bias),
    ]


def run_torch(torch, model, xtrn, ytrn, xtst, ytst, batches):
    """Train (a generator: one step per batch), then return (batch times, losses, test accuracy)."""
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    xt, yt = torch.from_numpy(xtrn), torch.from_numpy(ytrn)
    losses, times = [], []
    for i in range(batches):
        tick = time.perf_counter()
        xb, yb = xt[i * BATCH : (i + 1) * BATCH], yt[i * BATCH : (i + 1) * BATCH]
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        times.append(time.perf_counter() - tick)
        yield  # one batch done: the driver may switch frameworks here
    with torch.no_grad():
        hits = sum(
            int((model(torch.from_numpy(xtst[i : i + 1000])).argmax(1).numpy() == ytst[i : i + 1000]).sum())
            for i in range(0, len(xtst), 1000)
        )
    return times, losses, hits / len(xtst)


# -- knetpy ---------------------------------------------------------------------------------------------
def predict(kp, w, x):
    x = kp.pool(kp.relu(kp.conv4(w[0], x, mode=1) + w[1]))
    x = kp.pool(kp.relu(kp.conv4(w[2], x, mode=1) + w[3]))
    x = kp.relu(kp.mat(x) @ w[4] + w[5])
    return x @ w[6] + w[7]


def loss_fn(kp):
    def loss(w, x, y):
        return kp.nll(predict(kp, w, x), y)

    return loss


def run_knetpy(kp, weights, xtrn, ytrn, xtst, ytst, batches):
    w = [a.copy() for a in weights]
    step = kp.value_and_grad(loss_fn(kp))
    knetpy_warm_up(convolutions=True)  # (not timed: each batch is)
    losses, times = [], []
    for i in range(batches):
        tick = time.perf_counter()
        xb, yb = xtrn[i * BATCH : (i + 1) * BATCH], ytrn[i * BATCH : (i + 1) * BATCH]
        loss, grads = step(w, xb, yb)
        for p, g in zip(w, grads):
            p -= LR * g
        losses.append(float(loss))
        times.append(time.perf_counter() - tick)
        yield  # one batch done: the driver may switch frameworks here
    hits = sum(
        int((predict(kp, w, xtst[i : i + 1000]).argmax(1) == ytst[i : i + 1000]).sum())
        for i in range(0, len(xtst), 1000)
    )
    return times, losses, hits / max(len(xtst), 1)


def layer_model(kp, weights):
    """The same network from knetpy layers, starting from the given weights."""
    L = kp.layers
    net = [
        L.Conv2D(20, 5, activation="relu"),
        L.MaxPool2D(),
        L.Conv2D(50, 5, activation="relu"),
        L.MaxPool2D(),
        L.Flatten(),
        L.Dense(500, activation="relu"),
        L.Dense(10),
    ]
    h = np.zeros((1, 1, 28, 28), np.float32)
    for layer in net:
        h = layer(h)
    for layer, (w, b) in zip([net[i] for i in (0, 2, 5, 6)], zip(weights[::2], weights[1::2])):
        layer.w.value[...] = w
        layer.b.value[...] = b.reshape(layer.b.shape)
    return net


def run_layers(kp, weights, xtrn, ytrn, xtst, ytst, batches):
    net = layer_model(kp, weights)
    params = [p for layer in net for p in layer.parameters()]
    forward = kp.Sequential(net)  # as a user writes it: each conv + relu and its pooling run as one op
    knetpy_warm_up(convolutions=True)  # (not timed: each batch is)
    losses, times = [], []
    for i in range(batches):
        tick = time.perf_counter()
        xb, yb = xtrn[i * BATCH : (i + 1) * BATCH], ytrn[i * BATCH : (i + 1) * BATCH]
        loss = knetpy_sgd_step(forward, params, xb, yb, LR)
        losses.append(float(loss.value))
        times.append(time.perf_counter() - tick)
        yield  # one batch done: the driver may switch frameworks here
    with kp.no_grad():
        hits = sum(
            int((forward(xtst[i : i + 1000]).value.argmax(1) == ytst[i : i + 1000]).sum())
            for i in range(0, len(xtst), 1000)
        )
    return times, losses, hits / max(len(xtst), 1)


def fast_kernels(kp, on, steps):
    """A training generator run with knetpy's compiled kernels on or off during each of its batches."""
    while True:
        prev = kp.ops.fast.set_fast(on)
        try:
            next(steps)
        except StopIteration as done:
            return done.value
        finally:
            kp.ops.fast.set_fast(prev)
        yield


def finish(steps):
    """Run a training generator to its end; its result."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def interleave(trainings, chunk, pause=0.15):
    """Advance the training generators in turn, ``chunk`` batches each, until all are done.

    The frameworks take turns through the epoch, so a slow spell of the machine (other work on the
    host) hits all of them alike instead of whichever happened to be running; the ratio measures
    the frameworks, not the moment. Between turns the driver sleeps ``pause`` seconds (not timed):
    the thread pools of the framework that just ran (OpenMP, BLAS) spin for a while after their
    last task, and would otherwise take the cores from the next one. OpenBLAS's threads spin for about
    0.11 s after a product they ran (2-core AMD EPYC): with a pause of 0.05 s, PyTorch's first batch
    of each turn took 70 ms instead of 41 (about 1% of a turn of 20 batches). Returns {name: result}.
    """
    results, active = {}, dict(trainings)
    while active:
        for name, steps in list(active.items()):
            try:
                for _ in range(chunk):
                    next(steps)
            except StopIteration as done:
                results[name] = done.value
                del active[name]
            if pause:
                time.sleep(pause)
    return {name: results[name] for name in trainings}


def blas_description():
    from threadpoolctl import threadpool_info

    rows = []
    for info in threadpool_info():
        if info.get("user_api") == "blas":
            lib = Path(info["filepath"]).name
            rows.append(
                f"{info['internal_api']} {info.get('version')} ({lib}), kernel {info.get('architecture')}, "
                f"{info['num_threads']} threads"
            )
    env = ", ".join(
        f"{k}={os.environ[k]}" for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ
    )
    import knetpy as kp

    return (
        "; ".join(rows)
        + f" — environment: {env or 'OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset'}"
        + f"; knetpy threads: {kp.get_num_threads()} "
        + ("(automatic: split ops run BLAS on 1 thread)" if kp.parallel.is_auto()
           else "(kp.set_num_threads: BLAS runs 1 thread per knetpy thread)")
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--batches", type=int, default=None, help="train on this many batches (default: one epoch)"
    )
    parser.add_argument(
        "--profile", choices=["ops", "layers"], help="profile one knetpy variant (cProfile) instead of timing"
    )
    parser.add_argument(
        "--native-blas", action="store_true", help="unset OPENBLAS_CORETYPE/L2_SIZE and re-run"
    )
    parser.add_argument(
        "--only", choices=["ops", "layers", "torch", "jax"], action="append", help="run only these (repeatable)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="knetpy's threads (kp.set_num_threads; default: automatic)"
    )
    parser.add_argument(
        "--numpy-too", action="store_true",
        help="also run both knetpy variants with the compiled kernels off (NumPy only), taking turns",
    )
    parser.add_argument(
        "--chunk", type=int, default=20, help="batches each framework trains before the next takes a turn"
    )
    parser.add_argument(
        "--pause", type=float, default=0.15,
        help="seconds to wait between turns (not timed), while the last framework's idle threads stop spinning"
    )
    args = parser.parse_args()

    if args.native_blas and any(k in os.environ for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")):
        env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
        os.execve(sys.executable, [sys.executable, *sys.argv], env)

    import torch

    import knetpy as kp

    # the cores this process may run on (``taskset -c 0`` gives one), so torch matches a pinned run
    threads = kp.parallel.cores()
    torch.set_num_threads(threads)
    if args.threads:  # else knetpy's defaults: automatic threads
        kp.set_num_threads(args.threads)
    xtrn, ytrn = load("train")
    xtst, ytst = load("test")
    batches = args.batches or len(xtrn) // BATCH
    model = torch_model(torch, seed=0)
    weights = initial_weights(model)

    if args.profile:
        import cProfile
        import pstats

        run = run_layers if args.profile == "layers" else run_knetpy
        finish(run(kp, weights, xtrn, ytrn, xtst[:1000], ytst[:1000], 2))  # warm up
        prof = cProfile.Profile()
        prof.enable()
        finish(run(kp, weights, xtrn, ytrn, xtst[:0], ytst[:0], batches))
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        return

    runs = {
        "ops": ("knetpy, kp.grad over ops", lambda: run_knetpy(kp, weights, xtrn, ytrn, xtst, ytst, batches)),
        "layers": (
            "knetpy, layers + backward",
            lambda: run_layers(kp, weights, xtrn, ytrn, xtst, ytst, batches),
        ),
        "torch": ("PyTorch", lambda: run_torch(torch, model, xtrn, ytrn, xtst, ytst, batches)),
    }
    if peers_jax.available():
        runs["jax"] = ("JAX", lambda: peers_jax.lenet(weights, xtrn, ytrn, xtst, ytst, batches, BATCH, LR))
    chosen = dict(runs[key] for key in (args.only or list(runs)) if key in runs)
    if args.numpy_too and kp.ops.fast.available():
        for key in ("ops", "layers"):
            if key in (args.only or list(runs)):
                name, run = runs[key]
                chosen[name + ", NumPy only"] = lambda run=run: fast_kernels(kp, False, run())
    results = interleave({name: run() for name, run in chosen.items()}, args.chunk, args.pause)

    base = sum(results["PyTorch"][0]) if "PyTorch" in results else float("nan")
    base_median = np.median(results["PyTorch"][0]) if "PyTorch" in results else float("nan")
    tail = min(100, batches)
    print(f"\nLeNet, Fashion-MNIST, {batches} batches of {BATCH}, SGD lr {LR}, {threads} threads")
    print(f"BLAS (NumPy): {blas_description()}")
    kernels = "on (numba)" if kp.ops.fast.enabled() else "off (NumPy only)"
    print(f"PyTorch {torch.__version__}, NumPy {np.__version__}; knetpy's compiled kernels: {kernels}\n")
    # The median batch time is robust to other work briefly sharing the machine; seconds are not.
    print(
        "| framework | seconds | ratio to PyTorch | median ms / batch (ratio) "
        f"| train loss (mean of last {tail} batches) | test accuracy |"
    )
    print("|---|---|---|---|---|---|")
    for name, (times, losses, acc) in results.items():
        seconds, median = sum(times), np.median(times)
        print(
            f"| {name} | {seconds:.2f} | {seconds / base:.2f} | {1e3 * median:.1f} ({median / base_median:.2f}) "
            f"| {np.mean(losses[-tail:]):.4f} | {acc:.4f} |"
        )
    main_rows = {"knetpy, layers + backward": "knetpy", "knetpy, kp.grad over ops": "knetpy ops + kp.grad"}
    for name, (times, losses, acc) in results.items():
        emit("LeNet", main_rows.get(name, name), sum(times), lenet_flops(batches * BATCH),
             median_batch=float(np.median(times)), result=f"loss {np.mean(losses[-tail:]):.4f}, test acc {acc:.3f}")


if __name__ == "__main__":
    main()
