"""The non-recurrent backward paths of a character language model: nll's in-place gradient and the
embedding's one-hot row sums, against PyTorch and against the sorted-sum path."""

import numpy as np
import pytest

import knetpy as kp
from knetpy.ops.index import _add_rows


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("average", [True, False])
def test_nll_gradient_matches_pytorch_on_every_axis(torch, axis, average):
    r = np.random.default_rng(0)
    scores = r.standard_normal((4, 5, 3))
    label_shape = tuple(n for k, n in enumerate(scores.shape) if k != axis)
    labels = r.integers(0, scores.shape[axis], label_shape)
    g = kp.grad(lambda s: kp.nll(s, labels, axis=axis, average=average))(scores)
    ts = torch.tensor(scores, requires_grad=True)
    moved = ts.movedim(axis, 1)  # PyTorch wants the classes on axis 1
    loss = torch.nn.functional.cross_entropy(
        moved, torch.tensor(labels), reduction="mean" if average else "sum"
    )
    loss.backward()
    np.testing.assert_allclose(g, ts.grad.numpy(), rtol=1e-6, atol=1e-12)
    assert kp.gradcheck(lambda s: kp.nll(s, labels, axis=axis, average=average), scores)


def test_nll_gradient_worked_example_keeps_float32():
    # softmax([0, 0]) = [1/2, 1/2]; label 1: gradient (1/2, 1/2 - 1), averaged over 2 rows -> / 2
    scores = np.zeros((2, 2), dtype=np.float32)
    g = kp.grad(lambda s: kp.nll(s, np.array([1, 0])))(scores)
    assert g.dtype == np.float32
    np.testing.assert_array_equal(g, np.array([[0.25, -0.25], [-0.25, 0.25]], dtype=np.float32))


def test_nll_second_derivative_still_available():
    scores = np.random.default_rng(1).standard_normal((3, 4))
    labels = np.array([0, 3, 1])
    assert kp.gradcheck(lambda s: (kp.grad(lambda a: kp.nll(a, labels))(s) ** 2).sum(), scores)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_add_rows_small_vocabulary_matches_sorted_sums(dtype):
    r = np.random.default_rng(2)
    rows_at = r.integers(0, 7, 300)
    rows_at[:5] = 3  # repeated targets accumulate
    rows = r.standard_normal((300, 4)).astype(dtype)
    out = np.full((7, 4), np.nan, dtype=dtype)  # every row written, the unused ones with zeros
    _add_rows(out, rows_at, rows)
    expected = np.zeros((7, 4))
    for k, row in zip(rows_at, rows):
        expected[k] += row
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_allclose(out, expected, rtol=1e-5 if dtype == "float32" else 1e-12, atol=1e-5)


def test_embedding_backward_matches_pytorch(torch):
    r = np.random.default_rng(3)
    weights = r.standard_normal((6, 3))
    ids = r.integers(0, 6, (4, 5))
    cot = r.standard_normal((4, 5, 3))
    w = kp.Param(weights.copy())
    (w[ids] * kp.tensor(cot)).sum().backward()
    tw = torch.tensor(weights, requires_grad=True)
    (torch.nn.functional.embedding(torch.tensor(ids), tw) * torch.tensor(cot)).sum().backward()
    np.testing.assert_allclose(w.grad, tw.grad.numpy(), rtol=1e-6, atol=1e-12)
