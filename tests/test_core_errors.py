"""Bad input gives a clear error naming the op and what is wrong, raised from knetpy itself."""

import os

import numpy as np
import pytest

import knetpy as kp

KNETPY_DIR = os.path.dirname(kp.__file__)


def P(*shape):
    return kp.Param(np.ones(shape))


def raised_by_knetpy(info):
    """The error comes from knetpy's own check, not from deep inside NumPy."""
    return info.traceback[-1].path.as_posix().startswith(KNETPY_DIR)


# -- shapes that do not fit ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "call",
    [
        lambda: P(2, 3) @ P(4, 5),
        lambda: kp.matmul(np.ones((2, 3)), np.ones((4, 5))),
        lambda: np.ones((2, 3)) @ P(4, 5),
        lambda: kp.matmul(P(3), P(4)),
        lambda: kp.matmul(P(7, 2, 3), P(5, 3, 4)),
    ],
)
def test_matmul_mismatch_names_the_op_and_both_shapes(call):
    with pytest.raises(ValueError, match="matmul") as info:
        call()
    message = str(info.value)
    assert raised_by_knetpy(info)
    shapes = [s for s in ["(2, 3)", "(4, 5)", "(3,)", "(4,)", "(7, 2, 3)", "(5, 3, 4)"] if s in message]
    assert len(shapes) == 2, message


@pytest.mark.parametrize("name", ["add", "sub", "mul", "div", "pow", "maximum", "minimum"])
def test_broadcast_mismatch_names_the_op_and_both_shapes(name):
    op = getattr(kp, name)
    for a, b in [(P(2, 3), P(4, 3)), (np.ones((2, 3)), np.ones((4, 3))), (np.ones((2, 3)), P(4, 3))]:
        with pytest.raises(ValueError, match=rf"{name}: .*\(2, 3\) and \(4, 3\)") as info:
            op(a, b)
        assert raised_by_knetpy(info)


def test_operators_and_where_name_their_shapes():
    with pytest.raises(ValueError, match=r"add: .*\(2, 3\) and \(4,\)"):
        np.ones((2, 3)) + P(4)
    with pytest.raises(ValueError, match=r"mul: .*\(2, 3\) and \(2,\)"):
        P(2, 3) * P(2)
    with pytest.raises(ValueError, match=r"where: .*\(2, 3\).*\(4,\)"):
        kp.where(np.ones((2, 3), bool), P(2, 3), P(4))


@pytest.mark.parametrize(
    "call, pattern",
    [
        (lambda: P(2, 3).reshape(4, 2), r"reshape: .*\(2, 3\) into \(4, 2\)"),
        (lambda: P(2, 3).transpose(0, 0), r"transpose: axes \(0, 0\)"),
        (lambda: kp.squeeze(P(2, 3), 0), r"squeeze: axis 0 of shape \(2, 3\) has size 2"),
        (lambda: kp.squeeze(P(2, 1), 4), r"squeeze: axis 4 is out of bounds for array of dimension 2"),
        (lambda: kp.expand_dims(P(2, 3), 5), r"expand_dims: axis 5 is out of bounds"),
        (lambda: kp.swapaxes(P(2, 3), 0, 5), r"swapaxes: axis 5 is out of bounds"),
        (lambda: kp.moveaxis(P(2, 3), 0, 5), r"moveaxis: axis 5 is out of bounds"),
        (lambda: kp.broadcast_to(P(2, 3), (4, 3)), r"broadcast_to: .*\(2, 3\) to \(4, 3\)"),
        (lambda: kp.sum_to(P(2, 3), (4, 3)), r"sum_to: .*\(2, 3\).*\(4, 3\)"),
        (lambda: kp.concatenate([P(2, 3), P(2, 4)]), r"concatenate: shapes \(2, 3\), \(2, 4\)"),
        (lambda: kp.concatenate([P(2, 3), P(2, 3)], axis=3), r"concatenate: axis 3 is out of bounds"),
        (lambda: kp.concatenate([]), r"concatenate: needs at least one array"),
        (lambda: kp.stack([P(2, 3), P(2, 4)]), r"stack: .*\(2, 3\), \(2, 4\)"),
        (lambda: kp.stack([P(2, 3)], axis=4), r"stack: axis 4 is out of bounds"),
        (lambda: kp.stack([]), r"stack: needs at least one array"),
        (lambda: kp.split(P(5, 3), 2), r"split: axis of length 5 does not divide into 2"),
        (lambda: kp.split(P(4, 3), 2, axis=3), r"split: axis 3 is out of bounds"),
        (lambda: kp.pad(P(2, 3), ((1, 1), (1, 1), (1, 1))), r"pad: pad_width .* 2 dimensions"),
        (lambda: kp.pad(P(2, 3), -1), r"pad: .*negative"),
        (lambda: kp.pad(P(2, 3), 1, mode="reflect"), r"pad: only mode='constant'"),
        (lambda: P(2, 3)[5], r"index 5 .*shape \(2, 3\)"),
        (lambda: P(2, 3)[np.array([True, False, True])], r"shape \(2, 3\)"),
        (lambda: kp.einsum("ij,jk->ik", P(2, 3)), r"einsum 'ij,jk->ik'"),
        (
            lambda: kp.einsum("ij,jk->ik", P(2, 3), P(4, 5)),
            r"einsum 'ij,jk->ik': operands of shapes \(2, 3\), \(4, 5\)",
        ),
        (lambda: kp.tensordot(P(2, 3), P(4, 5), axes=1), r"tensordot: axis 1 of shape \(2, 3\) .*\(4, 5\)"),
        (lambda: kp.tensordot(P(2, 3), P(3, 5), axes=3), r"tensordot: cannot contract 3 axes"),
        (lambda: kp.dot(P(2, 3), P(4, 5)), r"\(2, 3\) and \(4, 5\)"),
    ],
)
def test_shape_ops_report_what_does_not_fit(call, pattern):
    with pytest.raises((ValueError, IndexError, NotImplementedError), match=pattern) as info:
        call()
    assert raised_by_knetpy(info)


def test_reduction_axis_out_of_range():
    for op in (kp.sum, kp.mean, kp.max, kp.min, kp.prod, kp.var, kp.logsumexp):
        with pytest.raises(ValueError, match="axis 2 is out of bounds"):
            op(P(2, 3), axis=2)


@pytest.mark.parametrize("name", ["sum", "mean", "max", "min", "amax", "prod", "var", "std", "argmax", "argmin"])
@pytest.mark.parametrize("x", [np.ones((2, 3)), P(2, 3)], ids=["array", "tensor"])
def test_reductions_name_the_op_the_axis_and_the_shape(name, x):
    op_name = {"amax": "max"}.get(name, name)
    pattern = rf"{op_name}: axis 5 is out of bounds for an array of shape \(2, 3\) \(valid axes: -2 to 1\)"
    with pytest.raises(np.exceptions.AxisError, match=pattern):
        getattr(kp, name)(x, axis=5)
    with pytest.raises(IndexError):  # still catchable as NumPy's own error is
        getattr(kp, name)(x, axis=-3)


# -- losses ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "call, error, pattern",
    [
        (
            lambda: kp.nll(P(4, 3), np.array([0, 1])),
            ValueError,
            r"nll: .*\(4, 3\).*labels of shape \(4,\), got \(2,\)",
        ),
        (lambda: kp.nll(P(4, 3), np.array([0.0, 1, 1, 1])), TypeError, r"nll: labels must be integers"),
        (
            lambda: kp.nll(P(4, 3), np.array([0, 1, 3, 1])),
            ValueError,
            r"nll: label 3 is out of range for 3 classes",
        ),
        (lambda: kp.nll(P(4, 3), np.array([0, -1, 1, 1])), ValueError, r"nll: label -1 is out of range"),
        (
            lambda: kp.nll(P(4, 3), np.array([0, 1, 1, 1]), axis=3),
            ValueError,
            r"nll: class axis 3 .*\(4, 3\)",
        ),
        (lambda: kp.accuracy(P(4, 3), np.array([0, 1])), ValueError, r"accuracy: .*labels of shape \(4,\)"),
        (lambda: kp.bce(P(4), np.ones(3)), ValueError, r"bce: scores of shape \(4,\) .*got \(3,\)"),
        (lambda: kp.bce(P(4, 1), np.ones(4)), ValueError, r"bce: scores of shape \(4, 1\)"),
        (lambda: kp.logistic(P(4), np.ones((4, 4))), ValueError, r"logistic: scores of shape \(4,\)"),
    ],
)
def test_losses_reject_mismatched_targets(call, error, pattern):
    with pytest.raises(error, match=pattern) as info:
        call()
    assert raised_by_knetpy(info)


# -- the differentiation API --------------------------------------------------------------------------
def test_backward_on_a_non_scalar_needs_a_seed():
    y = P(3) * 2
    with pytest.raises(RuntimeError, match=r"shape \(3,\).*scalar"):
        y.backward()
    with pytest.raises(ValueError, match=r"grad has shape \(2,\), output has shape \(3,\)"):
        y.backward(np.ones(2))


def test_backward_on_a_constant():
    with pytest.raises(RuntimeError, match="does not depend on any tensor that requires a gradient"):
        kp.tensor(np.ones(1)).backward()


def test_second_backward_through_a_freed_graph():
    w = kp.Param(np.array([1.0, 2.0]))
    loss = kp.sum(kp.exp(w) * w)
    loss.backward()
    with pytest.raises(kp.GraphFreedError, match="retain_graph=True"):
        loss.backward()
    assert issubclass(kp.GraphFreedError, RuntimeError)
    # A new loss over a freed intermediate fails the same way.
    h = w * 3
    kp.sum(h).backward()
    with pytest.raises(kp.GraphFreedError):
        kp.sum(h * h).backward()


def test_retain_graph_allows_a_second_backward():
    w = kp.Param(np.array([1.0, 2.0]))
    loss = kp.sum(w * w)
    loss.backward(retain_graph=True)
    loss.backward()
    np.testing.assert_array_equal(w.grad, 2 * (2 * w.value))


def test_grad_of_a_non_scalar_function():
    with pytest.raises(TypeError, match=r"must return a scalar, got an array of shape \(3,\)"):
        kp.grad(lambda x: x * 2)(np.ones(3))
    with pytest.raises(TypeError, match=r"must return a scalar, got an array of shape \(3,\)"):
        kp.grad(lambda x: np.ones(3))(np.ones(3))
    with pytest.raises(TypeError, match="must return a scalar, got NoneType"):
        kp.grad(lambda x: None)(np.ones(3))
    with pytest.raises(TypeError, match="must return a pair"):
        kp.grad(lambda x: kp.sum(x), has_aux=True)(np.ones(3))


def test_grad_of_an_unused_argument_is_zeros_not_none():
    value, (ga, gb) = kp.value_and_grad(lambda a, b: kp.sum(a * 2), argnums=(0, 1))(
        np.ones(2), np.ones((3, 1))
    )
    assert gb is not None and gb.shape == (3, 1) and not gb.any()
    np.testing.assert_array_equal(ga, [2.0, 2.0])


def test_grad_argument_checks():
    with pytest.raises(TypeError, match="argnums=2 but the function was called with 1 arguments"):
        kp.grad(lambda x: kp.sum(x), argnums=2)(np.ones(3))
    with pytest.raises(TypeError, match="argument 0 has a leaf of dtype int64"):
        kp.grad(lambda x: kp.sum(x))(np.ones(3, dtype=np.int64))
    with pytest.raises(TypeError, match="only floating tensors can require gradients, got dtype int64"):
        kp.Param(np.ones(3, dtype=np.int64))
    with pytest.raises(TypeError, match="expected numeric data"):
        kp.tensor(["a", "b"])


def test_in_place_changes_to_computed_tensors_are_refused():
    y = P(3) * 2
    with pytest.raises(RuntimeError, match="in-place update of a tensor computed by an op"):
        y += 1
    with pytest.raises(RuntimeError, match="item assignment on a tensor computed by an op"):
        y[0] = 1.0
    w = P(3)
    w += 1.0  # a leaf may be updated (an optimizer step)
    np.testing.assert_array_equal(w.value, [2.0, 2.0, 2.0])


def test_unsupported_second_derivatives_say_so():
    with pytest.raises(NotImplementedError, match="prod: second derivatives at inputs containing zeros"):
        kp.grad(lambda x: kp.sum(kp.grad(kp.prod)(x)))(np.array([1.0, 0.0, 2.0]))
    with pytest.raises(NotImplementedError, match=r"einsum: gradient for repeated subscripts 'ii'"):
        kp.grad(lambda a: kp.einsum("ii->", a))(np.eye(2))


def test_set_dtype_suggests_the_closest_name():
    with pytest.raises(TypeError, match="did you mean 'float32'"):
        kp.set_dtype("flaot32")
    with pytest.raises(TypeError, match="must be a floating type, got int32"):
        kp.set_dtype("int32")
