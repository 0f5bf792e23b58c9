"""Forward and backward parity with PyTorch in float64 (rtol 1e-6), for every primitive.

The backward pass is checked with a random cotangent, so every output element's gradient counts.
Also here: the subgradient conventions PyTorch uses at ties and kinks, and numerical stability at
logits of magnitude 1e4 in float32.
"""

import warnings

import numpy as np
import pytest
from autodiff_cases import CASE_IDS, CASES, torch_dims
from hypothesis import given, settings
from hypothesis import strategies as st

import knetpy as kp

RTOL, ATOL = 1e-6, 1e-10
FAST = settings(max_examples=20, deadline=None, derandomize=True)


def _torch_args(torch, args):
    """Floating arrays become leaves requiring grad; integer and boolean arrays stay constants."""
    return [torch.tensor(a, requires_grad=a.dtype.kind == "f") for a in args]


def assert_parity(torch, kp_fn, torch_fn, args, kw=None, seed=0):
    """Values and vector-Jacobian products of ``kp_fn`` and ``torch_fn`` agree."""
    kw = kw or {}
    diff = tuple(i for i, a in enumerate(args) if a.dtype.kind == "f")
    targs = _torch_args(torch, args)
    expected = torch_fn(torch, *targs, **kw)
    cotangent = np.random.default_rng(seed).standard_normal(tuple(expected.shape))

    def projected(*a):
        return kp.sum(kp_fn(*a, **kw) * cotangent)

    value, grads = kp.value_and_grad(projected, argnums=diff)(*args)
    out = kp_fn(*args, **kw)
    np.testing.assert_allclose(out, expected.detach().numpy(), rtol=RTOL, atol=ATOL, err_msg="forward")
    assert np.shape(out) == tuple(expected.shape)

    leaves = [targs[i] for i in diff]
    tgrads = torch.autograd.grad((expected * torch.tensor(cotangent)).sum(), leaves, allow_unused=True)
    np.testing.assert_allclose(value, float((expected.detach() * torch.tensor(cotangent)).sum()), rtol=RTOL)
    for i, g, tg in zip(diff, grads, tgrads):
        want = np.zeros(args[i].shape) if tg is None else tg.numpy()
        assert np.shape(g) == args[i].shape, f"gradient of argument {i} has the wrong shape"
        np.testing.assert_allclose(g, want, rtol=RTOL, atol=ATOL, err_msg=f"gradient of argument {i}")


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@FAST
@given(data=st.data())
def test_forward_and_backward_match_pytorch(torch, case, data):
    args, kw = data.draw(case.inputs)
    assert_parity(torch, case.kp_fn, case.torch_fn, args, kw)


# -- conventions at ties and kinks --------------------------------------------------------------------
def test_max_and_min_share_the_gradient_among_ties_like_amax(torch):
    x = np.array([[1.0, 3.0, 3.0, -2.0], [0.5, 0.5, 0.5, 0.5], [-1.0, -4.0, -4.0, 2.0]])
    for axis in (None, 0, 1, (0, 1)):
        for keepdims in (False, True):
            kw = {"axis": axis, "keepdims": keepdims}
            assert_parity(
                torch, kp.max, lambda t, a, axis, keepdims: t.amax(a, torch_dims(a, axis), keepdims), (x,), kw
            )
            assert_parity(
                torch, kp.min, lambda t, a, axis, keepdims: t.amin(a, torch_dims(a, axis), keepdims), (x,), kw
            )
    # Worked: the three tied entries of row 1 along axis 1 each receive a third.
    g = kp.grad(lambda a: kp.max(a, axis=1)[1])(x)
    np.testing.assert_allclose(g[1], [0.25, 0.25, 0.25, 0.25])


def test_maximum_and_minimum_split_ties_in_half(torch):
    x = np.array([1.0, 2.0, 2.0, -3.0])
    y = np.array([2.0, 2.0, 1.0, -3.0])
    assert_parity(torch, kp.maximum, lambda t, a, b: t.maximum(a, b), (x, y))
    assert_parity(torch, kp.minimum, lambda t, a, b: t.minimum(a, b), (x, y))
    gx, gy = kp.grad(lambda a, b: kp.sum(kp.maximum(a, b)), argnums=(0, 1))(x, y)
    np.testing.assert_array_equal(gx, [0.0, 0.5, 1.0, 0.5])
    np.testing.assert_array_equal(gy, [1.0, 0.5, 0.0, 0.5])


def test_kinks_at_zero_follow_pytorch(torch):
    x = np.array([-1.5, -0.0, 0.0, 0.7])
    F = torch.nn.functional
    assert_parity(torch, kp.abs, lambda t, a: t.abs(a), (x,))
    assert_parity(torch, kp.relu, lambda t, a: t.relu(a), (x,))
    assert_parity(torch, kp.elu, lambda t, a: F.elu(a), (x,))
    assert_parity(torch, kp.selu, lambda t, a: F.selu(a), (x,))
    assert_parity(torch, kp.softplus, lambda t, a: F.softplus(a), (x,))
    assert_parity(torch, kp.sqrt, lambda t, a: t.sqrt(a), (np.array([0.25, 4.0]),))


def test_softplus_and_bce_slope_at_zero_logits(torch):
    """A zero-initialised output layer gives logits of exactly 0: the slope there is sigm(0) = 1/2."""
    np.testing.assert_allclose(kp.grad(lambda s: kp.sum(kp.softplus(s)))(np.zeros(3)), [0.5, 0.5, 0.5])
    targets = np.array([0.0, 1.0, 0.25])
    g = kp.grad(lambda s: kp.bce(s, targets, average=False))(np.zeros(3))
    np.testing.assert_allclose(g, 0.5 - targets)
    assert_parity(
        torch,
        kp.bce,
        lambda t, s, y: t.nn.functional.binary_cross_entropy_with_logits(s, y),
        (np.zeros(3), targets),
    )
    assert_parity(
        torch,
        kp.logistic,
        lambda t, s, y: t.nn.functional.softplus(-(s * y)).mean(),
        (np.zeros(2), np.array([-1.0, 1.0])),
    )


def test_clip_passes_the_gradient_at_the_bounds(torch):
    x = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    assert_parity(torch, lambda a: kp.clip(a, -1.0, 1.0), lambda t, a: t.clamp(a, -1.0, 1.0), (x,))
    np.testing.assert_array_equal(kp.grad(lambda a: kp.sum(kp.clip(a, -1.0, 1.0)))(x), [0, 1, 1, 1, 0])
    lo, hi = np.full(5, -1.0), np.full(5, 1.0)
    assert_parity(torch, kp.clip, lambda t, a, b, c: t.clamp(a, b, c), (x, lo, hi))


def test_pow_at_zero_base(torch):
    # d(x^y)/dy at x = 0 is taken as 0 (the limit for y > 0), as PyTorch does.
    x = np.array([0.0, 0.0, 2.0])
    y = np.array([2.0, 3.5, 0.5])
    assert_parity(torch, kp.pow, lambda t, a, b: t.pow(a, b), (x, y))


def test_prod_with_zeros_matches_pytorch(torch):
    for x in (np.array([2.0, 0.0, 3.0]), np.array([0.0, 0.0, 3.0]), np.array([[0.0, 2.0], [3.0, 4.0]])):
        assert_parity(torch, kp.prod, lambda t, a: t.prod(a), (x,))
    x = np.array([[0.0, 2.0, 0.0], [3.0, 0.0, 4.0]])
    assert_parity(torch, kp.prod, lambda t, a, axis: t.prod(a, dim=axis), (x,), {"axis": 1})
    np.testing.assert_array_equal(kp.grad(lambda a: kp.prod(a))(np.array([2.0, 0.0, 3.0])), [0.0, 6.0, 0.0])


def test_getitem_with_repeated_indices_accumulates(torch):
    x = np.arange(12.0).reshape(4, 3)
    idx = np.array([1, 3, 1, 1, -1])
    assert_parity(torch, lambda a: a[idx], lambda t, a: a[t.as_tensor(idx)], (x,))
    g = kp.grad(lambda a: kp.sum(a[idx]))(x)
    np.testing.assert_array_equal(g[:, 0], [0.0, 3.0, 0.0, 2.0])
    # The same along a column, where the gather is not a row lookup.
    g = kp.grad(lambda a: kp.sum(a[:, np.array([0, 0, 2])]))(x)
    np.testing.assert_array_equal(g[0], [2.0, 0.0, 1.0])
    # Integer arrays on several axes.
    rows, cols = np.array([0, 0, 2]), np.array([1, 1, 2])
    assert_parity(torch, lambda a: a[rows, cols], lambda t, a: a[t.as_tensor(rows), t.as_tensor(cols)], (x,))


def test_getitem_with_negative_steps_reverses_the_gradient():
    x = np.arange(5.0)
    w = np.array([1.0, 10.0, 100.0])
    g = kp.grad(lambda a: kp.sum(a[::-2] * w))(x)
    np.testing.assert_array_equal(g, [100.0, 0.0, 10.0, 0.0, 1.0])
    assert kp.gradcheck(lambda a: a[::-1, 1:][..., None], np.arange(6.0).reshape(3, 2))


# -- numerical stability ------------------------------------------------------------------------------
BIG = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [3e4, 2e4, 1e4]], dtype=np.float32)
LABELS = np.array([1, 2, 0])


def _stable_reference(torch, fn, *arrays):
    """The float64 PyTorch value and gradient (of the sum) as the reference."""
    ts = [torch.tensor(a.astype(np.float64), requires_grad=True) for a in arrays]
    out = fn(*ts)
    (g,) = torch.autograd.grad(out.sum(), ts[:1])
    return out.detach().numpy(), g.numpy()


@pytest.mark.parametrize(
    "name",
    ["softmax", "logp", "logsumexp", "nll", "bce", "sigm", "softplus", "logistic"],
)
def test_large_logits_in_float32_stay_finite_and_correct(torch, name):
    F = torch.nn.functional
    table = {
        "softmax": (lambda s: kp.softmax(s, axis=1), lambda s: torch.softmax(s, 1)),
        "logp": (lambda s: kp.logp(s, axis=1), lambda s: torch.log_softmax(s, 1)),
        "logsumexp": (lambda s: kp.logsumexp(s, axis=1), lambda s: torch.logsumexp(s, 1)),
        "nll": (lambda s: kp.nll(s, LABELS), lambda s: F.cross_entropy(s, torch.tensor(LABELS))),
        "bce": (
            lambda s: kp.bce(s, (BIG > 0).astype(np.float32)),
            lambda s: F.binary_cross_entropy_with_logits(s, torch.tensor((BIG > 0) * 1.0)),
        ),
        "sigm": (kp.sigm, torch.sigmoid),
        "softplus": (kp.softplus, F.softplus),
        "logistic": (
            lambda s: kp.logistic(s, np.sign(BIG + 0.5).astype(np.float32)),
            lambda s: F.softplus(-(s * torch.tensor(np.sign(BIG + 0.5) * 1.0))).mean(),
        ),
    }
    kp_fn, torch_fn = table[name]
    want_value, want_grad = _stable_reference(torch, torch_fn, BIG)
    # Overflow, division by zero and invalid values raise; underflow of exp(-2e4) to 0 is the right
    # float32 answer, so it is left alone (NumPy ignores it by default too).
    with np.errstate(over="raise", divide="raise", invalid="raise"), warnings.catch_warnings():
        warnings.simplefilter("error")
        value, g = kp.value_and_grad(lambda s: kp.sum(kp_fn(s)))(BIG)
        out = kp_fn(BIG)
    assert np.asarray(out).dtype == np.float32 and g.dtype == np.float32
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(g))
    # float32 resolves numbers near 1e4 to about 1e-3, so values carry that absolute error, and
    # gradients computed as exp(x - result) carry it as a relative error.
    np.testing.assert_allclose(out, want_value, rtol=1e-6, atol=1e-6 * np.abs(want_value).max())
    np.testing.assert_allclose(g, want_grad, rtol=1e-3, atol=1e-6)


def test_masked_logits_with_minus_infinity(torch):
    """Attention-style masks put -inf in the logits: those classes get probability and gradient 0."""
    x = np.array([[0.5, -np.inf, 1.5], [-np.inf, 2.0, -1.0]])
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        assert_parity(torch, kp.softmax, lambda t, a, axis: t.softmax(a, axis), (x,), {"axis": 1})
        assert_parity(torch, kp.logsumexp, lambda t, a, axis: t.logsumexp(a, axis), (x,), {"axis": 1})
        g = kp.grad(lambda a: kp.nll(a, np.array([0, 1])))(x)
    assert g[0, 1] == 0.0 and g[1, 0] == 0.0 and np.all(np.isfinite(g))
