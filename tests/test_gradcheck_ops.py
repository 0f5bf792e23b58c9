"""Every primitive's gradient against central differences in float64, over random shapes.

Shapes come from hypothesis (scalars, size-1 axes, broadcasting); values from a domain where the op
is smooth, so finite differences are a fair oracle. The op table lives in autodiff_cases.py.
"""

import numpy as np
import pytest
from autodiff_cases import CASE_IDS, CASES
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import knetpy as kp

FAST = settings(max_examples=20, deadline=None, derandomize=True)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@FAST
@given(data=st.data())
def test_gradient_matches_central_differences(case, data):
    args, kw = data.draw(case.inputs)
    assert kp.gradcheck(lambda *a: case.kp_fn(*a, **kw), *args)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@FAST
@given(data=st.data())
def test_raw_and_tensor_forward_agree(case, data):
    """The fast path (raw arrays in, raw array out) computes what the recorded path computes."""
    args, kw = data.draw(case.inputs)
    raw = case.kp_fn(*args, **kw)
    assert not isinstance(raw, kp.Tensor)
    tensors = [kp.Param(a) if a.dtype.kind == "f" else a for a in args]
    recorded = case.kp_fn(*tensors, **kw)
    assert isinstance(recorded, kp.Tensor) and recorded.requires_grad
    np.testing.assert_array_equal(np.asarray(recorded), raw)


def test_float32_gradients_pass_a_float32_tolerance():
    """gradcheck converts to float64 itself: a float32 argument is checked all the same."""
    x = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    assert kp.gradcheck(lambda a: kp.tanh(a) @ a.T, x)


# -- gradcheck itself -------------------------------------------------------------------------------
@kp.primitive
def _scaled_square(x, y):
    return x * x * y


# The VJP for y is right; the one for x drops the factor 2.
_scaled_square.defvjp(lambda g, ans, x, y: g * x * y, lambda g, ans, x, y: kp.sum_to(g * x * x, np.shape(y)))


def test_gradcheck_catches_a_wrong_vjp_and_names_the_argument():
    x = np.array([0.5, -1.0, 2.0])
    y = np.array([1.5, 0.5, -2.0])
    with pytest.raises(kp.GradcheckError) as info:
        kp.gradcheck(_scaled_square, x, y)
    report = str(info.value)
    assert "argument 0" in report
    assert "argument 1" not in report  # the right VJP is not blamed
    assert "autodiff" in report and "finite differences" in report
    # The worst element of x (index 2, value 2.0 * -2.0 = -4 vs -8) is the one reported.
    assert "(2,)" in report


def test_gradcheck_checks_only_the_requested_argument():
    x, y = np.array([0.5, -1.0]), np.array([1.5, 0.5])
    assert kp.gradcheck(_scaled_square, x, y, argnums=1)
    with pytest.raises(kp.GradcheckError, match="argument 0"):
        kp.gradcheck(_scaled_square, x, y, argnums=0)


def test_gradcheck_catches_a_wrong_broadcast_reduction():
    @kp.primitive
    def bad_add(x, y):
        return x + y

    # Wrong: the gradient for the broadcast operand is averaged instead of summed.
    bad_add.defvjp(lambda g, ans, x, y: g, lambda g, ans, x, y: kp.mean(g, axis=0))
    with pytest.raises(kp.GradcheckError, match=r"argument 1 \(shape \(3,\)\)"):
        kp.gradcheck(bad_add, np.ones((4, 3)), np.ones(3))


def test_gradcheck_ignores_integer_arguments():
    scores = np.random.default_rng(0).standard_normal((3, 4))
    assert kp.gradcheck(kp.nll, scores, np.array([0, 3, 1]))


def test_gradcheck_needs_a_floating_argument():
    with pytest.raises(ValueError, match="no floating arguments"):
        kp.gradcheck(lambda i: i * 2, np.array([1, 2]))


# -- indexing forms PyTorch has no twin for -----------------------------------------------------------
@st.composite
def _basic_index(draw):
    """Slices with negative steps, Ellipsis and new axes (None) mixed with integers."""
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4))
    items = []
    for s in shape[: draw(st.integers(1, len(shape)))]:
        items.append(
            draw(
                st.one_of(
                    st.integers(-s, s - 1),
                    st.builds(
                        slice,
                        st.none() | st.integers(-s, s),
                        st.none() | st.integers(-s, s),
                        st.sampled_from([None, 1, 2, -1, -2]),
                    ),
                )
            )
        )
    if draw(st.booleans()):
        items.insert(draw(st.integers(0, len(items))), None)
    if draw(st.booleans()):
        items.append(Ellipsis)
    x = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).standard_normal(shape)
    return x, tuple(items)


@FAST
@given(drawn=_basic_index())
def test_basic_indexing_gradients(drawn):
    x, index = drawn
    assert kp.gradcheck(lambda a: a[index] * 1.5, x)


def test_take_gradient_accumulates():
    x = np.arange(6.0).reshape(2, 3)
    assert kp.gradcheck(lambda a: kp.take(a, np.array([2, 0, 2]), axis=1), x)
    assert kp.gradcheck(lambda a: kp.take(a, np.array([5, 5, 1])), x)


def test_gradcheck_max_elements_limits_the_finite_differences():
    calls = []

    def f(a):
        calls.append(1)
        return kp.sum(kp.sin(a))

    x = np.linspace(0, 1, 50)
    assert kp.gradcheck(f, x, max_elements=5)
    # One forward, one recorded pass, then two evaluations per checked element.
    assert len(calls) == 2 + 2 * 5
    with pytest.raises(kp.GradcheckError, match=r"of 5 elements differ"):
        kp.gradcheck(_scaled_square, x + 0.5, np.ones(50), argnums=0, max_elements=5)
