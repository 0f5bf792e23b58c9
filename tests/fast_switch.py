"""Shared by the tests of the compiled kernels and the Winograd convolutions: switching them on or off for a block."""

import contextlib

from knetpy.ops import fast, winograd


@contextlib.contextmanager
def _switched(setter, on):
    prev = setter(on)
    try:
        yield
    finally:
        setter(prev)


def kernels(on):
    """The compiled kernels on (True) or off (False) for the block, then as they were."""
    return _switched(fast.set_fast, on)


def winograd_convolutions(on):
    """The Winograd path on (True) or off (False) for the block, then as it was."""
    return _switched(winograd.set_winograd, on)
