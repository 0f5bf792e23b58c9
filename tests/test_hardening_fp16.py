"""float16 reductions and losses accumulate in float32 and round once, as NumPy's mean and PyTorch do."""

import numpy as np
import pytest

import knetpy as kp
from knetpy import losses as L

torch = pytest.importorskip("torch")
F = torch.nn.functional

H = np.float16


def _f32_then_half(value):
    """The float32 answer rounded to float16: what accumulating in float32 gives."""
    return np.float16(np.float32(value))


def test_sum_over_many_rows_does_not_stall():
    # float16 accumulation stops growing at 2048 (2048 + 1 rounds back to 2048)
    x = np.ones((10_000, 3), H)
    out = kp.sum(x, axis=0)
    assert out.dtype == H
    np.testing.assert_array_equal(out, torch.tensor(x).sum(0).numpy())
    np.testing.assert_array_equal(out, [10_000, 10_000, 10_000])


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_sum_of_1e5_ones_overflows_like_torch_but_mean_does_not():
    x = np.ones((100_000, 2), H)
    assert np.isinf(kp.sum(x, axis=0)).all()  # 100000 > 65504, the largest float16: torch agrees
    assert torch.isinf(torch.tensor(x).sum(0)).all()
    m = kp.mean(x, axis=0)
    assert m.dtype == H
    np.testing.assert_array_equal(m, [1, 1])
    assert kp.mean(np.ones(100_000, H)) == 1


def test_mean_of_large_values_is_finite():
    x = np.full((1000, 4), 60_000, H)
    for axis in (None, 0, 1):
        got = kp.mean(x, axis=axis)
        want = torch.tensor(x).mean() if axis is None else torch.tensor(x).mean(axis)
        np.testing.assert_array_equal(got, want.numpy())
        assert np.isfinite(got).all()


def test_var_and_std_match_float32_rounded():
    rng = np.random.default_rng(0)
    x = (300 + 5 * rng.standard_normal((20_000, 3))).astype(H)
    ref = x.astype(np.float32)
    for ddof in (0, 1):
        got = kp.var(x, axis=0, ddof=ddof)
        assert got.dtype == H
        np.testing.assert_array_equal(got, ref.var(axis=0, ddof=ddof).astype(H))
        np.testing.assert_array_equal(kp.std(x, axis=0, ddof=ddof), np.sqrt(got))
        np.testing.assert_allclose(
            got.astype(np.float32), torch.tensor(ref).var(0, correction=ddof).numpy(), rtol=2e-3
        )


def test_prod_accumulates_in_float32():
    x = np.full(40, 2.0, H)  # 2**40 overflows float16; the float32 product is the same inf
    x[20:] = 0.5  # 2**20 * 0.5**20 = 1, but a float16 running product overflows at 2**16
    assert kp.prod(x) == 1


def test_reduction_gradients_keep_float16():
    rng = np.random.default_rng(1)
    x = (100 * rng.standard_normal((5000, 3))).astype(H)
    for op, top in ((kp.sum, torch.sum), (kp.mean, torch.mean), (kp.var, None), (kp.std, None)):
        w = kp.Param(x.copy())
        op(w, axis=0).sum().backward()
        assert w.grad.dtype == H and np.isfinite(w.grad).all()
        if top is not None:
            t = torch.tensor(x, requires_grad=True)
            top(t, 0).sum().backward()
            np.testing.assert_array_equal(w.grad, t.grad.numpy())
    # var's gradient 2 (x - mean) / n, against the float32 computation
    w = kp.Param(x.copy())
    kp.var(w).backward()
    ref = 2 * (x.astype(np.float32) - x.astype(np.float32).mean()) / x.size
    np.testing.assert_allclose(w.grad.astype(np.float32), ref, rtol=2e-2, atol=1e-7)


def test_logsumexp_softmax_over_many_entries():
    x = np.zeros((100_000, 2), H)
    got = kp.logsumexp(x, axis=0)
    assert got.dtype == H
    np.testing.assert_array_equal(got, [_f32_then_half(np.log(1e5))] * 2)
    p = kp.softmax(np.zeros((2, 100_000), H), axis=1)
    assert p.dtype == H
    np.testing.assert_allclose(p.astype(np.float32).sum(axis=1), 1, rtol=1e-2)


def test_cross_entropy_is_the_float32_answer_rounded():
    rng = np.random.default_rng(2)
    x = (3 * rng.standard_normal((4096, 10))).astype(H)
    y = rng.integers(0, 10, 4096)
    ref = F.cross_entropy(torch.tensor(x).float(), torch.tensor(y))
    for reduction in ("mean", "sum"):
        w = kp.Param(x.copy())
        loss = L.cross_entropy(w, y, reduction=reduction)
        want = ref * (4096 if reduction == "sum" else 1)
        assert loss.dtype == H
        np.testing.assert_allclose(float(loss.value), float(want), rtol=1e-3)
        loss.backward()
        assert w.grad.dtype == H and np.isfinite(w.grad).all()
    t = torch.tensor(x).float().requires_grad_()
    F.cross_entropy(t, torch.tensor(y)).backward()
    w = kp.Param(x.copy())
    L.cross_entropy(w, y).backward()
    np.testing.assert_allclose(w.grad.astype(np.float32), t.grad.numpy(), atol=2e-7)
    # probabilities, label smoothing, class weights: all finite and close to the float32 answer
    onehot = np.eye(10, dtype=H)[y]
    for kw in ({}, {"label_smoothing": 0.1}):
        got = L.cross_entropy(x, onehot, **kw)
        want = F.cross_entropy(torch.tensor(x).float(), torch.tensor(onehot).float(), **kw)
        np.testing.assert_allclose(float(got), float(want), rtol=1e-3)
    wt = np.linspace(0.5, 2, 10).astype(np.float32)
    got = L.cross_entropy(x, y, weight=wt)
    want = F.cross_entropy(torch.tensor(x).float(), torch.tensor(y), weight=torch.tensor(wt))
    np.testing.assert_allclose(float(got), float(want), rtol=1e-3)


def test_elementwise_loss_means_do_not_overflow():
    # each squared error is 100; their float16 sum (1e5) overflows, their mean does not
    pred = np.full((1000, 1), 10, H)
    target = np.zeros((1000, 1), H)
    w = kp.Param(pred.copy())
    loss = L.mse(w, target)
    assert loss.dtype == H and float(loss.value) == 100
    loss.backward()
    assert w.grad.dtype == H
    np.testing.assert_allclose(w.grad.astype(np.float32), 20 / 1000, rtol=1e-3)
    assert float(L.mae(pred * 10, target)) == 100
    assert float(L.huber(pred * 10, target)) == _f32_then_half(99.5)
    # kl_div's batch mean: the sum over the batch overflows, the mean per sample does not
    logp = np.full((2000, 2), -30, H)
    t = np.full((2000, 2), 0.5, H)
    got = L.kl_div(logp, t)
    want = F.kl_div(torch.tensor(logp).float(), torch.tensor(t).float(), reduction="batchmean")
    np.testing.assert_allclose(float(got), float(want), rtol=1e-3)


def test_bce_with_logits_stays_finite_at_huge_logits():
    z = np.array([60_000, -60_000, 60_000, -60_000] * 1000, H)
    t = np.array([0, 1, 1, 0] * 1000, H)
    w = kp.Param(z.copy())
    loss = L.bce_with_logits(w, t)
    tz = torch.tensor(z, requires_grad=True)
    ref = F.binary_cross_entropy_with_logits(tz, torch.tensor(t))
    ref.backward()
    assert np.isfinite(float(loss.value)) and torch.isfinite(ref)
    assert float(loss.value) == float(ref.detach()) == 30_000
    loss.backward()
    assert w.grad.dtype == H and np.isfinite(w.grad).all()
    np.testing.assert_allclose(w.grad.astype(np.float32), tz.grad.float().numpy(), atol=1e-6)


def test_nll_ops_and_probability_losses_in_float16():
    rng = np.random.default_rng(3)
    x = (2 * rng.standard_normal((3000, 5))).astype(H)
    y = rng.integers(0, 5, 3000)
    want = F.cross_entropy(torch.tensor(x).float(), torch.tensor(y))
    w = kp.Param(x.copy())
    loss = kp.nll(w, y)
    np.testing.assert_allclose(float(loss.value), float(want), rtol=1e-3)
    loss.backward()
    assert w.grad.dtype == H and np.isfinite(w.grad).all()
    p = kp.softmax(x, axis=1)
    got = L.sparse_categorical_crossentropy(p, y)
    np.testing.assert_allclose(float(got), float(want), rtol=5e-3)
    # a probability of exactly 1 or 0 stays finite: the clip margin is at least float16's resolution
    q = np.array([[1.0, 0.0]], H)
    assert np.isfinite(float(L.binary_crossentropy(q, np.array([[0.0, 1.0]], H))))
    assert np.isfinite(float(L.categorical_crossentropy(q, np.array([[0.0, 1.0]], H))))
