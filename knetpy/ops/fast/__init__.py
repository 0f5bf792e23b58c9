"""Optional compiled kernels (numba) for the memory-bound glue between GEMMs.

Every kernel here has a NumPy reference in the op that uses it, and the tests hold the two equal.
The kernels run serially, inside the calling thread (knetpy's own worker threads split the batch
above them), so numba's thread pool never competes with BLAS or with knetpy's threads.

They are used when numba is installed (``pip install 'knetpy[fast]'``) and the arrays are NumPy
arrays; ``KNETPY_FAST=0`` in the environment, or ``set_fast(False)``, keeps every op on NumPy.
"""

from __future__ import annotations

import os

import numpy as np

try:
    import numba  # noqa: F401

    _have_numba = True
except ImportError:  # the optional [fast] extra is not installed
    _have_numba = False

_enabled = _have_numba and os.environ.get("KNETPY_FAST", "1") != "0"

#: The dtypes the kernels are compiled for.
FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def available() -> bool:
    """Whether numba is installed (the kernels can be compiled at all)."""
    return _have_numba


def enabled() -> bool:
    """Whether ops use the compiled kernels now."""
    return _enabled


def set_fast(on: bool) -> bool:
    """Turn the compiled kernels on or off for every op; returns the previous setting.

    Turning them on without numba raises ImportError naming the extra to install.
    """
    global _enabled
    if on and not _have_numba:
        raise ImportError("set_fast(True) needs numba: pip install 'knetpy[fast]'")
    prev, _enabled = _enabled, bool(on)
    return prev


def warm_up(winograd: bool = False) -> float:
    """Load the compiled kernels now instead of at the first op that uses them; returns the seconds
    it took (0.0 when numba is missing or the kernels are off).

    numba sets its compiler up when a process loads its first kernel (about 0.7 s on a 2-core machine,
    even from its on-disk cache); each kernel after that loads in milliseconds. A benchmark calls this
    before its clock starts, as JAX compiles its step before timing it; a program that trains for
    more than a few seconds need not. With ``winograd``, also the kernels only convolutional networks
    use (float32): the Winograd convolution's tile transforms, and the first layer's forward pass and
    filter gradient on planes (:mod:`.conv_planes`).
    """
    if not _enabled:
        return 0.0
    import time

    start = time.perf_counter()
    from . import conv, nll, pool

    for dtype in (np.float32, np.float64):  # the signatures ops call most: C-contiguous float arrays
        x = np.zeros((2, 3), dtype)
        labels = np.zeros(2, np.int64)
        lp = np.empty_like(x)
        nll.nll_rows(x, labels, lp, x.dtype.type(0))
        nll.nll_grad(lp, labels, x.dtype.type(1), np.empty_like(x))
        conv.bias_relu(x, np.zeros(3, dtype), True)
        image = np.zeros((1, 2, 2, 3), dtype)
        pool.max_pool2d(image, np.empty((1, 1, 1, 3), dtype), np.empty((1, 1, 1, 3), np.uint8), 2, 2, 2, 2, 0, 0)
    if winograd:  # Winograd's transforms, float32 only (the dtype convolutions take them in)
        from ..winograd import _coefficients as transform_coefficients
        from . import winograd as transforms

        bt, at, at_adj, b_adj = transform_coefficients(5, "float32")  # as the ops pass them
        tiles, sample = np.zeros((64, 1, 3), np.float32), np.zeros((1, 8, 8, 3), np.float32)
        transforms.input_tiles(sample, bt, 0, 1, 1, 1, 4, 0, 0, tiles)
        transforms.output_tiles(tiles, at, 4, 1, 1, sample[:, :4, :4].copy())
        transforms.output_tiles_adjoint(sample[:, :4, :4].copy(), at_adj, 4, 1, 1, tiles)
        transforms.input_tiles_adjoint(tiles, b_adj, 1, 1, 4, 0, 0, sample)
        from . import conv_planes

        pooled, code = np.zeros((1, 1, 1, 4), np.float32), np.zeros((1, 1, 1, 4), np.uint8)
        conv_planes.relu_pool_filter_grad_planes(pooled, code, pooled, np.zeros((1, 64), np.float32),
                                                 np.zeros((4, 1, 1, 1)), np.zeros(4), 2, 2, 2, 2, 2, 2, 0, 0, 2, 2,
                                                 1, 1, 0, 1)
        conv_planes.conv_relu_pool_planes(np.zeros((4, 64), np.float32), np.zeros((4, 1, 1, 1), np.float32),
                                          np.zeros(4, np.float32), pooled, code, 4, 2, 1, 1, 0, 1)
    return time.perf_counter() - start
