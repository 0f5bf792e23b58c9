"""The five benchmarks on a GPU: knetpy on CuPy against PyTorch CUDA, in one run.

LinReg (13 -> 1, full batch of 506), Softmax (784 -> 10) and MLP (784 -> 64 relu -> 10) with batches
of 100, LeNet (conv 5x5x20, pool, conv 5x5x50, pool, dense 500, dense 10; batch 100) and CharLM
(embedding 65 -> 256, LSTM 256, dense 65; 128 streams x 100 characters). Each step is forward, loss,
backward and an SGD update; both frameworks train the same architecture on the same synthetic data
(random inputs and labels: the time of a step does not depend on what the data mean), which already
lives on the GPU. Times are the median of ``--repeat`` runs of ``--steps`` steps after a warm-up, with
the GPU synchronised before each clock reading.

    python benchmarks/gpu.py                 # every benchmark
    python benchmarks/gpu.py --only lenet    # one
    python benchmarks/gpu.py --steps 20      # a quick run

Without CuPy or a GPU it says so and exits with the "skipped" status; without PyTorch CUDA only
knetpy's column is filled in. Prints a markdown table with the GPU named.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import SKIPPED, emit, knetpy_lenet  # noqa: E402

BENCHMARKS = ["linreg", "softmax", "mlp", "lenet", "charlm"]
NAMES = {"linreg": "LinReg", "softmax": "Softmax", "mlp": "MLP", "lenet": "LeNet", "charlm": "CharLM"}
LR = {"linreg": 0.05, "softmax": 0.1, "mlp": 0.1, "lenet": 0.1, "charlm": 1.0}  # random labels: small steps stay finite


def data(name, seed=0):
    """Host arrays (x, y) for one step of benchmark ``name``."""
    g = np.random.default_rng(seed)
    if name == "linreg":
        return g.standard_normal((506, 13)).astype(np.float32), g.standard_normal((506, 1)).astype(np.float32)
    if name in ("softmax", "mlp"):
        return g.random((100, 784), dtype=np.float32), g.integers(0, 10, 100)
    if name == "lenet":
        return g.random((100, 1, 28, 28), dtype=np.float32), g.integers(0, 10, 100)
    return g.integers(0, 65, (128, 100)), g.integers(0, 65, (128, 100))


# -- knetpy on CuPy ------------------------------------------------------------------------------------
def knetpy_model(kp, name):
    L = kp.layers
    if name == "linreg":
        return kp.Sequential(L.Dense(1)), "mse"
    if name == "softmax":
        return kp.Sequential(L.Dense(10)), "cross_entropy"
    if name == "mlp":
        return kp.Sequential(L.Dense(64, activation="relu"), L.Dense(10)), "cross_entropy"
    if name == "lenet":
        return knetpy_lenet(kp), "cross_entropy"

    class CharLM(kp.Model):
        def __init__(self):
            super().__init__()
            self.embed, self.lstm, self.out = L.Embedding(65, 256), L.LSTM(256, return_sequences=True), L.Dense(65)

        def forward(self, x):
            h = self.lstm(self.embed(x))
            return self.out(kp.reshape(h, (-1, h.shape[-1])))

    return CharLM(), "cross_entropy"


def time_knetpy(name, steps, repeat):
    import cupy

    import knetpy as kp

    kp.set_seed(0)
    model, loss_name = knetpy_model(kp, name)
    loss_fn = kp.losses.get(loss_name)
    x, y = (cupy.asarray(a) for a in data(name))
    if name == "charlm":
        y = y.reshape(-1)
    model.to("cuda")
    model(x[:1])
    opt = kp.optim.SGD(model.parameters(), lr=LR[name])
    step = _training_step(model, loss_fn, opt, x, y)
    return _timed(step, steps, repeat, cupy.cuda.Device().synchronize, lambda loss: float(loss))


# -- PyTorch CUDA -------------------------------------------------------------------------------------
def torch_model(torch, name):
    nn = torch.nn
    if name == "linreg":
        return nn.Linear(13, 1), nn.functional.mse_loss
    ce = nn.functional.cross_entropy
    if name == "softmax":
        return nn.Linear(784, 10), ce
    if name == "mlp":
        return nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10)), ce
    if name == "lenet":
        return nn.Sequential(
            nn.Conv2d(1, 20, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(20, 50, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(800, 500), nn.ReLU(), nn.Linear(500, 10),
        ), ce

    class CharLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.lstm, self.out = nn.Embedding(65, 256), nn.LSTM(256, 256, batch_first=True), nn.Linear(256, 65)

        def forward(self, x):
            h, _ = self.lstm(self.embed(x))
            return self.out(h.reshape(-1, 256))

    return CharLM(), ce


def time_torch(name, steps, repeat):
    import torch

    torch.manual_seed(0)
    model, loss_fn = torch_model(torch, name)
    model = model.cuda()
    x, y = (torch.from_numpy(a).cuda() for a in data(name))
    if name == "charlm":
        y = y.reshape(-1)
    opt = torch.optim.SGD(model.parameters(), lr=LR[name])
    step = _training_step(model, loss_fn, opt, x, y)
    return _timed(step, steps, repeat, torch.cuda.synchronize, lambda loss: loss.item())


def _training_step(model, loss_fn, opt, x, y):
    """A training step on ``x``, ``y`` returning its loss; knetpy and PyTorch spell it alike."""

    def step():
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss

    return step


def _timed(step, steps, repeat, sync, to_float):
    """Median seconds of ``repeat`` runs of ``steps`` steps (after a warm-up run), and the last loss."""
    for _ in range(3):
        step()
    sync()
    runs = []
    for _ in range(repeat):
        tick = time.perf_counter()
        for _ in range(steps):
            loss = step()
        sync()
        runs.append(time.perf_counter() - tick)
    return statistics.median(runs), to_float(loss)


def _torch_cuda():
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=BENCHMARKS, help="run one benchmark")
    ap.add_argument("--steps", type=int, default=100, help="training steps per timed run (default 100)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs; the median is reported (default 3)")
    args = ap.parse_args(argv)
    import knetpy as kp

    gpu = kp.gpu()
    if gpu is None:
        print("skipped: no usable GPU (CuPy missing, or no device); pip install 'knetpy[gpu]' on a CUDA machine",
              file=sys.stderr)
        return SKIPPED
    has_torch = _torch_cuda()
    print(f"GPU: {gpu}")
    print(f"{args.steps} steps per run, median of {args.repeat}; PyTorch CUDA: {'yes' if has_torch else 'not available'}\n")
    lines = ["| benchmark | knetpy (CuPy) ms/step | PyTorch CUDA ms/step | ratio | knetpy loss | PyTorch loss |",
             "|---|---|---|---|---|---|"]
    for name in [args.only] if args.only else BENCHMARKS:
        k_sec, k_loss = time_knetpy(name, args.steps, args.repeat)
        emit(NAMES[name], "knetpy CuPy", k_sec / args.steps, gpu=gpu.name)
        if has_torch:
            t_sec, t_loss = time_torch(name, args.steps, args.repeat)
            emit(NAMES[name], "PyTorch CUDA", t_sec / args.steps, gpu=gpu.name)
            torch_cells = f"{1e3 * t_sec / args.steps:.3f} | {k_sec / t_sec:.2f} | {k_loss:.4f} | {t_loss:.4f}"
        else:
            torch_cells = f"n/a | n/a | {k_loss:.4f} | n/a"
        lines.append(f"| {NAMES[name]} | {1e3 * k_sec / args.steps:.3f} | {torch_cells} |")
        print(lines[-1], flush=True)
    print("\n" + "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
