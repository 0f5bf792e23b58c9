"""Shared by the tests of the compiled kernels and the Winograd convolutions: switching them, or knetpy's
threads, for a block."""

import contextlib

import knetpy as kp
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


@contextlib.contextmanager
def threads(n):
    """knetpy's threads set to n for the block, then back to what they were (automatic or a count)."""
    auto, prev = kp.parallel.is_auto(), kp.get_num_threads()
    kp.set_num_threads(n)
    try:
        yield
    finally:
        kp.set_num_threads("auto" if auto else prev)
