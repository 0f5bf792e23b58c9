"""sum_to over arrays in every memory layout: the 2-D fast path must agree with a plain reduction."""

import itertools

import numpy as np
import pytest

import knetpy as kp
from knetpy.ops.shape import _sum_to_inner_axis, sum_rows, sum_to

SHAPE = (3, 5, 4, 6)


def _layouts(dtype=np.float64):
    """The same (3, 5, 4, 6) values in every axis order of memory, plus a non-dense slice."""
    base = np.random.default_rng(0).standard_normal(SHAPE).astype(dtype)
    for perm in itertools.permutations(range(4)):
        mem = np.ascontiguousarray(base.transpose(perm))
        yield f"memory order {perm}", mem.transpose(np.argsort(perm))
    wide = np.random.default_rng(1).standard_normal((3, 5, 4, 12)).astype(dtype)
    yield "strided slice", wide[..., ::2]


@pytest.mark.parametrize("target", [(1, 5, 1, 1), (5, 1, 1), (1, 1, 1, 6), (6,), (3, 1, 1, 1), (1, 5, 4, 1)])
def test_sum_to_matches_plain_reduction_in_every_layout(target):
    for label, x in _layouts():
        lead = x.ndim - len(target)
        axes = tuple(range(lead)) + tuple(i + lead for i, s in enumerate(target) if s == 1)
        want = x.sum(axis=axes, keepdims=True).reshape(target)
        got = sum_to(x, target)
        assert got.shape == target, label
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=label)


def test_fast_path_taken_only_when_the_kept_axis_is_innermost_and_dense():
    x = np.zeros((4, 6, 5, 3), np.float32).transpose(0, 3, 1, 2)  # (N, C, H, W) view, C innermost
    assert _sum_to_inner_axis(x, (0, 2, 3)).shape == (3,)
    assert _sum_to_inner_axis(np.zeros((4, 3, 6, 5), np.float32), (0, 2, 3)) is None  # C not innermost
    assert _sum_to_inner_axis(x[:, :, ::2], (0, 2, 3)) is None  # not dense
    assert _sum_to_inner_axis(x, (0, 2)) is None  # two axes kept


def test_sum_to_keeps_float32_and_integer_promotion():
    x = np.ones((8, 7, 7, 20), np.float32).transpose(0, 3, 1, 2)
    out = sum_to(x, (1, 20, 1, 1))
    assert out.dtype == np.float32 and out.shape == (1, 20, 1, 1)
    np.testing.assert_array_equal(out, np.full((1, 20, 1, 1), 8 * 49, np.float32))
    b = np.ones((4, 3, 2), bool).transpose(0, 2, 1)
    assert sum_to(b, (1, 1, 3)).dtype == b.sum(axis=(0, 1)).dtype


def test_sum_rows_worked_example():
    m = np.arange(12.0).reshape(6, 2)  # columns 0,2,...,10 and 1,3,...,11
    np.testing.assert_array_equal(sum_rows(m), [30.0, 36.0])


def test_bias_gradient_of_channels_last_activation(torch):
    rng = np.random.default_rng(2)
    y = rng.standard_normal((4, 6, 5, 3)).transpose(0, 3, 1, 2)  # channels-last memory
    b = rng.standard_normal((1, 3, 1, 1))
    g = rng.standard_normal((4, 3, 6, 5))
    _, grads = kp.value_and_grad(lambda b: kp.sum(kp.add(y, b) * g))(b)
    tb = torch.tensor(b, requires_grad=True)
    (torch.tensor(np.ascontiguousarray(y)) + tb).mul(torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(grads, tb.grad.numpy(), rtol=1e-6)
    kp.gradcheck(lambda b: kp.sum(kp.square(kp.add(y, b))), b)
