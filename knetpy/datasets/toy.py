"""Toy datasets generated on the spot (no download)."""

from __future__ import annotations

import numpy as np

from ..backend import get_dtype, rng
from ._validate import check_int


def spirals(n_per_class=100, n_classes=3, noise=0.2, seed=None, shuffle=True):
    """The CS231n 2-D spirals: ``n_classes`` interleaved arms of ``n_per_class`` points each.

    Returns ``(x, y)``: x of shape (n_per_class * n_classes, 2) in the default dtype, int64 labels y.
    A linear classifier cannot separate them; a small MLP can. The points come in random order
    (``shuffle=False``: class by class), so that any slice, such as ``fit``'s ``validation_split``,
    holds every class. The noise and the order are drawn from ``seed``, or from knetpy's generator
    (``kp.set_seed``) without one.
    """
    n_per_class = check_int(n_per_class, "n_per_class", "kp.datasets.spirals")
    n_classes = check_int(n_classes, "n_classes", "kp.datasets.spirals")
    if not noise >= 0:  # also refuses NaN
        raise ValueError(f"kp.datasets.spirals: noise must be a non-negative number, got {noise!r}")
    g = np.random.default_rng(seed) if seed is not None else rng()
    xs, ys = [], []
    for c in range(n_classes):
        r = np.linspace(0.0, 1.0, n_per_class)
        t = np.linspace(c * 4.0, (c + 1) * 4.0, n_per_class) + g.standard_normal(n_per_class) * noise
        xs.append(np.stack([r * np.sin(t), r * np.cos(t)], axis=1))
        ys.append(np.full(n_per_class, c))
    x, y = np.concatenate(xs).astype(get_dtype()), np.concatenate(ys).astype(np.int64)
    if shuffle:
        order = g.permutation(len(x))
        x, y = x[order], y[order]
    return x, y
