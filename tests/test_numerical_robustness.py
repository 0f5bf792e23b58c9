"""Numerical robustness not covered elsewhere: the loss functions at huge logits in float32, and
detect_anomaly naming the *first* op that goes wrong.

(The ops kp.softmax / logp / logsumexp / nll / bce / sigm / softplus / logistic at logits of 1e4 are
in test_torch_parity.py; clipping a zero gradient in test_optim.py and test_optim_api.py.)
"""

import warnings

import numpy as np
import pytest

import knetpy as kp

BIG = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [3e4, 2e4, 1e4], [5.0, -3e4, 1e4]], dtype=np.float32)
LABELS = np.array([1, 2, 0, 1])
PROBS = np.array([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0], [0.0, 0.5, 0.5], [0.1, 0.1, 0.8]], dtype=np.float32)
BINARY = (np.arange(BIG.size).reshape(BIG.shape) % 2).astype(np.float32)
POS_WEIGHT = np.array([0.5, 2.0, 3.0], dtype=np.float32)


def _cases(torch):
    F = torch.nn.functional
    t = torch.tensor
    return {
        "cross_entropy-labels": (
            lambda s: kp.losses.cross_entropy(s, LABELS),
            lambda s: F.cross_entropy(s, t(LABELS)),
        ),
        "cross_entropy-labels-none-smoothed": (
            lambda s: kp.losses.cross_entropy(s, LABELS, label_smoothing=0.1, reduction="none"),
            lambda s: F.cross_entropy(s, t(LABELS), label_smoothing=0.1, reduction="none"),
        ),
        "cross_entropy-probabilities": (
            lambda s: kp.losses.cross_entropy(s, PROBS, reduction="sum"),
            lambda s: F.cross_entropy(s, t(PROBS.astype(np.float64)), reduction="sum"),
        ),
        "bce_with_logits": (
            lambda s: kp.losses.bce_with_logits(s, BINARY, reduction="none"),
            lambda s: F.binary_cross_entropy_with_logits(s, t(BINARY.astype(np.float64)), reduction="none"),
        ),
        "bce_with_logits-pos_weight": (
            lambda s: kp.losses.bce_with_logits(s, BINARY, pos_weight=POS_WEIGHT),
            lambda s: F.binary_cross_entropy_with_logits(
                s, t(BINARY.astype(np.float64)), pos_weight=t(POS_WEIGHT.astype(np.float64))
            ),
        ),
        "sigmoid": (kp.sigmoid, torch.sigmoid),
        "softmax-activation": (kp.activations.get("softmax"), lambda s: torch.softmax(s, 1)),
    }


@pytest.mark.parametrize(
    "name",
    ["cross_entropy-labels", "cross_entropy-labels-none-smoothed", "cross_entropy-probabilities",
     "bce_with_logits", "bce_with_logits-pos_weight", "sigmoid", "softmax-activation"],
)
def test_losses_at_logits_of_1e4_in_float32_are_finite_and_match_torch(torch, name):
    kp_fn, torch_fn = _cases(torch)[name]
    s64 = torch.tensor(BIG.astype(np.float64), requires_grad=True)
    want = torch_fn(s64)
    (want_grad,) = torch.autograd.grad(want.sum(), [s64])
    want, want_grad = want.detach().numpy(), want_grad.numpy()
    # Overflow, division by zero and invalid operations raise; exp(-2e4) underflowing to 0 is the
    # correct float32 result and stays allowed.
    with np.errstate(over="raise", divide="raise", invalid="raise"), warnings.catch_warnings():
        warnings.simplefilter("error")
        out, grad = kp.value_and_grad(lambda s: kp.sum(kp_fn(s)))(BIG)
        value = kp_fn(BIG)
    value = np.asarray(value)
    assert value.dtype == np.float32 and grad.dtype == np.float32
    assert np.all(np.isfinite(value)) and np.all(np.isfinite(grad))
    # float32 spacing near 3e4 is about 2e-3: values carry that much absolute error
    np.testing.assert_allclose(value, want, rtol=1e-6, atol=1e-6 * max(1.0, np.abs(want).max()))
    np.testing.assert_allclose(grad, want_grad, rtol=1e-4, atol=1e-6)


# -- detect_anomaly ----------------------------------------------------------------------------------------
def test_detect_anomaly_names_the_first_op_whose_output_goes_bad_not_the_ones_after():
    x = kp.Param(np.array([0.5, -1.0, 2.0]))
    with kp.detect_anomaly(), np.errstate(all="ignore"):
        with pytest.raises(kp.AnomalyError, match=r"the output of op 'sqrt' contains NaN \(shape \(3,\)\)"):
            kp.sum(kp.exp(kp.sqrt(x * 2.0) + 1.0))  # sqrt of -2 is the first NaN; exp and sum would follow
        with pytest.raises(kp.AnomalyError, match=r"the output of op 'log' contains Inf"):
            kp.tanh(kp.log(x + 1.0))  # log(0) = -inf


def test_detect_anomaly_names_the_first_op_whose_gradient_goes_bad_in_backward_order():
    x = kp.Param(np.array([0.0, 1.0, 4.0]))
    with np.errstate(all="ignore"):
        loss = kp.sum(kp.tanh(kp.sqrt(x * 3.0)))  # finite forward; d sqrt/du at u = 0 is infinite
        with kp.detect_anomaly():
            with pytest.raises(kp.AnomalyError, match=r"the gradient for argument 0 of op 'sqrt' contains Inf"):
                loss.backward()  # 'mul', reached after 'sqrt', would see the Inf too but is never named
        assert x.grad is None  # nothing half-accumulated


def test_detect_anomaly_inside_fit_names_the_layer_op_that_meets_a_nan():
    model = kp.Sequential(kp.layers.Dense(4, activation="relu"), kp.layers.Dense(3))
    model.compile("cross_entropy", kp.optim.SGD(lr=0.1))
    x = np.ones((4, 3), np.float32)
    x[1, 2] = np.nan
    with kp.detect_anomaly(), np.errstate(all="ignore"):
        with pytest.raises(kp.AnomalyError, match=r"the output of op 'affine' contains NaN \(shape \(4, 4\)\)"):
            model.fit(x, np.array([0, 1, 2, 0]), verbose=0)
    assert all(np.all(np.isfinite(p.value)) for p in model.params.values())


def test_detect_anomaly_is_off_outside_its_block_and_restored_after_an_error():
    x = kp.Param(np.array([-1.0]))
    with np.errstate(all="ignore"):
        with pytest.raises(kp.AnomalyError):
            with kp.detect_anomaly():
                kp.sqrt(x)
        assert np.isnan(kp.sqrt(x).value).all()  # no error once the block is left
