"""Toy datasets generated on the spot (no download)."""

from __future__ import annotations

import numpy as np

from ..backend import get_dtype, rng


def spirals(n_per_class=100, n_classes=3, noise=0.2, seed=None):
    """The CS231n 2-D spirals: ``n_classes`` interleaved arms of ``n_per_class`` points each.

    Returns ``(x, y)``: x of shape (n_per_class * n_classes, 2) in the default dtype, integer labels y.
    A linear classifier cannot separate them; a small MLP can.
    """
    if n_per_class <= 0 or n_classes <= 0:
        raise ValueError(f"spirals: n_per_class and n_classes must be positive, got {n_per_class}, {n_classes}")
    g = np.random.default_rng(seed) if seed is not None else rng()
    xs, ys = [], []
    for c in range(n_classes):
        r = np.linspace(0.0, 1.0, n_per_class)
        t = np.linspace(c * 4.0, (c + 1) * 4.0, n_per_class) + g.standard_normal(n_per_class) * noise
        xs.append(np.stack([r * np.sin(t), r * np.cos(t)], axis=1))
        ys.append(np.full(n_per_class, c))
    return np.concatenate(xs).astype(get_dtype()), np.concatenate(ys).astype(np.int64)
