"""A compiled step checks class labels on every replay, as the eager op does."""

import numpy as np
import pytest

import knetpy as kp


@pytest.mark.parametrize("bad", [-1, 3])
def test_replayed_nll_refuses_labels_out_of_range(bad):
    rng = np.random.default_rng(0)
    w = kp.Param(rng.standard_normal((4, 3)).astype(np.float32))

    def loss(w, x, y):
        return kp.nll(x @ w, y)

    step = kp.compile(kp.grad(loss))
    x = rng.standard_normal((5, 4)).astype(np.float32)
    y = np.array([0, 1, 2, 0, 1])
    for _ in range(4):  # trace, check, replay
        step(w, x, y)
    assert step.replays >= 1
    y_bad = y.copy()
    y_bad[2] = bad
    with pytest.raises(ValueError, match=f"label {bad} is out of range for 3 classes"):
        step(w, x, y_bad)
