"""First-order optimizers: trajectories against torch.optim, hand-written rules, worked examples."""

import math

import numpy as np
import pytest

import knetpy as kp

SHAPES = [(3, 4), (5,), (2, 3, 2)]
STEPS = 20


def initial_params(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s) for s in SHAPES]


def grad_at(i, p, step):
    """Gradients that vary with the parameter, its position and the step (and change sign)."""
    return np.cos(p * (1 + i)) * (1.0 + 0.3 * step) + 0.5 * np.sin(step + i) + 0.1 * p


def run_knet(cls, kw, steps=STEPS, skip=None):
    """Trajectory of knetpy's optimizer; ``skip(t, i)`` True leaves parameter i without a gradient."""
    ps = [kp.Param(a.copy()) for a in initial_params()]
    opt = cls(ps, **kw)
    traj = []
    for t in range(steps):
        for i, p in enumerate(ps):
            p.grad = None if skip and skip(t, i) else grad_at(i, p.value, t)
        opt.step()
        traj.append([p.value.copy() for p in ps])
    return traj


def run_torch(torch, name, kw, steps=STEPS, clip_norm=None, clip_value=None, skip=None):
    ps = [torch.tensor(a.copy(), requires_grad=True) for a in initial_params()]
    opt = getattr(torch.optim, name)(ps, **kw)
    traj = []
    for t in range(steps):
        for i, p in enumerate(ps):
            p.grad = None if skip and skip(t, i) else torch.from_numpy(grad_at(i, p.detach().numpy(), t))
        live = [p for p in ps if p.grad is not None]
        if clip_value is not None:
            torch.nn.utils.clip_grad_value_(live, clip_value)
        if clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(live, clip_norm)
        opt.step()
        traj.append([p.detach().numpy().copy() for p in ps])
    return traj


def assert_same_trajectory(ours, theirs, rtol=1e-5, atol=1e-12):
    assert len(ours) == len(theirs)
    for t, (a, b) in enumerate(zip(ours, theirs)):
        for i, (x, y) in enumerate(zip(a, b)):
            np.testing.assert_allclose(x, y, rtol=rtol, atol=atol, err_msg=f"step {t}, parameter {i}")


# (knetpy class, its options, torch class, torch options)
TORCH_CASES = [
    (kp.optim.SGD, dict(lr=0.1), "SGD", dict(lr=0.1)),
    (kp.optim.SGD, dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01), "SGD", None),
    (kp.optim.SGD, dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.05), "SGD", None),
    (kp.optim.Momentum, dict(lr=0.05), "SGD", dict(lr=0.05, momentum=0.9)),
    (
        kp.optim.Nesterov,
        dict(lr=0.05, weight_decay=0.01),
        "SGD",
        dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
    ),
    (kp.optim.Adagrad, dict(lr=0.1), "Adagrad", None),
    (
        kp.optim.Adagrad,
        dict(lr=0.1, lr_decay=0.05, weight_decay=0.01, initial_accumulator_value=0.1, eps=1e-8),
        "Adagrad",
        None,
    ),
    (kp.optim.Adadelta, dict(), "Adadelta", None),
    (kp.optim.Adadelta, dict(lr=0.5, rho=0.8, eps=1e-5, weight_decay=0.02), "Adadelta", None),
    (kp.optim.RMSprop, dict(lr=0.01), "RMSprop", None),
    (kp.optim.RMSprop, dict(lr=0.01, momentum=0.9, centered=True, weight_decay=0.01), "RMSprop", None),
    (kp.optim.RMSprop, dict(lr=0.02, alpha=0.9, eps=1e-6, momentum=0.5), "RMSprop", None),
    (kp.optim.Adam, dict(lr=0.01), "Adam", None),
    (kp.optim.Adam, dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1, amsgrad=True), "Adam", None),
    (kp.optim.Adam, dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True), "Adam", None),
    (kp.optim.AdamW, dict(lr=0.01), "AdamW", None),
    (kp.optim.AdamW, dict(lr=0.02, weight_decay=0.05, amsgrad=True, eps=1e-6), "AdamW", None),
    (kp.optim.Adamax, dict(lr=0.01), "Adamax", None),
    (kp.optim.Adamax, dict(lr=0.02, betas=(0.7, 0.9), weight_decay=0.1), "Adamax", None),
]


@pytest.mark.parametrize(
    "cls, kw, torch_name, torch_kw", TORCH_CASES, ids=lambda v: getattr(v, "__name__", None)
)
def test_trajectory_matches_torch(torch, cls, kw, torch_name, torch_kw):
    ours = run_knet(cls, kw)
    theirs = run_torch(torch, torch_name, kw if torch_kw is None else torch_kw)
    assert_same_trajectory(ours, theirs)
    # The parameters really moved (a do-nothing optimizer would fail the comparison too, but say so).
    assert not np.allclose(ours[-1][0], initial_params()[0])


@pytest.mark.parametrize(
    "cls, kw, torch_name",
    [
        (kp.optim.SGD, dict(lr=0.1, momentum=0.9), "SGD"),
        (kp.optim.Adam, dict(lr=0.05, weight_decay=0.01), "Adam"),
        (kp.optim.RMSprop, dict(lr=0.01, centered=True), "RMSprop"),
    ],
)
@pytest.mark.parametrize("clip_norm, clip_value", [(1.5, None), (None, 0.7), (2.0, 0.9)])
def test_clipping_matches_torch_utils(torch, cls, kw, torch_name, clip_norm, clip_value):
    ours = run_knet(cls, dict(kw, clip_norm=clip_norm, clip_value=clip_value))
    theirs = run_torch(torch, torch_name, kw, clip_norm=clip_norm, clip_value=clip_value)
    assert_same_trajectory(ours, theirs)
    unclipped = run_knet(cls, kw)
    assert not np.allclose(ours[-1][0], unclipped[-1][0])  # clipping was active


def test_parameters_without_gradient_are_skipped_like_torch(torch):
    def skip(t, i):
        return (i == 1 and t % 3 == 0) or (i == 2 and t < 4)

    kw = dict(lr=0.01, weight_decay=0.1)
    assert_same_trajectory(run_knet(kp.optim.Adam, kw, skip=skip), run_torch(torch, "Adam", kw, skip=skip))
    kw = dict(lr=0.05, momentum=0.9, dampening=0.2)
    assert_same_trajectory(run_knet(kp.optim.SGD, kw, skip=skip), run_torch(torch, "SGD", kw, skip=skip))


def test_param_with_no_grad_is_untouched_and_has_no_state():
    a, b = kp.Param(np.ones(3)), kp.Param(np.ones(2))
    opt = kp.optim.Adam([a, b], lr=0.1, weight_decay=0.5)
    a.grad = np.ones(3)
    opt.step()
    np.testing.assert_array_equal(b.value, np.ones(2))
    assert list(opt.state) == ["0"] and opt.state["0"]["step"] == 1


# -- worked examples ------------------------------------------------------------------------------
def test_sgd_worked_example():
    p = kp.Param(np.array([1.0, 2.0]))
    opt = kp.optim.SGD([p], lr=0.1)
    p.grad = np.array([0.5, -1.0])
    opt.step()
    np.testing.assert_allclose(p.value, [0.95, 2.1], rtol=1e-12)


def test_momentum_worked_example():
    p = kp.Param(np.array([1.0]))
    opt = kp.optim.Momentum([p], lr=0.1)
    for _ in range(2):
        p.grad = np.array([1.0])
        opt.step()
    # buffer 1 then 0.9 * 1 + 1 = 1.9: p = 1 - 0.1 - 0.19
    np.testing.assert_allclose(p.value, [0.71], rtol=1e-12)


def test_nesterov_worked_example():
    p = kp.Param(np.array([1.0]))
    opt = kp.optim.Nesterov([p], lr=0.1)
    p.grad = np.array([1.0])
    opt.step()
    # buffer 1, direction g + 0.9 * buffer = 1.9
    np.testing.assert_allclose(p.value, [0.81], rtol=1e-12)


def test_adam_first_step_moves_by_lr():
    p = kp.Param(np.array([1.0, -2.0, 3.0]))
    opt = kp.optim.Adam([p], lr=0.01)
    p.grad = np.array([5.0, -0.3, 1e-3])
    opt.step()
    # Bias-corrected m / sqrt(v) is sign(g) on the first step.
    np.testing.assert_allclose(p.value, [0.99, -1.99, 2.99], rtol=1e-7)


def test_adagrad_and_adamax_first_steps():
    p = kp.Param(np.array([1.0, 1.0]))
    opt = kp.optim.Adagrad([p], lr=0.5)
    p.grad = np.array([2.0, -4.0])
    opt.step()
    np.testing.assert_allclose(p.value, [0.5, 1.5], rtol=1e-9)
    q = kp.Param(np.array([1.0]))
    opt = kp.optim.Adamax([q], lr=0.1)
    q.grad = np.array([3.0])
    opt.step()
    np.testing.assert_allclose(q.value, [0.9], rtol=1e-7)


def test_clip_norm_worked_example():
    p = kp.Param(np.zeros(2))
    opt = kp.optim.SGD([p], lr=1.0, clip_norm=1.0)
    p.grad = np.array([3.0, 4.0])
    opt.step()
    np.testing.assert_allclose(p.value, [-0.6, -0.8], rtol=1e-6)


def test_clip_value_worked_example():
    p = kp.Param(np.zeros(3))
    opt = kp.optim.SGD([p], lr=1.0, clip_value=0.5)
    p.grad = np.array([3.0, -0.2, -4.0])
    opt.step()
    np.testing.assert_allclose(p.value, [-0.5, 0.2, 0.5])


def test_clip_norm_is_global_over_params():
    a, b = kp.Param(np.zeros(1)), kp.Param(np.zeros(1))
    opt = kp.optim.SGD([a, b], lr=1.0, clip_norm=2.5)
    a.grad, b.grad = np.array([3.0]), np.array([4.0])
    opt.step()
    np.testing.assert_allclose([a.value[0], b.value[0]], [-1.5, -2.0], rtol=1e-6)


@pytest.mark.parametrize(
    "name", ["sgd", "momentum", "adam", "adamw", "rmsprop", "adagrad", "adadelta", "adamax"]
)
def test_zero_gradient_with_clipping_gives_no_nan(name):
    p = kp.Param(np.ones((2, 2)))
    opt = kp.optim.get(name, lr=0.1, clip_norm=1.0, clip_value=1.0, weight_decay=0.0)
    opt.bind([p])
    p.grad = np.zeros((2, 2))
    opt.step()
    assert np.all(np.isfinite(p.value))
    np.testing.assert_allclose(p.value, np.ones((2, 2)))


# -- rules torch lacks, written out by hand --------------------------------------------------------
def hand_adam(params, grads_fn, steps, lr, b1, b2, eps, wd, eta, gamma, seed, clip_norm=None):
    """Kingma & Ba's Algorithm 1 with L2 weight decay, global-norm clipping and annealed noise."""
    noise_rng = np.random.default_rng(seed)
    params = [p.copy() for p in params]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    for t in range(steps):
        gs = [grads_fn(i, p, t) for i, p in enumerate(params)]
        if clip_norm is not None:
            norm = math.sqrt(sum(float(np.sum(g**2)) for g in gs))
            gs = [g * min(1.0, clip_norm / (norm + 1e-6)) for g in gs]
        sigma = math.sqrt(eta / (1 + t) ** gamma)
        gs = [g + sigma * noise_rng.standard_normal(g.shape) for g in gs]
        for i, p in enumerate(params):
            g = gs[i] + wd * p
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g**2
            m_hat = m[i] / (1 - b1 ** (t + 1))
            v_hat = v[i] / (1 - b2 ** (t + 1))
            params[i] = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    return params


def test_adam_with_gradient_noise_matches_hand_rule():
    kw = dict(lr=0.01, betas=(0.9, 0.99), eps=1e-7, weight_decay=0.01)
    kp.set_seed(123)
    ours = run_knet(kp.optim.Adam, dict(kw, grad_noise=0.3, grad_noise_decay=0.55, clip_norm=3.0))[-1]
    hand = hand_adam(
        initial_params(), grad_at, STEPS, 0.01, 0.9, 0.99, 1e-7, 0.01, 0.3, 0.55, seed=123, clip_norm=3.0
    )
    for x, y in zip(ours, hand):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-12)
    no_noise = run_knet(kp.optim.Adam, dict(kw, clip_norm=3.0))[-1]
    assert not np.allclose(ours[0], no_noise[0])


def test_sgd_gradient_noise_matches_hand_rule_and_anneals():
    eta, gamma, lr = 0.5, 0.55, 0.1
    kp.set_seed(5)
    p = kp.Param(np.zeros(4000))
    opt = kp.optim.SGD([p], lr=lr, grad_noise=eta, grad_noise_decay=gamma)
    rng = np.random.default_rng(5)
    expected = np.zeros(4000)
    steps_taken = []
    for t in range(4):
        before = p.value.copy()
        p.grad = np.ones(4000)
        opt.step()
        expected = expected - lr * (1.0 + math.sqrt(eta / (1 + t) ** gamma) * rng.standard_normal(4000))
        steps_taken.append((before - p.value) / lr - 1.0)
    np.testing.assert_allclose(p.value, expected, rtol=1e-12)
    # The empirical variance of the noise follows eta / (1 + t)^gamma.
    for t, noise in enumerate(steps_taken):
        assert abs(noise.var() / (eta / (1 + t) ** gamma) - 1) < 0.1


def test_noise_reproducible_with_set_seed():
    finals = []
    for _ in range(2):
        kp.set_seed(42)
        finals.append(run_knet(kp.optim.SGD, dict(lr=0.1, grad_noise=1.0), steps=3)[-1][0])
    np.testing.assert_array_equal(finals[0], finals[1])


# -- dtypes and in-place behaviour -----------------------------------------------------------------
ALL_FIRST_ORDER = ["sgd", "momentum", "nesterov", "adagrad", "adadelta", "rmsprop", "adam", "adamax", "adamw"]


@pytest.mark.parametrize("name", ALL_FIRST_ORDER)
def test_float32_stays_float32_and_updates_in_place(name):
    p = kp.Param(np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3))
    value = p.value
    opt = kp.optim.get(name, lr=0.01, weight_decay=0.1, clip_norm=1.0, clip_value=0.5, grad_noise=0.01)
    opt.bind([p])
    g = np.full((2, 3), 2.0, dtype=np.float32)
    g_copy = g.copy()
    for _ in range(3):
        p.grad = g
        opt.step()
    assert p.value is value and p.value.dtype == np.float32
    assert all(v.dtype == np.float32 for v in opt.state["0"].values() if isinstance(v, np.ndarray))
    np.testing.assert_array_equal(g, g_copy)  # the gradient array was never written
    assert not np.allclose(p.value, np.linspace(-1, 1, 6).reshape(2, 3))


def test_float64_gradient_on_float32_param_keeps_float32():
    p = kp.Param(np.ones(3, dtype=np.float32))
    opt = kp.optim.Adam([p], lr=0.1)
    p.grad = np.ones(3, dtype=np.float64)
    opt.step()
    assert p.value.dtype == np.float32 and opt.state["0"]["exp_avg"].dtype == np.float32


def test_training_with_backward_reduces_loss():
    kp.set_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 3)).astype(np.float32)
    y = x @ np.array([1.0, -2.0, 0.5], dtype=np.float32) + 0.3
    w, b = kp.Param(np.zeros(3, dtype=np.float32)), kp.Param(np.zeros(1, dtype=np.float32))
    opt = kp.optim.Adam({"w": w, "b": b}, lr=0.1)
    losses = []
    for _ in range(100):
        loss = kp.mean((x @ w + b - y) ** 2)
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(float(loss))
    assert w.grad is None
    assert losses[-1] < 1e-3 * losses[0]
    np.testing.assert_allclose(w.value, [1.0, -2.0, 0.5], atol=0.05)


def test_step_with_closure_returns_loss():
    p = kp.Param(np.array([2.0]))
    opt = kp.optim.SGD([p], lr=0.25)

    def closure():
        opt.zero_grad()
        loss = kp.sum(p * p)
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert float(loss) == 4.0
    np.testing.assert_allclose(p.value, [1.0])
