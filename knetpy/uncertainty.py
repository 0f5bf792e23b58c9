"""Predictive uncertainty from dropout: Monte Carlo dropout (Gal & Ghahramani, 2016)."""

from __future__ import annotations

from contextlib import ExitStack

import numpy as np

from .autograd import Tensor, no_grad
from .backend import to_numpy
from .layers.base import Layer, thread_mode

__all__ = ["mc_dropout_predict", "dropout_layers"]


def dropout_layers(model):
    """Every layer inside ``model`` (itself included) whose class name has "Dropout" in it."""
    found, stack, seen = [], [model], set()
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        if "Dropout" in type(layer).__name__:
            found.append(layer)
        stack.extend(layer.layers())
    return found


def mc_dropout_predict(model, x, T=50, *, batch_size=1024, return_samples=False):
    """The predictive mean and standard deviation of ``model`` over ``T`` passes with dropout on.

    Only the dropout layers run in training mode, and only in the calling thread (batch norm and the
    rest stay in inference mode; the model's own mode is never changed, so other threads may use it
    meanwhile). The ``T`` passes are one forward over ``x`` repeated ``T`` times, ``batch_size`` rows at a
    time, each row with its own dropout mask. Returns ``(mean, std)`` with the output's shape, or
    ``(mean, std, samples)`` with ``samples`` of shape (T, N, ...) when ``return_samples``. The draws come
    from :func:`knetpy.backend.rng` (seed it with ``kp.set_seed``).
    """
    who = "mc_dropout_predict"
    if not isinstance(model, Layer):
        raise TypeError(f"{who}: model must be a knetpy layer or model, got {type(model).__name__}")
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 2:
        raise ValueError(f"{who}: T (the number of stochastic passes) must be an integer >= 2, got {T!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"{who}: batch_size must be a positive integer, got {batch_size!r}")
    drops = dropout_layers(model)
    if not drops:
        raise ValueError(f"{who}: the model has no dropout layer, so all {T} passes would be the same")
    xv = x.value if isinstance(x, Tensor) else np.asarray(x)
    if xv.ndim < 1 or len(xv) == 0:
        raise ValueError(f"{who}: x must be a non-empty batch (N, ...), got shape {xv.shape}")
    n = len(xv)
    tiled = np.concatenate([xv] * int(T), axis=0)  # pass t is rows t*n .. (t+1)*n
    outs = []
    with ExitStack() as stack:
        stack.enter_context(no_grad())
        stack.enter_context(thread_mode(model, False))
        for layer in drops:  # inner modes override the outer one for these layers only
            stack.enter_context(thread_mode(layer, True))
        for start in range(0, len(tiled), int(batch_size)):
            out = model(tiled[start:start + int(batch_size)])
            outs.append(to_numpy(out.value if isinstance(out, Tensor) else out))
    samples = np.concatenate(outs, axis=0).reshape((int(T), n) + outs[0].shape[1:])
    mean, std = samples.mean(axis=0), samples.std(axis=0)
    return (mean, std, samples) if return_samples else (mean, std)
