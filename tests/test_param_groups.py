"""Parameter groups (torch.optim style): per-group learning rates and options in every optimizer."""

import numpy as np
import pytest

import knetpy as kp

FIRST_ORDER = ["sgd", "momentum", "nesterov", "adagrad", "adadelta", "rmsprop", "adam", "adamax", "adamw"]
RICH_OPTIONS = {
    "sgd": dict(momentum=0.9, dampening=0.1),
    "rmsprop": dict(momentum=0.5, centered=True),
    "adam": dict(amsgrad=True),
    "adamw": dict(weight_decay=0.1),
}


def grad_fn(i, value, t):
    return np.sin(value * (i + 1) + t) + 0.1 * t


def _params(seed=0):
    rng = np.random.default_rng(seed)
    return [kp.Param(rng.standard_normal(s)) for s in [(3, 2), (4,), (2, 2)]]


def _run(opt, params, steps, start=0):
    for t in range(start, start + steps):
        for i, p in enumerate(params):
            p.grad = grad_fn(i, p.value, t)
        opt.step()


@pytest.mark.parametrize("name", FIRST_ORDER)
def test_groups_equal_one_optimizer_per_group(name):
    """Two groups with their own rates update exactly as two separate optimizers with those rates."""
    kw = RICH_OPTIONS.get(name, {})
    a, b = _params(), _params()
    grouped = kp.optim.get(name, lr=0.02, **kw).bind([{"params": a[:2], "lr": 0.002}, {"params": a[2:]}])
    body = kp.optim.get(name, lr=0.002, **kw).bind(b[:2])
    head = kp.optim.get(name, lr=0.02, **kw).bind(b[2:])
    for t in range(6):
        for i, p in enumerate(a):
            p.grad = grad_fn(i, p.value, t)
        for i, p in enumerate(b):
            p.grad = grad_fn(i, p.value, t)
        grouped.step()
        body.step()
        head.step()
    for pa, pb in zip(a, b):
        np.testing.assert_array_equal(pa.value, pb.value)
    assert [g["lr"] for g in grouped.param_groups] == [0.002, 0.02]
    assert list(grouped.params) == ["0.0", "0.1", "1.0"]


def test_a_group_with_lr_zero_is_frozen_and_others_move():
    a = _params()
    before = [p.value.copy() for p in a]
    opt = kp.optim.Adam([{"params": a[:1], "lr": 0.0}, {"params": a[1:]}], lr=0.1)
    _run(opt, a, 3)
    np.testing.assert_array_equal(a[0].value, before[0])
    assert not np.allclose(a[1].value, before[1])


def test_group_options_besides_lr():
    """A group may set any option of the rule (here no weight decay and no momentum for one group)."""
    a, b = _params(), _params()
    opt = kp.optim.SGD([{"params": a[:2]}, {"params": a[2:], "weight_decay": 0.0, "momentum": 0.0}],
                       lr=0.1, momentum=0.9, weight_decay=0.5)
    ref1 = kp.optim.SGD(b[:2], lr=0.1, momentum=0.9, weight_decay=0.5)
    ref2 = kp.optim.SGD(b[2:], lr=0.1)
    for t in range(4):
        for ps in (a, b):
            for i, p in enumerate(ps):
                p.grad = grad_fn(i, p.value, t)
        opt.step()
        ref1.step()
        ref2.step()
    for pa, pb in zip(a, b):
        np.testing.assert_allclose(pa.value, pb.value, rtol=0, atol=1e-15)
    assert "momentum_buffer" not in opt.state["1.0"]


def test_torch_parity_adam_param_groups(torch):
    rng = np.random.default_rng(1)
    w = [rng.standard_normal((3, 2)), rng.standard_normal(4)]
    ours = [kp.Param(v.copy()) for v in w]
    theirs = [torch.tensor(v.copy(), requires_grad=True) for v in w]
    opt = kp.optim.Adam([{"params": ours[:1], "lr": 1e-3}, {"params": ours[1:], "betas": (0.8, 0.99)}], lr=1e-2)
    topt = torch.optim.Adam([{"params": theirs[:1], "lr": 1e-3}, {"params": theirs[1:], "betas": (0.8, 0.99)}],
                            lr=1e-2)
    for t in range(5):
        for i, (p, q) in enumerate(zip(ours, theirs)):
            g = grad_fn(i, p.value, t)
            p.grad = g
            q.grad = torch.tensor(g)
        opt.step()
        topt.step()
    for p, q in zip(ours, theirs):
        np.testing.assert_allclose(p.value, q.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_schedules_keep_the_ratio_between_groups():
    a = _params()
    opt = kp.optim.SGD([{"params": a[:1], "lr": 0.01}, {"params": a[1:]}], lr=0.1)
    sched = kp.optim.StepLR(opt, step_size=1, gamma=0.5)
    sched.step()
    assert opt.lr == pytest.approx(0.05)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.005, 0.05])
    opt.param_groups[0]["lr"] = 0.0  # set by hand: used at the next step
    before = a[0].value.copy()
    _run(opt, a, 1)
    np.testing.assert_array_equal(a[0].value, before)


@pytest.mark.parametrize("name", ["adam", "sgd", "rmsprop"])
def test_state_dict_keeps_group_rates_and_resumes_identically(name):
    kw = RICH_OPTIONS.get(name, {})
    a = _params()
    opt_a = kp.optim.get(name, lr=0.01, **kw).bind([{"params": a[:2], "lr": 0.001}, {"params": a[2:]}])
    _run(opt_a, a, 3)
    opt_a.param_groups[1]["lr"] = 0.007
    sd = opt_a.state_dict()
    assert [g["lr"] for g in sd["meta"]["groups"]] == [0.001, 0.007]

    b = [kp.Param(p.value.copy()) for p in a]
    opt_b = kp.optim.get(name, lr=0.01, **kw).bind([{"params": b[:2]}, {"params": b[2:]}])
    opt_b.load_state_dict(sd)
    assert [g["lr"] for g in opt_b.param_groups] == [0.001, 0.007]
    _run(opt_a, a, 3, start=3)
    _run(opt_b, b, 3, start=3)
    for pa, pb in zip(a, b):
        np.testing.assert_array_equal(pa.value, pb.value)


def test_ungrouped_state_dict_is_unchanged_and_group_count_must_match():
    a = _params()
    plain = kp.optim.Adam(a, lr=0.01)
    _run(plain, a, 1)
    assert "groups" not in plain.state_dict()["meta"]
    grouped = kp.optim.Adam([{"params": a[:1]}, {"params": a[1:]}])
    sd = grouped.state_dict()
    sd["meta"]["groups"] = sd["meta"]["groups"][:1]
    with pytest.raises(ValueError, match="groups"):
        kp.optim.Adam([{"params": a[:1]}, {"params": a[1:]}]).load_state_dict(sd)
    sd = grouped.state_dict()
    sd["meta"]["groups"][0]["lr"] = -1.0
    with pytest.raises(ValueError, match="lr"):
        kp.optim.Adam([{"params": a[:1]}, {"params": a[1:]}]).load_state_dict(sd)


def test_save_and_load_keep_the_groups(tmp_path):
    a = _params()
    opt = kp.optim.Adam([{"params": a[:2], "lr": 1e-4}, {"params": a[2:]}], lr=1e-2)
    _run(opt, a, 2)
    path = tmp_path / "opt.ckpt"
    kp.save(path, {"params": a, "opt": opt})
    back = kp.load(path)
    opt_b, b = back["opt"], back["params"]
    assert [g["lr"] for g in opt_b.param_groups] == [1e-4, 1e-2]
    assert [len(g["params"]) for g in opt_b.param_groups] == [2, 1]
    _run(opt, a, 2, start=2)
    _run(opt_b, b, 2, start=2)
    for pa, pb in zip(a, b):
        np.testing.assert_array_equal(pa.value, pb.value)


def test_group_errors_are_clear():
    a = _params()
    with pytest.raises(ValueError, match=r"also in param_groups\[0\]"):
        kp.optim.SGD([{"params": a[:2]}, {"params": a[1:]}])
    with pytest.raises(ValueError, match=r"param_groups\[1\] sets unknown options \['momentun'\]"):
        kp.optim.SGD([{"params": a[:2]}, {"params": a[2:], "momentun": 0.9}])
    with pytest.raises(ValueError, match=r"lr must be finite"):
        kp.optim.Adam([{"params": a[:2], "lr": -1.0}, {"params": a[2:]}])
    with pytest.raises(ValueError, match=r"Adam.param_groups\[0\]: Adam: betas\[1\] must be in"):
        kp.optim.Adam([{"params": a, "betas": (0.9, 1.5)}])
    with pytest.raises(ValueError, match="'params' entry; group 1"):
        kp.optim.Adam([{"params": a[:1]}, {"lr": 0.1}])
    with pytest.raises(ValueError, match="LBFGS: parameter groups"):
        kp.optim.LBFGS([{"params": a[:1], "lr": 0.1}, {"params": a[1:]}])
    kp.optim.LBFGS([{"params": a}])  # one group without options of its own is fine


def test_fit_trains_each_group_at_its_rate():
    """Model.fit keeps an optimizer built over groups: a body at lr 0 stays, the head learns."""
    kp.set_seed(0)
    x = np.random.default_rng(0).standard_normal((64, 4))
    y = (x[:, 0] > 0).astype(np.int64)
    body, head = kp.layers.Dense(8, activation="relu"), kp.layers.Dense(2)
    model = kp.Sequential([body, head])
    model.build_for((4,))
    before = {k: p.value.copy() for k, p in body.params.items()}
    opt = kp.optim.Adam([{"params": body.parameters(), "lr": 0.0}, {"params": head.parameters()}], lr=0.05)
    model.compile(loss="cross_entropy", optimizer=opt)
    hist = model.fit(x, y, epochs=5, batch_size=16, verbose=0)
    for k, p in body.params.items():
        np.testing.assert_array_equal(p.value, before[k])
    assert hist.history["loss"][-1] < hist.history["loss"][0]
