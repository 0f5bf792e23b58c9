"""Higher-order derivatives: nested grad over closures, jacobian, hessian, hvp (vs torch and differences)."""

import threading

import numpy as np
import pytest

import knetpy as kp
from knetpy import functional


def _numeric_jacobian(f, x, eps=1e-6):
    """Central differences in float64: shape f(x).shape + x.shape."""
    x = np.array(x, dtype=np.float64)
    out = np.asarray(f(x), dtype=np.float64)
    jac = np.zeros(out.shape + x.shape)
    for j in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[j] = eps
        jac[(...,) + j] = (np.asarray(f(x + e)) - np.asarray(f(x - e))) / (2 * eps)
    return jac


def _plain(f):
    """``f`` on plain arrays, nothing recorded."""

    def run(*a):
        with kp.no_grad():
            out = f(*a)
        return out.value if isinstance(out, kp.Tensor) else out

    return run


# -- nested grad over closed-over variables --------------------------------------------------------------
def test_inner_gradient_stays_differentiable_in_a_closed_over_variable():
    got = kp.grad(lambda w: kp.grad(lambda x: w * x * x)(3.0))(1.5)
    assert got == 6.0 and isinstance(got, float)  # d/dw (2 w x) = 2x
    assert kp.grad(lambda x: 1.5 * x * x)(3.0) == 9.0  # the plain call is unchanged


def test_three_levels_of_closures():
    def f(a):
        return kp.grad(lambda b: kp.grad(lambda x: a**2 * b**3 * x**4)(2.0))(1.5)

    # d/dx = 4 a^2 b^3 x^3, d/db = 12 a^2 b^2 x^3, d/da = 24 a b^2 x^3
    np.testing.assert_allclose(kp.grad(f)(0.5), 24 * 0.5 * 1.5**2 * 8, rtol=1e-6)


@pytest.mark.parametrize("x", [0.7, -1.3])
def test_derivatives_of_x_to_the_fourth(x):
    def f(x):
        return x**4

    x = np.array(x)
    np.testing.assert_allclose(kp.grad(kp.grad(kp.grad(f)))(x), 24 * x, rtol=1e-12)
    np.testing.assert_allclose(kp.grad(kp.grad(kp.grad(kp.grad(f))))(x), 24.0, rtol=1e-12)
    np.testing.assert_allclose(kp.grad(kp.grad(kp.grad(kp.grad(kp.grad(f)))))(x), 0.0, atol=1e-12)
    # the same third derivative, one level taken through a closure
    d3 = kp.grad(lambda s: kp.grad(kp.grad(lambda y: (s * y) ** 4))(x))(np.array(1.0))
    np.testing.assert_allclose(d3, 4 * 12 * x**2, rtol=1e-12)  # d/ds of 12 s^4 y^2 at s=1


def test_closure_over_several_outer_variables_with_argnums_tuples(torch):
    rng = np.random.default_rng(0)
    w1, w2, c = rng.standard_normal((3, 4)), rng.standard_normal(3), rng.standard_normal(4)
    x0, z0 = rng.standard_normal(4), rng.standard_normal(4)

    def inner(mod, a, b, c, x, z):
        return (mod.tanh(a @ (x * c)) * b).sum() + (z * c * x * x).sum()

    def penalty(a, b, c):  # the inner arguments are constants: a, b, c reach it only by closure
        gx, gz = kp.grad(lambda x, z: inner(kp, a, b, c, x, z), argnums=(0, 1))(x0, z0)
        return kp.sum(gx**2) + kp.sum(gz * gx)

    got = kp.grad(penalty, argnums=(0, 1, 2))(w1, w2, c)

    ta, tb, tc = (torch.tensor(v, requires_grad=True) for v in (w1, w2, c))
    tx, tz = torch.tensor(x0, requires_grad=True), torch.tensor(z0, requires_grad=True)
    gx, gz = torch.autograd.grad(inner(torch, ta, tb, tc, tx, tz), (tx, tz), create_graph=True)
    want = torch.autograd.grad((gx**2).sum() + (gz * gx).sum(), (ta, tb, tc))
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w.numpy(), rtol=1e-9)


def test_has_aux_in_inner_and_outer_calls():
    def inner(x, w):
        return w * x**3, {"x": x}

    def outer(w):
        g, aux = kp.grad(inner, has_aux=True)(2.0, w)  # 3 w x^2
        return g * w, aux["x"]

    (value, x), dw = kp.value_and_grad(outer, has_aux=True)(np.array(0.5))
    np.testing.assert_allclose(value, 3 * 0.25 * 4, rtol=1e-6)  # 3 w^2 x^2
    np.testing.assert_allclose(dw, 6 * 0.5 * 4, rtol=1e-6)  # 6 w x^2
    np.testing.assert_allclose(np.asarray(x), 2.0)
    g, aux = kp.grad(outer, has_aux=True)(np.array(0.5))
    np.testing.assert_allclose(g, 12.0, rtol=1e-6)


def test_top_level_closure_over_a_tensor_requiring_grad_stays_differentiable():
    w = kp.tensor(np.array(1.5), requires_grad=True)
    g = kp.grad(lambda x: w * x * x)(np.array(3.0))  # 2 w x, a function of w
    assert isinstance(g, kp.Tensor) and g.requires_grad
    (g * g).backward()  # d/dw (2wx)^2 = 8 w x^2
    np.testing.assert_allclose(w.grad, 8 * 1.5 * 9.0)


def test_backward_with_create_graph_inside_grad():
    def f(x):
        y = kp.sum(x**3)
        y.backward(create_graph=True)  # x.grad = 3 x^2, recorded
        return kp.sum(x.grad * x)  # 3 x^3

    x = np.array([0.5, -2.0])
    np.testing.assert_allclose(kp.grad(f)(x), 9 * x**2, rtol=1e-12)


def test_inner_gradient_does_not_free_nodes_of_the_outer_graph():
    p = kp.Param(np.array([0.5, 2.0]))

    def f(x):
        h = p * 2.0  # computed outside the inner call, used by both
        g = kp.grad(lambda y: kp.sum(h * y * y))(np.array([1.0, 1.0]))
        return kp.sum(h * x) + kp.sum(g)

    np.testing.assert_allclose(kp.grad(f)(np.array([3.0, 4.0])), [1.0, 4.0])


def test_nesting_depth_is_per_thread():
    inside, release, seen = threading.Event(), threading.Event(), []

    def waiting(x):
        inside.set()
        release.wait(10)
        return kp.sum(x * x)

    def recording(x):
        seen.append(functional._depth())
        return kp.sum(x * x)

    t = threading.Thread(target=lambda: kp.grad(waiting)(np.ones(2)))
    t.start()
    assert inside.wait(10)
    try:
        g = kp.grad(recording)(np.ones(2))
    finally:
        release.set()
        t.join()
    assert seen == [1]  # this thread's own call only, not the other thread's
    assert type(g) is np.ndarray


# -- gradient penalty, MAML -------------------------------------------------------------------------------
def _critic(mod, w, x):
    return mod.tanh(x @ w["W1"] + w["b1"]) @ w["W2"]


def _init_critic(rng):
    return {
        "W1": rng.standard_normal((3, 5)),
        "b1": rng.standard_normal(5) * 0.1,
        "W2": rng.standard_normal(5),
    }


def test_wgan_gradient_penalty_matches_torch_and_differences(torch):
    rng = np.random.default_rng(1)
    w, x = _init_critic(rng), rng.standard_normal((4, 3))

    def penalty(w, x):
        gx = kp.grad(lambda xx: kp.sum(_critic(kp, w, xx)))(x)  # d D(x_i) / d x_i, row by row
        norms = kp.sqrt(kp.sum(gx**2, axis=1))
        return kp.mean((norms - 1.0) ** 2)

    got = kp.grad(penalty)(w, x)

    tw = {k: torch.tensor(v, requires_grad=True) for k, v in w.items()}
    tx = torch.tensor(x, requires_grad=True)
    (tg,) = torch.autograd.grad(_critic(torch, tw, tx).sum(), tx, create_graph=True)
    want = torch.autograd.grad(((tg.norm(dim=1) - 1) ** 2).mean(), list(tw.values()))
    for k, t in zip(tw, want):
        np.testing.assert_allclose(got[k], t.numpy(), rtol=1e-9)
        flat = w[k].ravel()

        def along(v, k=k):
            return float(penalty({**w, k: v.reshape(w[k].shape)}, x))

        fd = _numeric_jacobian(along, flat).reshape(w[k].shape)
        np.testing.assert_allclose(got[k], fd, rtol=1e-5, atol=1e-8)


def test_gradient_penalty_pytorch_style_with_params(torch):
    rng = np.random.default_rng(2)
    w = {k: kp.Param(v) for k, v in _init_critic(rng).items()}
    x = kp.tensor(rng.standard_normal((4, 3)), requires_grad=True)  # as torch: the input requires grad
    gx = kp.grad(lambda xx: kp.sum(_critic(kp, w, xx)))(x)
    kp.sum(gx**2).backward()

    tw = {k: torch.tensor(v.value, requires_grad=True) for k, v in w.items()}
    tx = torch.tensor(x.value, requires_grad=True)
    (tg,) = torch.autograd.grad(_critic(torch, tw, tx).sum(), tx, create_graph=True)
    (tg**2).sum().backward()
    for k in w:
        np.testing.assert_allclose(w[k].grad, tw[k].grad.numpy(), rtol=1e-9)


def test_maml_inner_step_matches_torch(torch):
    rng = np.random.default_rng(3)
    w0 = {"W": rng.standard_normal((3, 2)), "b": rng.standard_normal(2)}
    xa, ya = rng.standard_normal((6, 3)), rng.standard_normal((6, 2))
    xb, yb = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    alpha = 0.1

    def loss(mod, w, x, y):
        return ((mod.tanh(x @ w["W"] + w["b"]) - y) ** 2).mean()

    def maml(w):
        g = kp.grad(lambda v: loss(kp, v, xa, ya))(w)
        adapted = {k: w[k] - alpha * g[k] for k in w}
        return loss(kp, adapted, xb, yb)

    got = kp.grad(maml)(w0)

    tw = {k: torch.tensor(v, requires_grad=True) for k, v in w0.items()}
    tg = torch.autograd.grad(
        loss(torch, tw, torch.tensor(xa), torch.tensor(ya)), list(tw.values()), create_graph=True
    )
    adapted = {k: tw[k] - alpha * g for k, g in zip(tw, tg)}
    want = torch.autograd.grad(loss(torch, adapted, torch.tensor(xb), torch.tensor(yb)), list(tw.values()))
    for k, t in zip(tw, want):
        np.testing.assert_allclose(got[k], t.numpy(), rtol=1e-9)


# -- jacobian, hessian, hvp -------------------------------------------------------------------------------
_A = np.random.default_rng(4).standard_normal((3, 4))
_B = np.random.default_rng(5).standard_normal(3)

VECTOR_FUNCTIONS = {
    "elementwise": (lambda x: kp.sin(x) * x**2, lambda t, x: t.sin(x) * x**2),
    "matmul_tanh": (lambda x: kp.tanh(_A @ x + _B), lambda t, x: t.tanh(t.tensor(_A) @ x + t.tensor(_B))),
    "softmax": (lambda x: kp.softmax(x, axis=0), lambda t, x: t.softmax(x, 0)),
}
SCALAR_FUNCTIONS = {
    "elementwise": (lambda x: kp.sum(kp.exp(x) * kp.sin(x)), lambda t, x: (t.exp(x) * t.sin(x)).sum()),
    "matmul_tanh": (
        lambda x: kp.sum(kp.tanh(_A @ x + _B) ** 2),
        lambda t, x: (t.tanh(t.tensor(_A) @ x + t.tensor(_B)) ** 2).sum(),
    ),
    "logsumexp": (lambda x: kp.logsumexp(x * x), lambda t, x: t.logsumexp(x * x, 0)),
}
_X = np.array([0.3, -1.2, 0.8, 0.05])


@pytest.mark.parametrize("name", list(VECTOR_FUNCTIONS))
def test_jacobian_matches_torch_and_differences(torch, name):
    kf, tf = VECTOR_FUNCTIONS[name]
    got = kp.jacobian(kf)(_X)
    want = torch.autograd.functional.jacobian(lambda x: tf(torch, x), torch.tensor(_X)).numpy()
    assert type(got) is np.ndarray and got.shape == want.shape == _plain(kf)(_X).shape + _X.shape
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(got, _numeric_jacobian(_plain(kf), _X), rtol=1e-6, atol=1e-9)


def test_jacobian_shapes_and_argnums(torch):
    x = np.random.default_rng(6).standard_normal((2, 3))
    m = np.random.default_rng(7).standard_normal((3, 4))
    jx, jm = kp.jacobian(lambda x, m: kp.tanh(x @ m), argnums=(0, 1))(x, m)
    assert jx.shape == (2, 4, 2, 3) and jm.shape == (2, 4, 3, 4)
    tjx, tjm = torch.autograd.functional.jacobian(
        lambda a, b: torch.tanh(a @ b), (torch.tensor(x), torch.tensor(m))
    )
    np.testing.assert_allclose(jx, tjx.numpy(), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(jm, tjm.numpy(), rtol=1e-10, atol=1e-14)
    # a constant output, an output that ignores the argument, a scalar function of a scalar
    np.testing.assert_array_equal(kp.jacobian(lambda x: np.ones(2))(x), np.zeros((2, 2, 3)))
    np.testing.assert_allclose(kp.jacobian(lambda x: x**3)(np.array(2.0)), 12.0)
    # pytree in, pytree out; has_aux
    jac, aux = kp.jacobian(lambda d: ((d["a"] * 2.0, kp.sum(d["b"])), "aux"), has_aux=True)(
        {"a": np.ones(2), "b": np.ones(3)}
    )
    assert aux == "aux"
    np.testing.assert_array_equal(jac[0]["a"], 2 * np.eye(2))
    np.testing.assert_array_equal(jac[0]["b"], np.zeros((2, 3)))
    np.testing.assert_array_equal(jac[1]["b"], np.ones(3))


@pytest.mark.parametrize("name", list(SCALAR_FUNCTIONS))
def test_hessian_matches_torch_and_differences(torch, name):
    kf, tf = SCALAR_FUNCTIONS[name]
    got = kp.hessian(kf)(_X)
    assert type(got) is np.ndarray and got.shape == (4, 4)
    want = torch.autograd.functional.hessian(lambda x: tf(torch, x), torch.tensor(_X)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got, _numeric_jacobian(kp.grad(kf), _X), rtol=1e-6, atol=1e-8)


def test_hessian_blocks_for_argnums_tuple(torch):
    x, y = np.array([0.5, -0.3]), np.array([1.1, 0.2, -0.7])
    m = np.random.default_rng(8).standard_normal((2, 3))

    def f(mod, x, y):
        return mod.tanh(x @ (m if mod is kp else mod.tensor(m)) @ y) ** 2

    got = kp.hessian(lambda a, b: f(kp, a, b), argnums=(0, 1))(x, y)
    want = torch.autograd.functional.hessian(lambda a, b: f(torch, a, b), (torch.tensor(x), torch.tensor(y)))
    for i in range(2):
        for j in range(2):
            np.testing.assert_allclose(got[i][j], want[i][j].numpy(), rtol=1e-10, atol=1e-14)
    assert got[0][1].shape == (2, 3) and got[1][0].shape == (3, 2)


@pytest.mark.parametrize("name", list(SCALAR_FUNCTIONS))
def test_hvp_matches_torch_and_differences(torch, name):
    kf, tf = SCALAR_FUNCTIONS[name]
    v = np.array([1.0, -0.5, 0.25, 2.0])
    value, hv = kp.hvp(kf, _X, v)
    tvalue, thv = torch.autograd.functional.hvp(lambda x: tf(torch, x), torch.tensor(_X), torch.tensor(v))
    assert type(hv) is np.ndarray and hv.shape == _X.shape
    np.testing.assert_allclose(value, tvalue.numpy(), rtol=1e-12)
    np.testing.assert_allclose(hv, thv.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(hv, _numeric_jacobian(kp.grad(kf), _X) @ v, rtol=1e-6, atol=1e-8)


def test_hvp_with_several_arguments(torch):
    x, y = np.array([0.5, -0.3]), np.array([1.1, 0.2])
    vx, vy = np.array([1.0, 2.0]), np.array([-1.0, 0.5])
    value, (hx, hy) = kp.hvp(lambda a, b: kp.sum(kp.sin(a * b) * a), (x, y), (vx, vy))
    _, (tx, ty) = torch.autograd.functional.hvp(
        lambda a, b: (torch.sin(a * b) * a).sum(),
        (torch.tensor(x), torch.tensor(y)),
        (torch.tensor(vx), torch.tensor(vy)),
    )
    np.testing.assert_allclose(hx, tx.numpy(), rtol=1e-10)
    np.testing.assert_allclose(hy, ty.numpy(), rtol=1e-10)


def test_jacobian_hessian_hvp_inside_grad_match_torch(torch):
    """Each stays differentiable in a closed-over variable: d/dw of a contractive penalty ||J||^2,
    of trace(H) and of v.Hv."""
    x0, v = np.array([0.4, -0.9, 1.3]), np.array([0.5, 1.0, -2.0])
    w0 = np.random.default_rng(9).standard_normal((2, 3))

    def f(mod, w, x):
        return mod.sigmoid(w @ x) if mod is torch else kp.sigm(w @ x)

    def s(mod, w, x):
        return (f(mod, w, x) ** 2).sum()

    got_j = kp.grad(lambda w: kp.sum(kp.jacobian(lambda x: f(kp, w, x))(x0) ** 2))(w0)
    got_h = kp.grad(lambda w: kp.sum(kp.hessian(lambda x: s(kp, w, x))(x0) * np.eye(3)))(w0)
    got_v = kp.grad(lambda w: kp.sum(kp.hvp(lambda x: s(kp, w, x), x0, v)[1] * v))(w0)

    tw, tx, tv = torch.tensor(w0, requires_grad=True), torch.tensor(x0), torch.tensor(v)
    fn = torch.autograd.functional
    (want_j,) = torch.autograd.grad(
        (fn.jacobian(lambda x: f(torch, tw, x), tx, create_graph=True) ** 2).sum(), tw
    )
    (want_h,) = torch.autograd.grad(fn.hessian(lambda x: s(torch, tw, x), tx, create_graph=True).trace(), tw)
    (want_v,) = torch.autograd.grad(
        (fn.hvp(lambda x: s(torch, tw, x), tx, tv, create_graph=True)[1] * tv).sum(), tw
    )
    np.testing.assert_allclose(got_j, want_j.numpy(), rtol=1e-9)
    np.testing.assert_allclose(got_h, want_h.numpy(), rtol=1e-9)
    np.testing.assert_allclose(got_v, want_v.numpy(), rtol=1e-9)


def test_errors_name_the_function_and_the_shapes():
    with pytest.raises(TypeError, match="jacobian: argument 0 has a leaf of dtype int64"):
        kp.jacobian(lambda x: x)(np.arange(3))
    with pytest.raises(TypeError, match=r"jacobian: argnums=1 but the function was called with 1 arguments"):
        kp.jacobian(lambda x: x, argnums=1)(np.ones(2))
    with pytest.raises(ValueError, match=r"hvp: tangent 0 has shape \(2,\) but its primal has shape \(3,\)"):
        kp.hvp(kp.sum, np.ones(3), np.ones(2))
    with pytest.raises(TypeError, match="grad: the function must return a scalar"):
        kp.hessian(lambda x: x * 2)(np.ones(2))
