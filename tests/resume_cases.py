"""A small training run with every source of state (Dropout, BatchNorm, Adam, shuffling, a schedule).

Used in-process by the resume and determinism tests, and as a script by the ones that need a
separate (or killed) process::

    python resume_cases.py --seed 1 --epochs 4 --out result.npz [--checkpoint run.ckpt --resume]
        [--checkpoint-every 3] [--hang-at-step 20]

``--hang-at-step n`` prints ``READY`` after optimizer step ``n`` and then waits, to be killed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

import knetpy as kp
from knetpy.layers import Activation, BatchNorm, Dense, Dropout

N_SAMPLES = 120
BATCH_SIZE = 16  # 8 batches per epoch, the last one partial


def data():
    """Three noisy classes in 5 dimensions, from a fixed generator (not knetpy's)."""
    g = np.random.default_rng(2024)
    x = g.standard_normal((N_SAMPLES, 5)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 0.8)
    return x, y


def make_model(seed, lr=0.01):
    """A fresh, compiled model, its weights drawn after ``kp.set_seed(seed)``."""
    kp.set_seed(seed)
    model = kp.Sequential(
        Dense(16), BatchNorm(), Activation("relu"), Dropout(0.3), Dense(16, activation="tanh"), Dropout(0.2), Dense(3)
    )
    model.compile("cross_entropy", kp.optim.Adam(lr=lr), metrics=["accuracy"])
    return model


def schedule_callback(model):
    """A learning-rate schedule on the model's optimizer: halve the rate every epoch."""
    return kp.callbacks.LearningRateScheduler(kp.optim.schedules.StepLR(model.optimizer, step_size=1, gamma=0.5))


def train(seed, epochs, callbacks=(), **fit_kw):
    """Train a fresh model; returns it and its History."""
    model = make_model(seed)
    x, y = data()
    cbs = [schedule_callback(model), *callbacks]
    history = model.fit(
        x, y, epochs=epochs, batch_size=BATCH_SIZE, shuffle=True, validation_data=(x[:30], y[:30]),
        callbacks=cbs, verbose=0, **fit_kw,
    )
    return model, history


def snapshot(model):
    """Every parameter and state array, copied, by name."""
    return {k: np.array(v, copy=True) for k, v in model.get_weights().items()}


class HangAtStep(kp.callbacks.Callback):
    """Print READY after optimizer step ``step``, then wait to be killed."""

    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_batch_end(self, batch, logs=None):
        if self.model.optimizer.iterations == self.step:
            print("READY", flush=True)
            time.sleep(120)


def _main(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--checkpoint")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--checkpoint-every", type=int)
    parser.add_argument("--hang-at-step", type=int)
    args = parser.parse_args(argv)

    callbacks = [] if args.hang_at_step is None else [HangAtStep(args.hang_at_step)]
    fit_kw = {}
    if args.checkpoint:
        fit_kw = {"checkpoint": args.checkpoint, "resume": args.resume, "checkpoint_every": args.checkpoint_every}
    model, history = train(args.seed, args.epochs, callbacks, **fit_kw)
    np.savez(args.out, **snapshot(model))
    with open(args.out + ".json", "w") as f:
        json.dump({"history": history.history, "epoch": history.epoch}, f)


if __name__ == "__main__":
    _main(sys.argv[1:])
