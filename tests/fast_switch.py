"""Shared by the tests of the compiled kernels: switching them on or off for a block."""

import contextlib

from knetpy.ops import fast


@contextlib.contextmanager
def kernels(on):
    """The compiled kernels on (True) or off (False) for the block, then as they were."""
    prev = fast.set_fast(on)
    try:
        yield
    finally:
        fast.set_fast(prev)
