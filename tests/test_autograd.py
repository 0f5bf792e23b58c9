"""The differentiation API: grad / value_and_grad over pytrees, PyTorch-style backward, no_grad,
NumPy interoperation, and higher-order derivatives checked against torch.autograd."""

import numpy as np
import pytest
from autodiff_cases import CASES
from hypothesis import given, settings
from hypothesis import strategies as st

import knetpy as kp


def loss(w, x):
    """A small two-layer model over a pytree of parameters."""
    h = kp.tanh(x @ w["layer"][0] + w["layer"][1])
    return kp.sum((h @ w["out"]) ** 2)


def _tree(rng, dtype):
    return {
        "layer": [rng.standard_normal((3, 4)).astype(dtype), rng.standard_normal(4).astype(dtype)],
        "out": rng.standard_normal((4, 2)).astype(dtype),
    }


# -- grad over arrays and pytrees -------------------------------------------------------------------
def test_grad_of_a_single_array():
    x = np.array([1.0, -2.0, 3.0])
    g = kp.grad(lambda a: kp.sum(a**2))(x)
    assert type(g) is np.ndarray
    np.testing.assert_array_equal(g, 2 * x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_grad_over_a_nested_pytree_keeps_structure_type_and_dtype(rng, dtype):
    w = _tree(rng, dtype)
    x = rng.standard_normal((5, 3)).astype(dtype)
    g = kp.grad(loss)(w, x)
    assert set(g) == {"layer", "out"} and isinstance(g["layer"], list) and len(g["layer"]) == 2
    for got, param in [(g["layer"][0], w["layer"][0]), (g["layer"][1], w["layer"][1]), (g["out"], w["out"])]:
        assert type(got) is np.ndarray
        assert got.shape == param.shape and got.dtype == dtype
    # The gradient of one leaf, by finite differences on that leaf alone.
    assert kp.gradcheck(lambda b: loss({"layer": [w["layer"][0], b], "out": w["out"]}, x), w["layer"][1])


def test_grad_over_list_tuple_and_dict(rng):
    a, b = rng.standard_normal(3), rng.standard_normal((2, 3))

    def f(p):
        first, second = (p["a"], p["b"]) if isinstance(p, dict) else p
        return kp.sum(first * second)

    for tree, rebuild in [([a, b], list), ((a, b), tuple), ({"a": a, "b": b}, dict)]:
        g = kp.grad(f)(tree)
        assert type(g) is rebuild
        ga, gb = (g["a"], g["b"]) if rebuild is dict else g
        np.testing.assert_allclose(ga, b.sum(axis=0))
        np.testing.assert_allclose(gb, np.broadcast_to(a, (2, 3)))


def test_grad_of_a_python_float():
    g = kp.grad(lambda x: x * x * 3.0)(2.0)
    assert g == pytest.approx(12.0)


def test_grad_returned_arrays_are_writable_and_not_shared():
    x = np.ones(3)
    gx, gy = kp.grad(lambda a, b: kp.sum(a + b), argnums=(0, 1))(x, x.copy())
    gx *= 2  # optimizers update gradients in place (clipping, weight decay)
    np.testing.assert_array_equal(gy, [1.0, 1.0, 1.0])


def test_value_and_grad_with_int_and_tuple_argnums(rng):
    x, y = rng.standard_normal(3), rng.standard_normal(3)

    def f(a, b):
        return kp.sum(a * b**2)

    value, gy = kp.value_and_grad(f, argnums=1)(x, y)
    assert value == pytest.approx(np.sum(x * y**2))
    np.testing.assert_allclose(gy, 2 * x * y)
    value, (gx, gy2) = kp.value_and_grad(f, argnums=(0, 1))(x, y)
    np.testing.assert_allclose(gx, y**2)
    np.testing.assert_allclose(gy2, gy)
    (gx_only,) = kp.grad(f, argnums=(0,))(x, y)
    np.testing.assert_allclose(gx_only, y**2)


def test_has_aux_returns_the_auxiliary_value_untouched():
    def f(a):
        pred = a * 2
        return kp.sum(pred**2), {"pred": pred, "note": "aux"}

    (value, aux), g = kp.value_and_grad(f, has_aux=True)(np.array([1.0, 2.0]))
    assert value == pytest.approx(20.0)
    assert aux["note"] == "aux"
    np.testing.assert_allclose(np.asarray(aux["pred"]), [2.0, 4.0])
    np.testing.assert_allclose(g, [8.0, 16.0])
    g2, aux2 = kp.grad(f, has_aux=True)(np.array([1.0, 2.0]))
    np.testing.assert_allclose(g2, g)
    assert aux2["note"] == "aux"


def test_grad_passes_keyword_arguments_through():
    g = kp.grad(lambda a, scale=1.0: kp.sum(a * scale))(np.ones(2), scale=3.0)
    np.testing.assert_array_equal(g, [3.0, 3.0])


def test_grad_of_a_function_ignoring_its_argument_is_zeros():
    w = {"used": np.ones(2), "unused": np.ones((3, 2), dtype=np.float32)}
    g = kp.grad(lambda p: kp.sum(p["used"] * 2))(w)
    np.testing.assert_array_equal(g["used"], [2.0, 2.0])
    assert g["unused"].shape == (3, 2) and g["unused"].dtype == np.float32 and not g["unused"].any()
    g = kp.grad(lambda a: 3.0)(np.ones((2, 2)))
    np.testing.assert_array_equal(g, np.zeros((2, 2)))


def test_grad_leaves_its_arguments_alone():
    x = np.array([1.0, 2.0])
    before = x.copy()
    kp.grad(lambda a: kp.sum(a * a))(x)
    np.testing.assert_array_equal(x, before)


# -- the PyTorch way --------------------------------------------------------------------------------
def test_backward_accumulates_over_two_calls_and_zero_grad_resets():
    w = kp.Param(np.array([1.0, -2.0, 3.0]))
    x = np.array([0.5, 1.0, 2.0])
    for _ in range(2):
        kp.sum(w * w * x).backward()
    np.testing.assert_allclose(w.grad, 2 * (2 * w.value * x))
    w.zero_grad()
    assert w.grad is None
    kp.sum(w * x).backward()
    np.testing.assert_allclose(w.grad, x)


def test_backward_matches_grad_and_fills_only_leaves(rng):
    w = _tree(rng, np.float64)
    x = rng.standard_normal((5, 3))
    params = {"layer": [kp.Param(w["layer"][0]), kp.Param(w["layer"][1])], "out": kp.Param(w["out"])}
    out = loss(params, x)
    out.backward()
    g = kp.grad(loss)(w, x)
    np.testing.assert_allclose(params["layer"][0].grad, g["layer"][0])
    np.testing.assert_allclose(params["layer"][1].grad, g["layer"][1])
    np.testing.assert_allclose(params["out"].grad, g["out"])
    assert out.grad is None  # an intermediate result keeps no gradient


def test_backward_with_an_explicit_seed():
    x = kp.Param(np.array([1.0, 2.0, 3.0]))
    y = x * x
    y.backward(np.array([1.0, 0.0, -1.0]))
    np.testing.assert_array_equal(x.grad, [2.0, 0.0, -6.0])


def test_leaf_gradients_are_writable_and_not_shared():
    a, b = kp.Param(np.ones(3)), kp.Param(np.ones(3))
    kp.sum(a + b).backward()
    assert a.grad is not b.grad
    a.grad *= 0.5  # gradient clipping in place
    np.testing.assert_array_equal(b.grad, [1.0, 1.0, 1.0])
    c = kp.Param(np.ones((2, 3)))
    kp.mean(c).backward()
    c.grad += 1.0


def test_constants_and_detached_tensors_get_no_gradient():
    w = kp.Param(np.array([2.0]))
    c = kp.tensor(np.array([3.0]))
    y = kp.sum(w * c + w.detach() * w)
    y.backward()
    np.testing.assert_allclose(w.grad, [3.0 + 2.0])
    assert c.grad is None and not c.requires_grad


def test_no_grad_records_nothing():
    w = kp.Param(np.array([1.0, 2.0]))
    with kp.no_grad():
        y = kp.sum(w * 3)
        assert not kp.is_grad_enabled()
    assert kp.is_grad_enabled()
    assert isinstance(y, kp.Tensor) and not y.requires_grad and y.is_leaf
    with pytest.raises(RuntimeError, match="does not depend on any tensor"):
        y.backward()

    @kp.no_grad()
    def step():
        return w * 2

    assert not step().requires_grad
    with kp.no_grad(), kp.enable_grad():
        assert w.__mul__(2).requires_grad


def test_ops_on_raw_arrays_return_raw_arrays():
    x = np.ones((2, 3))
    for out in (kp.exp(x), kp.sum(x, axis=0), kp.matmul(x, x.T), kp.softmax(x), kp.getitem(x, index=0)):
        assert type(out) is np.ndarray
    assert type(kp.tanh(kp.tensor(x))) is kp.Tensor


# -- NumPy interoperation ---------------------------------------------------------------------------
def test_np_asarray_of_a_tensor():
    t = kp.Param(np.arange(6.0).reshape(2, 3))
    a = np.asarray(t)
    assert type(a) is np.ndarray and a.shape == (2, 3)
    np.testing.assert_array_equal(a, t.value)
    assert np.asarray(t, dtype=np.float32).dtype == np.float32
    np.testing.assert_array_equal(t.numpy(), a)
    assert np.shares_memory(a, t.value)  # asarray is a view of the data
    copied = np.array(t)  # np.array copies, as it does for arrays
    copied[0, 0] = 99.0
    assert t.value[0, 0] == 0.0


@pytest.mark.parametrize(
    "op, expected_grad",
    [
        (lambda a, t: a + t, [1.0, 1.0]),
        (lambda a, t: a - t, [-1.0, -1.0]),
        (lambda a, t: a * t, [2.0, 3.0]),
        (lambda a, t: a / t, [-2.0 / 16.0, -3.0 / 25.0]),
        (lambda a, t: a**t, [np.log(2.0) * 2.0**4, np.log(3.0) * 3.0**5]),
        (lambda a, t: a @ t, [2.0, 3.0]),
    ],
)
def test_ndarray_on_the_left_gives_a_tensor_that_keeps_the_graph(op, expected_grad):
    a = np.array([2.0, 3.0])
    t = kp.Param(np.array([4.0, 5.0]))
    out = op(a, t)
    assert isinstance(out, kp.Tensor) and out.requires_grad
    kp.sum(out).backward()
    np.testing.assert_allclose(t.grad, expected_grad)


def test_numpy_scalars_and_comparisons_with_tensors():
    t = kp.Param(np.array([1.0, -1.0], dtype=np.float32))
    out = np.float32(2.0) * t
    assert isinstance(out, kp.Tensor) and out.requires_grad and out.dtype == np.float32
    mask = np.zeros(2) < t
    assert isinstance(mask, kp.Tensor) and not mask.requires_grad
    np.testing.assert_array_equal(np.asarray(mask), [True, False])


@pytest.mark.parametrize(
    "f",
    [
        lambda x: kp.sum(x * 2.0),
        lambda x: kp.sum(2.0**x),
        lambda x: kp.mean(kp.softplus(x) / 3),
        lambda x: kp.sum(kp.clip(x, -0.5, 0.5) * x),
        lambda x: kp.std(x) + kp.var(x, ddof=1),
        lambda x: kp.nll(kp.reshape(x, (2, 2)), np.array([0, 1])),
        lambda x: kp.logsumexp(x) + kp.sum(kp.elu(x) * kp.selu(x)),
        lambda x: kp.sum(kp.pad(x, 1) * 0.5) + kp.prod(x),
    ],
)
def test_float32_stays_float32_through_backward(f):
    x = np.array([0.3, -1.2, 0.7, 2.0], dtype=np.float32)
    value, g = kp.value_and_grad(f)(x)
    assert np.asarray(value).dtype == np.float32
    assert g.dtype == np.float32
    w = kp.Param(x)
    f(w).backward()
    assert w.grad.dtype == np.float32


# -- higher order -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "f, d2",
    [
        (kp.sin, lambda x: -np.sin(x)),
        (lambda x: x**3, lambda x: 6 * x),
        (kp.tanh, lambda x: -2 * np.tanh(x) * (1 - np.tanh(x) ** 2)),
        (kp.sigm, lambda x: (s := 1 / (1 + np.exp(-x))) * (1 - s) * (1 - 2 * s)),
        (kp.exp, np.exp),
        (kp.log, lambda x: -1 / x**2),
        (kp.softplus, lambda x: (s := 1 / (1 + np.exp(-x))) * (1 - s)),
    ],
)
def test_second_derivative_of_scalar_functions(f, d2):
    for x in (0.3, 1.7):
        got = kp.grad(kp.grad(f))(np.array(x))
        np.testing.assert_allclose(got, d2(x), rtol=1e-10)


def test_third_derivative():
    d3 = kp.grad(kp.grad(kp.grad(lambda x: x**4 + kp.sin(x))))(np.array(0.5))
    np.testing.assert_allclose(d3, 24 * 0.5 - np.cos(0.5), rtol=1e-10)


def _torch_hessian(torch, f, x):
    return torch.autograd.functional.hessian(f, torch.tensor(x)).numpy()


def _kp_hessian(f, x):
    """Rows of the Hessian as gradients of the gradient's components."""
    grad = kp.grad(f)
    rows = [kp.grad(lambda a, i=i: kp.reshape(grad(a), (-1,))[i])(x) for i in range(x.size)]
    return np.stack(rows).reshape(x.shape + x.shape)


@pytest.mark.parametrize(
    "kp_f, torch_f",
    [
        (lambda x: kp.logsumexp(x), lambda t, x: t.logsumexp(x, 0)),
        (
            lambda x: kp.sum(kp.softmax(x) * np.array([1.0, -2.0, 0.5])),
            lambda t, x: (t.softmax(x, 0) * t.tensor([1.0, -2.0, 0.5])).sum(),
        ),
        (lambda x: kp.sum(kp.logp(x) ** 2), lambda t, x: (t.log_softmax(x, 0) ** 2).sum()),
        (
            lambda x: kp.nll(kp.reshape(x, (1, 3)), np.array([2])),
            lambda t, x: t.nn.functional.cross_entropy(x.reshape(1, 3), t.tensor([2])),
        ),
        (
            lambda x: kp.bce(x, np.array([0.0, 1.0, 0.3])),
            lambda t, x: t.nn.functional.binary_cross_entropy_with_logits(x, t.tensor([0.0, 1.0, 0.3])),
        ),
        (
            lambda x: kp.sum(kp.tanh(kp.outer(x, x) @ x) ** 2),
            lambda t, x: (t.tanh(t.outer(x, x) @ x) ** 2).sum(),
        ),
        (lambda x: kp.prod(x) + kp.std(x), lambda t, x: x.prod() + x.std(correction=0)),
    ],
    ids=["logsumexp", "softmax", "logp", "nll", "bce", "matmul_chain", "prod_std"],
)
def test_hessians_match_pytorch(torch, kp_f, torch_f):
    x = np.array([0.4, -1.1, 0.9])
    np.testing.assert_allclose(
        _kp_hessian(kp_f, x), _torch_hessian(torch, lambda a: torch_f(torch, a), x), rtol=1e-6, atol=1e-12
    )


def test_grad_of_grad_through_a_matmul_chain(torch):
    rng = np.random.default_rng(3)
    w1, w2, x = rng.standard_normal((3, 4)), rng.standard_normal((4, 2)), rng.standard_normal((5, 3))

    def f(a, b):
        return kp.sum(kp.sigm(kp.tanh(x @ a) @ b) ** 2)

    def grad_norm(a, b):  # a gradient penalty: || d f / d a ||^2
        return kp.sum(kp.grad(f)(a, b) ** 2)

    ga, gb = kp.grad(grad_norm, argnums=(0, 1))(w1, w2)
    ta, tb = torch.tensor(w1, requires_grad=True), torch.tensor(w2, requires_grad=True)
    out = (torch.sigmoid(torch.tanh(torch.tensor(x) @ ta) @ tb) ** 2).sum()
    (gta,) = torch.autograd.grad(out, ta, create_graph=True)
    want_a, want_b = torch.autograd.grad((gta**2).sum(), (ta, tb))
    np.testing.assert_allclose(ga, want_a.numpy(), rtol=1e-6)
    np.testing.assert_allclose(gb, want_b.numpy(), rtol=1e-6)


def test_backward_create_graph_gradient_penalty_and_hvp(torch):
    rng = np.random.default_rng(4)
    x0, v = rng.standard_normal(4), rng.standard_normal(4)
    w = np.array([[0.5, -1.0, 2.0, 0.1]])

    def f(mod, x):
        return (mod.tanh(x * x) * mod.exp(x * w[0] if mod is kp else x * mod.tensor(w[0]))).sum()

    x = kp.Param(x0)
    f(kp, x).backward(create_graph=True)
    g = x.grad
    assert isinstance(g, kp.Tensor) and g.requires_grad
    x.zero_grad()
    kp.sum(g * v).backward()  # Hessian-vector product
    hvp = x.grad.copy()
    x.zero_grad()
    y = f(kp, x)
    y.backward(create_graph=True)
    penalty = kp.sum(x.grad**2)
    x.zero_grad()
    penalty.backward()

    tx = torch.tensor(x0, requires_grad=True)
    (tg,) = torch.autograd.grad(f(torch, tx), tx, create_graph=True)
    (thvp,) = torch.autograd.grad((tg * torch.tensor(v)).sum(), tx, retain_graph=True)
    (tpen,) = torch.autograd.grad((tg**2).sum(), tx)
    np.testing.assert_allclose(hvp, thvp.numpy(), rtol=1e-6)
    np.testing.assert_allclose(x.grad, tpen.numpy(), rtol=1e-6)


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.second_order], ids=[c.name for c in CASES if c.second_order]
)
@settings(max_examples=10, deadline=None, derandomize=True)
@given(data=st.data())
def test_hessian_vector_products_match_pytorch(torch, case, data):
    """Every VJP is itself differentiable: second-order products agree with torch.autograd."""
    args, kw = data.draw(case.inputs)
    diff = tuple(i for i, a in enumerate(args) if a.dtype.kind == "f")
    rng = np.random.default_rng(0)
    targs = [torch.tensor(a, requires_grad=a.dtype.kind == "f") for a in args]
    out = case.torch_fn(torch, *targs, **kw)
    cot = rng.standard_normal(tuple(out.shape))
    vs = [rng.standard_normal(args[i].shape) for i in diff]

    def inner(*a):
        return kp.sum(case.kp_fn(*a, **kw) * cot)

    def directional(*a):
        gs = kp.grad(inner, argnums=diff)(*a)
        return sum(kp.sum(g * v) for g, v in zip(gs, vs))

    hv = kp.grad(directional, argnums=diff)(*args)

    leaves = [targs[i] for i in diff]
    tg = torch.autograd.grad((out * torch.tensor(cot)).sum(), leaves, create_graph=True, allow_unused=True)
    dot = sum((g * torch.tensor(v)).sum() for g, v in zip(tg, vs) if g is not None)
    if isinstance(dot, int) or not dot.requires_grad:  # a linear op: no second derivative
        want = [np.zeros(args[i].shape) for i in diff]
    else:
        want = [
            np.zeros(args[i].shape) if t is None else t.numpy(force=True)
            for i, t in zip(diff, torch.autograd.grad(dot, leaves, allow_unused=True))
        ]
    for i, got, w in zip(diff, hv, want):
        np.testing.assert_allclose(got, w, rtol=1e-6, atol=1e-10, err_msg=f"argument {i}")


# -- more structures and tensor methods ----------------------------------------------------------------
def test_grad_over_namedtuple_and_ordered_dict():
    from collections import OrderedDict, namedtuple

    Pair = namedtuple("Pair", "a b")
    g = kp.grad(lambda p: kp.sum(p.a * p.b))(Pair(np.ones(2), np.array([0.0, 1.0])))
    assert type(g) is Pair
    np.testing.assert_array_equal(g.a, [0.0, 1.0])
    np.testing.assert_array_equal(g.b, [1.0, 1.0])
    g = kp.grad(lambda p: kp.sum(p["a"] * 2))(OrderedDict(a=np.ones(2)))
    assert type(g) is OrderedDict
    np.testing.assert_array_equal(g["a"], [2.0, 2.0])


def test_grad_of_a_param_is_a_plain_gradient():
    """A Param handed to grad is the user's parameter: its gradient is an array, and no graph is kept."""
    w = kp.Param(np.array([1.0, 2.0]))
    g = kp.grad(lambda p: kp.sum(p * p * p))(w)  # 3 w^2
    assert type(g) is np.ndarray
    np.testing.assert_array_equal(g, [3.0, 12.0])
    assert w.grad is None


def test_grad_of_a_tensor_on_an_outer_tape_stays_differentiable():
    """A non-Param tensor that requires a gradient is differentiated on the tape, so the result can be too."""
    w = kp.Param(np.array([1.0, 2.0]))
    v = w * 1.0  # on the tape, depends on w
    g = kp.grad(lambda p: kp.sum(p * p * p))(v)  # 3 v^2
    assert isinstance(g, kp.Tensor) and g.requires_grad
    kp.sum(g).backward()  # d/dw sum(3 w^2) = 6 w
    np.testing.assert_array_equal(w.grad, [6.0, 12.0])


def test_boolean_mask_from_a_comparison():
    x = kp.Param(np.array([-1.0, 2.0, 3.0]))
    kp.sum(x[x > 0] ** 2).backward()
    np.testing.assert_array_equal(x.grad, [0.0, 4.0, 6.0])


def test_astype_sends_the_gradient_back_in_the_input_dtype():
    g = kp.grad(lambda a: kp.sum(kp.astype(a, np.float64) * 2))(np.ones(3, np.float32))
    assert g.dtype == np.float32
    np.testing.assert_array_equal(g, [2.0, 2.0, 2.0])


def test_tensor_methods_differentiate_like_the_functions(torch):
    x = np.arange(1.0, 7.0).reshape(2, 3) / 4

    def with_methods(t):
        parts = [
            t.T.sum(),
            t.mT.sum() * 2,
            t.reshape(3, 2).sum(axis=0).max(),
            t.mean(axis=0).sum(),
            t.max(),
            t.min(),
            t.var(),
            t.std(axis=1).sum(),
            t.prod(),
            t.flatten().sum(),
            t.exp().sum(),
            t[:, None].sum(),
            t.unsqueeze(0).squeeze().sum(),
            t.swapaxes(0, 1)[0].sum(),
            t.sigmoid().sum(),
            t.relu().sum(),
            t.softmax(axis=1)[:, 0].sum(),
            t.logsumexp(axis=1).sum(),
            t.tanh().abs().sqrt().sum(),
            t.sin().sum() + t.cos().sum() + t.log().sum() + t.square().sum() + t.clip(0.5, 1.0).sum(),
        ]
        out = parts[0]
        for p in parts[1:]:
            out = out + p
        return out

    def with_torch(t):
        return (
            t.T.sum()
            + t.mT.sum() * 2
            + t.reshape(3, 2).sum(0).max()
            + t.mean(0).sum()
            + t.max()
            + t.min()
            + t.var(correction=0)
            + t.std(1, correction=0).sum()
            + t.prod()
            + t.flatten().sum()
            + t.exp().sum()
            + t[:, None].sum()
            + t.unsqueeze(0).squeeze().sum()
            + t.swapaxes(0, 1)[0].sum()
            + t.sigmoid().sum()
            + t.relu().sum()
            + t.softmax(1)[:, 0].sum()
            + t.logsumexp(1).sum()
            + t.tanh().abs().sqrt().sum()
            + t.sin().sum()
            + t.cos().sum()
            + t.log().sum()
            + t.square().sum()
            + t.clamp(0.5, 1.0).sum()
        )

    w = kp.Param(x)
    value = with_methods(w)
    value.backward()
    tw = torch.tensor(x, requires_grad=True)
    tv = with_torch(tw)
    tv.backward()
    np.testing.assert_allclose(float(value), tv.item(), rtol=1e-12)
    np.testing.assert_allclose(w.grad, tw.grad.numpy(), rtol=1e-10)
