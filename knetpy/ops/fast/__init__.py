"""Optional compiled kernels (numba) for the memory-bound glue between GEMMs.

Every kernel here has a NumPy reference in the op that uses it, and the tests hold the two equal.
The kernels run serially, inside the calling thread (knetpy's own worker threads split the batch
above them), so numba's thread pool never competes with BLAS or with knetpy's threads.

They are used when numba is installed (``pip install 'knetpy[fast]'``) and the arrays are NumPy
arrays; ``KNETPY_FAST=0`` in the environment, or ``set_fast(False)``, keeps every op on NumPy.
"""

from __future__ import annotations

import os

try:
    import numba  # noqa: F401

    _have_numba = True
except ImportError:  # the optional [fast] extra is not installed
    _have_numba = False

_enabled = _have_numba and os.environ.get("KNETPY_FAST", "1") != "0"


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
