"""L-BFGS against torch.optim.LBFGS on least squares and Rosenbrock, plus its own behaviour."""

import json

import numpy as np
import pytest

import knetpy as kp
from knetpy.optim.line_search import Trial, cubic_minimizer


def least_squares_data():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((30, 5))
    b = a @ rng.standard_normal(5) + 0.1 * rng.standard_normal(30) + 1.0
    return a, b


def make_problem(kind):
    """(initial parameter values, knetpy loss, torch loss) for one problem."""
    if kind == "least_squares":
        a, b = least_squares_data()

        def loss_kp(w, c):
            return kp.mean((a @ w + c - b) ** 2)

        def loss_torch(torch, w, c):
            return torch.mean((torch.from_numpy(a) @ w + c - torch.from_numpy(b)) ** 2)

        return [np.zeros(5), np.zeros(1)], loss_kp, loss_torch

    def rosen_kp(x, y):  # x: the first coordinate, y: the second, as two parameters
        return kp.sum(100.0 * (y - x * x) ** 2 + (1.0 - x) ** 2)

    def rosen_torch(torch, x, y):
        return torch.sum(100.0 * (y - x * x) ** 2 + (1.0 - x) ** 2)

    return [np.array([-1.5]), np.array([2.0])], rosen_kp, rosen_torch


def run_knet(kind, steps, l2=0.0, **kw):
    values, loss_fn, _ = make_problem(kind)
    ps = [kp.Param(v.copy()) for v in values]
    opt = kp.optim.LBFGS(ps, weight_decay=l2, **kw)

    def closure():
        opt.zero_grad()
        loss = loss_fn(*ps)
        loss.backward()
        return loss

    out = []
    for _ in range(steps):
        loss = opt.step(closure)
        out.append(([p.value.copy() for p in ps], float(loss), opt.state["func_evals"], opt.state["n_iter"]))
    return out, opt, ps, closure


def run_torch(torch, kind, steps, l2=0.0, **kw):
    values, _, loss_fn = make_problem(kind)
    ps = [torch.tensor(v.copy(), requires_grad=True) for v in values]
    opt = torch.optim.LBFGS(ps, **kw)

    def closure():
        opt.zero_grad()
        loss = loss_fn(torch, *ps)
        if l2:  # the penalty knetpy's weight_decay adds to the objective
            loss = loss + 0.5 * l2 * sum((p * p).sum() for p in ps)
        loss.backward()
        return loss

    out = []
    for _ in range(steps):
        loss = opt.step(closure)
        st = opt.state[ps[0]]
        out.append(
            ([p.detach().numpy().copy() for p in ps], float(loss.detach()), st["func_evals"], st["n_iter"])
        )
    return out


CASES = [
    ("least_squares", dict(lr=1.0, max_iter=4, history_size=3)),
    ("least_squares", dict(lr=0.5, max_iter=20, history_size=2, line_search_fn="strong_wolfe")),
    ("rosenbrock", dict(lr=0.02, max_iter=10, history_size=4)),
    ("rosenbrock", dict(lr=1.0, max_iter=12, history_size=5, line_search_fn="strong_wolfe")),
    ("rosenbrock", dict(lr=1.0, max_iter=20, max_eval=15, history_size=100, line_search_fn="strong_wolfe")),
    # Small first steps: the line search has to extrapolate before it can bracket.
    ("least_squares", dict(lr=0.05, max_iter=10, history_size=3, line_search_fn="strong_wolfe")),
    ("rosenbrock", dict(lr=0.1, max_iter=10, history_size=3, line_search_fn="strong_wolfe")),
]


@pytest.mark.parametrize("kind, kw", CASES)
def test_lbfgs_matches_torch(torch, kind, kw):
    ours, *_ = run_knet(kind, 4, **kw)
    theirs = run_torch(torch, kind, 4, **kw)
    for step, ((pa, la, ea, ia), (pb, lb, eb, ib)) in enumerate(zip(ours, theirs)):
        assert (ea, ia) == (eb, ib), f"step {step}: evaluations/iterations differ"
        assert la == pytest.approx(lb, rel=1e-6)
        for x, y in zip(pa, pb):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-10, err_msg=f"step {step}")


def test_lbfgs_weight_decay_matches_torch_with_penalised_loss(torch):
    kw = dict(lr=1.0, max_iter=6, history_size=3, line_search_fn="strong_wolfe")
    ours, *_ = run_knet("least_squares", 3, l2=0.3, **kw)
    theirs = run_torch(torch, "least_squares", 3, l2=0.3, **kw)
    for (pa, *_), (pb, *_) in zip(ours, theirs):
        for x, y in zip(pa, pb):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-10)


def test_lbfgs_solves_least_squares_and_rosenbrock():
    a, b = least_squares_data()
    design = np.hstack([a, np.ones((30, 1))])
    exact = np.linalg.lstsq(design, b, rcond=None)[0]
    out, *_ = run_knet(
        "least_squares", 3, line_search_fn="strong_wolfe", tolerance_change=1e-14, tolerance_grad=1e-12
    )
    w, c = out[-1][0]
    np.testing.assert_allclose(np.concatenate([w, c]), exact, rtol=1e-6, atol=1e-8)
    out, *_ = run_knet("rosenbrock", 10, max_iter=50, line_search_fn="strong_wolfe")
    x, y = out[-1][0]
    np.testing.assert_allclose([x[0], y[0]], [1.0, 1.0], atol=1e-5)


def test_lbfgs_stops_at_optimum_without_moving():
    p = kp.Param(np.zeros(3))
    opt = kp.optim.LBFGS([p])

    def closure():
        opt.zero_grad()
        loss = kp.sum(p * p)
        loss.backward()
        return loss

    assert float(opt.step(closure)) == 0.0
    assert opt.state["func_evals"] == 1 and opt.state["n_iter"] == 0
    np.testing.assert_array_equal(p.value, 0.0)


def test_lbfgs_float32_stays_float32():
    a, b = least_squares_data()
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    w = kp.Param(np.zeros(5, dtype=np.float32))
    opt = kp.optim.LBFGS([w], line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = kp.mean((a32 @ w - b32) ** 2)
        loss.backward()
        return loss

    first = float(opt.step(closure))
    assert w.value.dtype == np.float32 and opt.state["d"].dtype == np.float32
    assert float(closure()) < 0.5 * first


def test_lbfgs_needs_closure_and_params():
    with pytest.raises(RuntimeError, match="bind"):
        kp.optim.LBFGS().step(lambda: 0.0)
    with pytest.raises(TypeError, match="needs a closure"):
        kp.optim.LBFGS([kp.Param(np.ones(2))]).step()
    with pytest.raises(TypeError, match="must return the scalar loss"):
        kp.optim.LBFGS([kp.Param(np.ones(2))]).step(lambda: None)


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_lbfgs_state_dict_roundtrip(line_search_fn):
    kw = dict(lr=0.5, max_iter=3, history_size=2, line_search_fn=line_search_fn)
    _, opt_a, ps_a, closure_a = run_knet("rosenbrock", 2, **kw)
    sd = opt_a.state_dict()
    sd = {"meta": json.loads(json.dumps(sd["meta"])), "arrays": sd["arrays"]}
    assert sd["arrays"]["old_dirs"].shape[0] == len(opt_a.state["old_dirs"]) > 0

    values, loss_fn, _ = make_problem("rosenbrock")
    ps_b = [kp.Param(p.value.copy()) for p in ps_a]
    opt_b = kp.optim.LBFGS(ps_b)
    opt_b.load_state_dict(sd)
    assert opt_b.max_iter == 3 and opt_b.line_search_fn == line_search_fn

    def closure_b():
        opt_b.zero_grad()
        loss = loss_fn(*ps_b)
        loss.backward()
        return loss

    for _ in range(3):
        opt_a.step(closure_a)
        opt_b.step(closure_b)
    for pa, pb in zip(ps_a, ps_b):
        np.testing.assert_array_equal(pa.value, pb.value)
    with pytest.raises(ValueError, match="saved state is for 2 parameters"):
        kp.optim.LBFGS([kp.Param(np.ones(3))]).load_state_dict(sd)


def test_cubic_minimizer_finds_minimum_of_a_cubic():
    def f(t):
        return (t - 0.3) ** 2 * (t + 2.0)  # local minimum at t = 0.3

    def df(t):
        return 2 * (t - 0.3) * (t + 2.0) + (t - 0.3) ** 2

    a, b = Trial(0.0, f(0.0), None, df(0.0)), Trial(1.0, f(1.0), None, df(1.0))
    assert cubic_minimizer(a, b) == pytest.approx(0.3, rel=1e-12)
    assert cubic_minimizer(b, a) == pytest.approx(0.3, rel=1e-12)
    assert cubic_minimizer(a, b, bounds=(0.5, 0.9)) == 0.5
