"""Point clouds for the classical labs: Gaussian blobs, linearly separable classes and XOR."""

from __future__ import annotations

import numpy as np

from ..backend import get_dtype, rng
from ._validate import check_int


def _generator(seed):
    return np.random.default_rng(seed) if seed is not None else rng()


def blobs(n_per_class=100, centers=3, dim=2, std=1.0, spread=10.0, seed=None, stretch=None):
    """``(x, y)``: ``n_per_class`` Gaussian points around each of ``centers`` centres, shuffled.

    ``centers`` is a count (the centres are drawn uniformly in [-spread, spread]^dim) or an array
    (K, dim). Each blob has standard deviation ``std``; ``stretch`` (a (dim, dim) matrix) multiplies
    every blob's offsets from its centre, for elongated clusters that k-means cuts wrongly and a
    Gaussian mixture with full covariances fits. x in the default dtype, y int64 labels 0..K-1.
    """
    who = "kp.datasets.blobs"
    n_per_class = check_int(n_per_class, "n_per_class", who)
    g = _generator(seed)
    if np.ndim(centers) == 0:
        k = check_int(centers, "centers", who)
        dim = check_int(dim, "dim", who)
        centres = g.uniform(-spread, spread, (k, dim))
    else:
        centres = np.asarray(centers, np.float64)
        if centres.ndim != 2:
            raise ValueError(f"{who}: centers must be a count or an array (K, dim), got shape {centres.shape}")
        k, dim = centres.shape
    if not std >= 0:
        raise ValueError(f"{who}: std must be a non-negative number, got {std!r}")
    offsets = g.standard_normal((k * n_per_class, dim)) * std
    if stretch is not None:
        stretch = np.asarray(stretch, np.float64)
        if stretch.shape != (dim, dim):
            raise ValueError(f"{who}: stretch must be a ({dim}, {dim}) matrix, got shape {stretch.shape}")
        offsets = offsets @ stretch.T
    y = np.repeat(np.arange(k), n_per_class)
    x = centres[y] + offsets
    order = g.permutation(len(x))
    return x[order].astype(get_dtype()), y[order].astype(np.int64)


def linearly_separable(n=200, dim=2, margin=0.1, seed=None):
    """``(x, y)``: ``n`` points uniform in [-1, 1]^dim labelled 0/1 by a random hyperplane through the
    origin, none closer to it than ``margin``: two classes a perceptron separates exactly."""
    who = "kp.datasets.linearly_separable"
    n, dim = check_int(n, "n", who), check_int(dim, "dim", who)
    if not 0 <= margin < 0.5:
        raise ValueError(f"{who}: margin must be in [0, 0.5), got {margin!r}")
    g = _generator(seed)
    normal = g.standard_normal(dim)
    normal /= np.linalg.norm(normal)
    kept = []
    while sum(map(len, kept)) < n:  # rejection sampling of the points inside the margin
        pts = g.uniform(-1, 1, (2 * n, dim))
        kept.append(pts[np.abs(pts @ normal) >= margin])
    x = np.concatenate(kept)[:n]
    return x.astype(get_dtype()), (x @ normal > 0).astype(np.int64)


def xor(n_per_corner=1, noise=0.0, seed=None):
    """``(x, y)``: the XOR problem, points at the corners (0, 0), (0, 1), (1, 0), (1, 1) (``n_per_corner``
    each, with Gaussian ``noise``) labelled by x1 XOR x2: no line separates the two classes."""
    who = "kp.datasets.xor"
    n_per_corner = check_int(n_per_corner, "n_per_corner", who)
    corners = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float64)
    y = np.tile(np.array([0, 1, 1, 0]), n_per_corner)
    x = np.tile(corners, (n_per_corner, 1))
    if noise:
        x = x + _generator(seed).standard_normal(x.shape) * noise
    return x.astype(get_dtype()), y.astype(np.int64)
