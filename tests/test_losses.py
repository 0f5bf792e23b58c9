"""Losses: PyTorch parity for every reduction (values and gradients, float64), gradcheck, errors."""

import json

import numpy as np
import pytest

import knetpy as kp
from knetpy import losses as L

RTOL, ATOL = 1e-6, 1e-12
REDUCTIONS = ("mean", "sum", "none")


def assert_parity(torch, kp_loss, torch_loss, args, grad_args=(0,)):
    """Loss values and gradients (for a random cotangent when unreduced) agree with PyTorch."""
    targs = [torch.tensor(a, requires_grad=i in grad_args) for i, a in enumerate(args)]
    want = torch_loss(torch, *targs)
    cot = np.random.default_rng(5).standard_normal(tuple(want.shape))
    (got, grads) = kp.value_and_grad(lambda *a: kp.sum(kp_loss(*a) * cot), argnums=grad_args)(*args)
    np.testing.assert_allclose(kp_loss(*args), want.detach().numpy(), rtol=RTOL, atol=ATOL)
    assert np.shape(kp_loss(*args)) == tuple(want.shape)
    tgrads = torch.autograd.grad((want * torch.tensor(cot)).sum(), [targs[i] for i in grad_args])
    for g, tg in zip(grads, tgrads):
        np.testing.assert_allclose(g, tg.numpy(), rtol=RTOL, atol=ATOL)


def _rng():
    return np.random.default_rng(2024)


def _probs(shape, axis=1):
    e = np.exp(_rng().standard_normal(shape))
    return e / e.sum(axis=axis, keepdims=True)


# -- regression ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_regression_losses_match_pytorch(torch, reduction):
    r = _rng()
    p, t = r.standard_normal((6, 3)), r.standard_normal((6, 3))
    F = torch.nn.functional
    assert_parity(torch, lambda a, b: L.mse(a, b, reduction=reduction),
                  lambda T, a, b: F.mse_loss(a, b, reduction=reduction), (p, t), (0, 1))
    assert_parity(torch, lambda a, b: L.mae(a, b, reduction=reduction),
                  lambda T, a, b: F.l1_loss(a, b, reduction=reduction), (p, t), (0, 1))
    for delta in (1.0, 0.4):
        assert_parity(torch, lambda a, b, d=delta: L.huber(a, b, delta=d, reduction=reduction),
                      lambda T, a, b, d=delta: F.huber_loss(a, b, reduction=reduction, delta=d), (p, t), (0, 1))


def test_regression_worked_values():
    p, t = np.array([1.0, 2.0, 4.0]), np.array([0.0, 2.0, 1.0])
    assert L.mse(p, t) == pytest.approx((1 + 0 + 9) / 3)
    assert L.mae(p, t, reduction="sum") == pytest.approx(4.0)
    # huber with delta 1: 0.5 * 1**2 for d = 1 (boundary: quadratic side), 1 * (3 - 0.5) for d = 3
    np.testing.assert_allclose(L.huber(p, t, reduction="none"), [0.5, 0.0, 2.5])


# -- binary ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_matches_pytorch(torch, reduction):
    r = _rng()
    p = r.uniform(0.02, 0.98, (5, 4))
    t = r.uniform(0, 1, (5, 4))
    assert_parity(torch, lambda a, b: L.bce(a, b, reduction=reduction),
                  lambda T, a, b: T.nn.functional.binary_cross_entropy(a, b, reduction=reduction), (p, t), (0, 1))


def test_bce_clamps_the_log_like_pytorch(torch):
    p = np.array([0.0, 1.0, 0.0, 1.0, 0.5])
    t = np.array([1.0, 0.0, 0.0, 1.0, 1.0])
    want = torch.nn.functional.binary_cross_entropy(torch.tensor(p), torch.tensor(t), reduction="none")
    np.testing.assert_allclose(L.bce(p, t, reduction="none"), want.numpy())
    assert L.bce(p, t, reduction="none")[0] == 100.0  # log 0 clamped at -100


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_with_logits_matches_pytorch(torch, reduction):
    r = _rng()
    x = r.standard_normal((5, 3)) * 4
    t = (r.uniform(size=(5, 3)) > 0.5).astype(float)
    F = torch.nn.functional
    assert_parity(torch, lambda a, b: L.bce_with_logits(a, b, reduction=reduction),
                  lambda T, a, b: F.binary_cross_entropy_with_logits(a, b, reduction=reduction), (x, t), (0, 1))
    pw = np.array([0.5, 2.0, 3.0])
    assert_parity(
        torch,
        lambda a, b: L.bce_with_logits(a, b, pos_weight=pw, reduction=reduction),
        lambda T, a, b: F.binary_cross_entropy_with_logits(a, b, pos_weight=T.tensor(pw), reduction=reduction),
        (x, t),
        (0, 1),
    )


def test_bce_with_logits_is_stable_for_huge_logits_in_float32():
    x = np.array([[1e4], [-1e4], [30.0]], dtype=np.float32)
    t = np.array([[0.0], [1.0], [1.0]], dtype=np.float32)
    out = L.bce_with_logits(x, t, reduction="none")
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[1e4], [1e4], [np.log1p(np.exp(-30.0))]], rtol=1e-6)


# -- multiclass -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("shape", [(7, 5), (3, 4, 2, 3)])
def test_cross_entropy_with_labels_matches_pytorch(torch, reduction, smoothing, shape):
    r = _rng()
    x = r.standard_normal(shape) * 2
    y = r.integers(0, shape[1], size=shape[:1] + shape[2:])
    assert_parity(
        torch,
        lambda a, b: L.cross_entropy(a, b, label_smoothing=smoothing, reduction=reduction),
        lambda T, a, b: T.nn.functional.cross_entropy(a, b, reduction=reduction, label_smoothing=smoothing),
        (x, y),
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_with_probabilities_matches_pytorch(torch, reduction, smoothing):
    x = _rng().standard_normal((3, 4, 5))
    p = _probs((3, 4, 5))
    onehot = np.eye(4)[np.array([0, 3, 1])]
    assert_parity(
        torch,
        lambda a, b: L.cross_entropy(a, b, label_smoothing=smoothing, reduction=reduction),
        lambda T, a, b: T.nn.functional.cross_entropy(a, b, reduction=reduction, label_smoothing=smoothing),
        (x, p),
        (0, 1),
    )
    x2 = _rng().standard_normal((3, 4))
    assert_parity(
        torch,
        lambda a, b: L.cross_entropy(a, b, label_smoothing=smoothing, reduction=reduction),
        lambda T, a, b: T.nn.functional.cross_entropy(a, b, reduction=reduction, label_smoothing=smoothing),
        (x2, onehot),
    )


def test_cross_entropy_uses_the_fused_nll_primitive_and_agrees_with_kp_nll():
    x = kp.Param(_rng().standard_normal((8, 10)).astype(np.float32))
    y = np.arange(8) % 10
    loss = L.cross_entropy(x, y)
    assert loss._prim.name == "_nll"  # one fused op, not a chain of log-softmax, gather and mean
    assert loss.dtype == np.float32
    np.testing.assert_allclose(loss.value, kp.nll(x.value, y), rtol=1e-6)
    # one-hot targets give the same loss and gradient as the labels
    g_labels = kp.grad(lambda a: L.cross_entropy(a, y))(x.value)
    g_onehot = kp.grad(lambda a: L.cross_entropy(a, np.eye(10, dtype=np.float32)[y]))(x.value)
    np.testing.assert_allclose(g_labels, g_onehot, rtol=1e-5, atol=1e-7)


def test_cross_entropy_class_axis_can_be_last():
    x = _rng().standard_normal((2, 5, 3))  # (N, T, C)
    y = _rng().integers(0, 3, (2, 5))
    np.testing.assert_allclose(L.cross_entropy(x, y, axis=-1), L.cross_entropy(np.moveaxis(x, -1, 1), y))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_nll_from_log_probabilities_matches_pytorch(torch, reduction):
    lp = np.log(_probs((6, 4)))
    y = np.array([0, 3, 1, 1, 2, 0])
    assert_parity(torch, lambda a, b: L.nll(a, b, reduction=reduction),
                  lambda T, a, b: T.nn.functional.nll_loss(a, b, reduction=reduction), (lp, y))
    lp3 = np.log(_probs((2, 4, 3)))
    y3 = np.array([[0, 3, 1], [2, 2, 0]])
    assert_parity(torch, lambda a, b: L.nll(a, b, reduction=reduction),
                  lambda T, a, b: T.nn.functional.nll_loss(a, b, reduction=reduction), (lp3, y3))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("squared", [False, True])
def test_hinge_is_pytorch_multi_margin_times_classes(torch, reduction, squared):
    s = _rng().standard_normal((6, 5))
    y = np.array([0, 4, 1, 1, 3, 2])
    C = s.shape[1]

    def ref(T, a, b):
        per = T.nn.functional.multi_margin_loss(a, b, p=2 if squared else 1, margin=1.5, reduction="none") * C
        return {"mean": per.mean(), "sum": per.sum(), "none": per}[reduction]

    assert_parity(torch, lambda a, b: L.hinge(a, b, margin=1.5, squared=squared, reduction=reduction), ref, (s, y))


def test_hinge_worked_example():
    # CS231n: scores (3.2, 5.1, -1.7) for the correct class 0: max(0, 5.1 - 3.2 + 1) + max(0, -1.7 - 3.2 + 1)
    s = np.array([[3.2, 5.1, -1.7], [1.3, 4.9, 2.0], [2.2, 2.5, -3.1]])
    np.testing.assert_allclose(L.hinge(s, np.array([0, 1, 2]), reduction="none"), [2.9, 0.0, 12.9])
    np.testing.assert_allclose(L.hinge(s, np.array([0, 1, 2])), (2.9 + 0 + 12.9) / 3)


# -- distributions --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_hellinger_matches_a_pytorch_reference(torch, reduction):
    p, q = _probs((5, 4)), _probs((5, 4)) ** 2
    q /= q.sum(1, keepdims=True)

    def ref(T, a, b):
        per = T.sqrt(0.5 * ((T.sqrt(a) - T.sqrt(b)) ** 2).sum(1))
        return {"mean": per.mean(), "sum": per.sum(), "none": per}[reduction]

    assert_parity(torch, lambda a, b: L.hellinger(a, b, reduction=reduction), ref, (p, q), (0, 1))


def test_hellinger_worked_values_and_zero_gradient_at_equality():
    p = np.array([[1.0, 0.0], [0.5, 0.5], [0.3, 0.7]])
    t = np.array([[0.0, 1.0], [0.5, 0.5], [0.3, 0.7]])
    np.testing.assert_allclose(L.hellinger(p, t, reduction="none"), [1.0, 0.0, 0.0], atol=1e-15)
    g = kp.grad(lambda a: L.hellinger(a, t[1:], reduction="sum"))(p[1:])
    np.testing.assert_array_equal(g, 0.0)  # not NaN where the distance is 0


@pytest.mark.parametrize("reduction", ["mean", "batchmean", "sum", "none"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div_matches_pytorch(torch, reduction, log_target):
    lp = np.log(_probs((4, 5)))
    t = _probs((4, 5)) ** 3
    t /= t.sum(1, keepdims=True)
    t[0, 1] = 0.0  # a zero target probability contributes 0, not NaN
    t[0] /= t[0].sum()
    if log_target:
        t = np.log(_probs((4, 5)))
    torch_reduction = "batchmean" if reduction == "mean" else reduction
    assert_parity(
        torch,
        lambda a, b: L.kl_div(a, b, log_target=log_target, reduction=reduction),
        lambda T, a, b: T.nn.functional.kl_div(a, b, reduction=torch_reduction, log_target=log_target),
        (lp, t),
        (0, 1) if log_target else (0,),
    )


def test_kl_div_of_a_distribution_with_itself_is_zero():
    p = _probs((3, 6))
    assert L.kl_div(np.log(p), p) == pytest.approx(0.0, abs=1e-15)


# -- metric learning ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_contrastive_matches_a_pytorch_reference(torch, reduction):
    r = _rng()
    a, b = r.standard_normal((6, 3)), r.standard_normal((6, 3)) * 0.4
    same = np.array([1, 0, 1, 0, 0, 1])
    margin = 2.0

    def ref(T, x1, x2):
        d = ((x1 - x2) ** 2).sum(1).sqrt()
        s = T.tensor(same, dtype=T.float64)
        per = 0.5 * (s * d**2 + (1 - s) * T.clamp(margin - d, min=0) ** 2)
        return {"mean": per.mean(), "sum": per.sum(), "none": per}[reduction]

    assert_parity(torch, lambda x1, x2: L.contrastive(x1, x2, same, margin=margin, reduction=reduction), ref,
                  (a, b), (0, 1))


def test_contrastive_worked_values():
    x1 = np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    x2 = np.array([[3.0, 4.0], [3.0, 4.0], [0.6, 0.8], [1.0, 1.0]])
    same = np.array([1, 0, 0, 0])
    # d = 5, 5, 1, 0: similar -> 25 / 2; dissimilar beyond the margin 2 -> 0; inside -> (2 - d)**2 / 2
    np.testing.assert_allclose(L.contrastive(x1, x2, same, margin=2.0, reduction="none"), [12.5, 0.0, 0.5, 2.0])
    # identical embeddings: finite (zero) gradient, not NaN
    g = kp.grad(lambda a: L.contrastive(a, x2[3:], same[3:], margin=2.0))(x1[3:])
    assert np.isfinite(g).all()


# -- gradcheck ----------------------------------------------------------------------------------------------
def test_gradcheck_every_loss():
    r = _rng()
    p, t = r.standard_normal((4, 3)), r.standard_normal((4, 3))
    probs, probs2 = _probs((4, 3)), _probs((4, 3)) ** 2
    probs2 /= probs2.sum(1, keepdims=True)
    y = np.array([2, 0, 1, 1])
    assert kp.gradcheck(L.mse, p, t)
    assert kp.gradcheck(L.mae, p, t)
    assert kp.gradcheck(lambda a, b: L.huber(a, b, delta=0.5), p, t)
    assert kp.gradcheck(L.bce, probs, probs2)
    assert kp.gradcheck(lambda a, b: L.bce_with_logits(a, b, pos_weight=2.0), p, probs)
    assert kp.gradcheck(lambda a: L.cross_entropy(a, y, label_smoothing=0.1), p)
    assert kp.gradcheck(lambda a: L.cross_entropy(a, y, reduction="none"), p)
    assert kp.gradcheck(lambda a, b: L.cross_entropy(a, b), p, probs)
    assert kp.gradcheck(lambda a: L.nll(a, y), np.log(probs))
    assert kp.gradcheck(lambda a: L.hinge(a, y, squared=True), p)
    assert kp.gradcheck(L.hellinger, probs, probs2)
    assert kp.gradcheck(L.kl_div, np.log(probs), probs2)
    assert kp.gradcheck(lambda a, b: L.contrastive(a, b, np.array([1, 0, 0, 1])), p, t)


def test_second_derivative_of_cross_entropy():
    x = _rng().standard_normal((3, 4))
    y = np.array([0, 3, 2])
    assert kp.gradcheck(lambda a: kp.sum(kp.grad(lambda b: L.cross_entropy(b, y))(a) ** 2), x)


# -- checks and errors -----------------------------------------------------------------------------------------
def test_shape_mismatch_is_an_error_not_a_broadcast():
    with pytest.raises(ValueError, match=r"prediction of shape \(5, 1\) and target of shape \(5,\) differ"):
        L.mse(np.zeros((5, 1)), np.zeros(5))
    for fn in (L.mae, L.huber, L.bce, L.bce_with_logits, L.kl_div):
        with pytest.raises(ValueError, match="differ"):
            fn(np.full((5,), 0.5), np.full((5, 1), 0.5))
    with pytest.raises(ValueError, match=r"need labels of shape \(4,\)"):
        L.cross_entropy(np.zeros((4, 3)), np.zeros((4, 1), dtype=int))


def test_labels_must_be_integers_in_range():
    x = np.zeros((3, 4))
    with pytest.raises(TypeError, match="class labels must be integers"):
        L.cross_entropy(x, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="label 4 is out of range for 4 classes"):
        L.cross_entropy(x, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match="label -1 is out of range"):
        L.nll(x, np.array([0, -1, 1]))
    with pytest.raises(ValueError, match="label 9 is out of range"):
        L.hinge(x, np.array([0, 9, 1]))
    with pytest.raises(ValueError, match=r"class scores of shape \(N, C\)"):
        L.cross_entropy(np.zeros(4), np.array([1]))


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="did you mean 'mean'"):
        L.mse(np.zeros(3), np.zeros(3), reduction="maen")
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]"):
        L.bce(np.array([0.5, 1.5]), np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="label_smoothing"):
        L.cross_entropy(np.zeros((2, 3)), np.array([0, 1]), label_smoothing=1.5)
    with pytest.raises(ValueError, match="delta must be positive"):
        L.huber(np.zeros(2), np.zeros(2), delta=0)
    with pytest.raises(ValueError, match="one flag per pair"):
        L.contrastive(np.zeros((3, 2)), np.zeros((3, 2)), np.array([1, 0]))
    with pytest.raises(ValueError, match="1 \\(similar pair\\) or 0"):
        L.contrastive(np.zeros((2, 2)), np.zeros((2, 2)), np.array([1, 2]))
    with pytest.raises(ValueError, match="pos_weight"):
        L.bce_with_logits(np.zeros((2, 3)), np.zeros((2, 3)), pos_weight=np.ones(2))
    with pytest.raises(TypeError, match="floating point"):
        L.mse(np.zeros(3, dtype=int), np.zeros(3))


def test_float32_in_float32_out_and_targets_are_cast():
    p = np.linspace(0.1, 0.9, 6, dtype=np.float32).reshape(3, 2)
    t64 = np.ones((3, 2))  # a float64 target must not promote the loss
    for fn in (L.mse, L.mae, L.huber, L.bce, L.bce_with_logits, L.kl_div, L.hellinger):
        assert fn(p, t64).dtype == np.float32, fn.__name__
    assert L.cross_entropy(p, np.array([0, 1, 1])).dtype == np.float32
    assert L.mse(p, 0.5).dtype == np.float32  # a Python number is fine


def test_losses_by_name():
    assert L.get("cross_entropy") is L.cross_entropy
    assert L.get("Mean-Squared-Error") is L.mse
    h = L.get("huber", delta=0.5)
    assert h(np.array([2.0]), np.array([0.0])) == pytest.approx(0.5 * (2 - 0.25))
    with pytest.raises(ValueError, match="did you mean 'cross_entropy'"):
        L.get("cross_entopy")
    with pytest.raises(TypeError, match="no parameter 'margn'"):
        L.get("hinge", margn=2)
    assert json.loads(json.dumps(L.serialize(h))) == {"name": "huber", "delta": 0.5}


# -- cross_entropy with class weights and an ignored label --------------------------------------------------
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("eps", [0.0, 0.2])
@pytest.mark.parametrize("use_weight,ignore", [(True, None), (False, -100), (True, -100), (True, 2)])
@pytest.mark.parametrize("shape", [(7, 4), (3, 4, 5)], ids=["2d", "3d"])
def test_cross_entropy_weight_and_ignore_index_match_pytorch(torch, reduction, eps, use_weight, ignore, shape):
    g = _rng()
    x = g.standard_normal(shape)
    labels_shape = (shape[0],) + shape[2:]
    y = g.integers(0, shape[1], labels_shape)
    if ignore is not None:
        y.flat[::3] = ignore  # every third sample ignored
    w = g.random(shape[1]) + 0.1 if use_weight else None

    def ours(a):
        return L.cross_entropy(a, y, weight=w, ignore_index=ignore, label_smoothing=eps, reduction=reduction)

    def theirs(torch, a):
        kw = {"weight": torch.tensor(w)} if w is not None else {}
        return torch.nn.functional.cross_entropy(
            a, torch.tensor(y), ignore_index=-100 if ignore is None else ignore, label_smoothing=eps,
            reduction=reduction, **kw,
        )

    assert_parity(torch, ours, theirs, (x,))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_weight_with_probability_targets_matches_pytorch(torch, reduction):
    g = _rng()
    x = g.standard_normal((6, 5))
    p = _probs((6, 5))
    w = g.random(5) + 0.1
    assert_parity(
        torch,
        lambda a: L.cross_entropy(a, p, weight=w, label_smoothing=0.1, reduction=reduction),
        lambda torch, a: torch.nn.functional.cross_entropy(
            a, torch.tensor(p), weight=torch.tensor(w), label_smoothing=0.1, reduction=reduction
        ),
        (x,),
    )


def test_cross_entropy_weight_worked_example():
    # two samples, classes weighted 1 and 3: the mean is over the weights of the samples' classes
    logits = np.zeros((2, 2))
    got = L.cross_entropy(logits, np.array([0, 1]), weight=np.array([1.0, 3.0]))
    np.testing.assert_allclose(got, (1 * np.log(2) + 3 * np.log(2)) / (1 + 3))
    ignored = L.cross_entropy(np.array([[0.0, 5.0], [1.0, 0.0]]), np.array([-1, 0]), ignore_index=-1)
    np.testing.assert_allclose(ignored, -np.log(np.exp(1) / (np.exp(1) + 1)))  # only the second sample


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        ({"weight": np.ones(3)}, ValueError, r"weight must have shape \(4,\)"),
        ({"weight": -np.ones(4)}, ValueError, "finite and non-negative"),
        ({"weight": np.array([1, 1, np.nan, 1.0])}, ValueError, "finite and non-negative"),
        ({"weight": np.array(["a"] * 4)}, TypeError, "weight must be numeric"),
        ({"ignore_index": 1.5}, TypeError, "ignore_index must be an int"),
        ({"ignore_index": True}, TypeError, "ignore_index must be an int"),
    ],
)
def test_cross_entropy_weight_and_ignore_index_errors(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        L.cross_entropy(np.zeros((2, 4)), np.array([0, 1]), **kwargs)


def test_cross_entropy_ignore_index_refuses_probability_targets_and_checks_other_labels():
    with pytest.raises(ValueError, match="ignore_index applies to integer class labels"):
        L.cross_entropy(np.zeros((2, 4)), _probs((2, 4)), ignore_index=0)
    with pytest.raises(ValueError, match="label 7 is out of range for 4 classes"):
        L.cross_entropy(np.zeros((2, 4)), np.array([-100, 7]), ignore_index=-100)


def test_cross_entropy_with_array_weight_serialises_to_json():
    spec = L.serialize(L.get("cross_entropy", weight=np.array([1.0, 2.0]), ignore_index=-1))
    assert json.loads(json.dumps(spec)) == {"name": "cross_entropy", "weight": [1.0, 2.0], "ignore_index": -1}
    again = L.get(spec)
    np.testing.assert_allclose(again(np.zeros((2, 2)), np.array([1, -1])), np.log(2))
