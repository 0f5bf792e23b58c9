"""Dropout inside the recurrent ops and attention draws its masks on the device, not on the host.

A mask drawn with NumPy and copied over every step costs a host-to-device copy per step on a GPU;
on the strict backend that copy is counted in ``strict.transfers['to_device']``. On NumPy the masks
must stay what they were: the same draws from knetpy's generator.
"""

import numpy as np
import pytest
from test_rnn_ops import random_weights

import knetpy as kp
from knetpy import backend
from knetpy.testing import strict


def _lstm_step(x, weights, p):
    y, h, c = kp.rnnforw(weights, x, mode="lstm", dropout=p, training=True)
    loss = kp.sum(y * y) + kp.sum(h) + kp.sum(c)
    loss.backward()
    return y


def _attention_step(q, k, v, p):
    out, weights = kp.scaled_dot_product_attention(q, k, v, dropout=p)
    loss = kp.sum(out * out)
    loss.backward()
    return out, weights


def _lstm_setup(on_strict):
    rng = np.random.default_rng(1)
    weights = random_weights("lstm", 4, 3, L=2, rng=rng)
    x = rng.standard_normal((2, 5, 4))
    if on_strict:
        weights = [[None if p is None else kp.Param(strict.asarray(p.value)) for p in g] for g in weights]
        x = strict.asarray(x)
    return x, weights


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "reference"])
def test_lstm_dropout_makes_no_copy_to_the_device_per_step(fused):
    x, weights = _lstm_setup(on_strict=True)
    kp.set_seed(0)
    y = _lstm_step(x, weights, 0.5)  # the first step seeds the device generator
    strict.reset_transfers()
    for _ in range(3):
        y2 = _lstm_step(x, weights, 0.5)
    assert strict.transfers["to_device"] == 0, strict.transfers
    assert strict.transfers["to_host"] == 0, strict.transfer_log
    assert isinstance(y2.value, strict.StrictArray)
    # the masks differ from step to step, so the outputs do
    assert not np.array_equal(strict.asnumpy(y.value), strict.asnumpy(y2.value))


def test_attention_dropout_makes_no_copy_to_the_device_per_step():
    rng = np.random.default_rng(2)
    q, k, v = (kp.Param(strict.asarray(rng.standard_normal(s))) for s in [(2, 4, 5), (2, 6, 5), (2, 6, 3)])
    kp.set_seed(0)
    _attention_step(q, k, v, 0.3)
    strict.reset_transfers()
    for _ in range(3):
        _, weights = _attention_step(q, k, v, 0.3)
    assert strict.transfers["to_device"] == 0, strict.transfers
    assert strict.transfers["to_host"] == 0, strict.transfer_log
    w = strict.asnumpy(weights.value)
    assert (w == 0).any() and (w > 0).any()  # some weights dropped, the rest kept (scaled up)


def test_device_draws_follow_the_seed():
    rng = np.random.default_rng(2)
    q, k, v = (strict.asarray(rng.standard_normal(s)) for s in [(2, 4, 5), (2, 6, 5), (2, 6, 3)])
    runs = []
    for _ in range(2):
        kp.set_seed(11)
        runs.append(strict.asnumpy(kp.scaled_dot_product_attention(q, k, v, dropout=0.5)[1]))
    np.testing.assert_array_equal(runs[0], runs[1])


def test_numpy_lstm_dropout_masks_are_the_generators_draws():
    x, weights = _lstm_setup(on_strict=False)
    kp.set_seed(4)
    got = kp.rnnforw(weights, x, mode="lstm", dropout=0.5, training=True)[0].value
    # by hand: layer one, then the mask drawn from knetpy's generator, then layer two
    kp.set_seed(4)
    y1 = kp.rnnforw(weights[:1], x, mode="lstm")[0].value
    keep = backend.rng().random(y1.shape) >= 0.5
    want = kp.rnnforw(weights[1:], y1 * (keep / 0.5).astype(y1.dtype), mode="lstm")[0].value
    np.testing.assert_array_equal(got, want)


def test_numpy_attention_dropout_masks_are_the_generators_draws():
    rng = np.random.default_rng(3)
    q, k, v = (rng.standard_normal(s).astype(np.float32) for s in [(2, 4, 5), (2, 6, 5), (2, 6, 3)])
    kp.set_seed(9)
    out, weights = kp.scaled_dot_product_attention(q, k, v, dropout=0.25)
    plain = kp.scaled_dot_product_attention(q, k, v)[1]
    kp.set_seed(9)
    draws = backend.rng().random(plain.shape, dtype=np.float32)
    want = plain * np.where(draws >= 0.25, np.float32(1 / 0.75), np.float32(0))
    np.testing.assert_array_equal(weights, want)  # (raw arrays in, raw arrays out)
    np.testing.assert_array_equal(out, want @ v)
