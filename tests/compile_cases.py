"""Helpers of the kp.compile tests: bit-for-bit comparison of a replay's results with eager mode's."""

import numpy as np

import knetpy as kp


def assert_same_bits(a, b):
    """Bit-for-bit equality of two pytrees of arrays (dtype and shape included)."""
    la, lb = kp.tree_flatten(a)[0], kp.tree_flatten(b)[0]
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        x, y = np.asarray(getattr(x, "value", x)), np.asarray(getattr(y, "value", y))
        assert x.dtype == y.dtype and x.shape == y.shape
        assert x.tobytes() == y.tobytes()
