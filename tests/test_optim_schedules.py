"""Learning-rate schedules against torch.optim.lr_scheduler, and by their formulas."""

import json
import math
import warnings

import numpy as np
import pytest

import knetpy as kp
from knetpy.optim import schedules

BASE_LR = 0.1


def torch_sequence(torch, make, steps, metrics=None):
    """Rates of a torch scheduler: at creation, then after each step."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=BASE_LR)
    sched = make(torch, opt)
    seq = [opt.param_groups[0]["lr"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for t in range(steps):
            opt.step()
            sched.step(metrics[t]) if metrics is not None else sched.step()
            seq.append(opt.param_groups[0]["lr"])
    return np.array(seq)


def knet_sequence(make, steps, metrics=None):
    opt = kp.optim.SGD(lr=BASE_LR)
    sched = make(opt)
    seq = [opt.lr]
    for t in range(steps):
        returned = sched.step(metrics[t]) if metrics is not None else sched.step()
        assert returned == opt.lr == sched.get_last_lr()
        seq.append(opt.lr)
    return np.array(seq)


TORCH_CASES = {
    "step": (
        lambda o: schedules.StepLR(o, step_size=3, gamma=0.5),
        lambda torch, o: torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5),
    ),
    "exponential": (
        lambda o: schedules.ExponentialLR(o, gamma=0.9),
        lambda torch, o: torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.9),
    ),
    "cosine": (
        lambda o: schedules.CosineAnnealingLR(o, T_max=10, eta_min=0.001),
        lambda torch, o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=10, eta_min=0.001),
    ),
    "cosine_to_zero": (
        lambda o: schedules.CosineAnnealingLR(o, T_max=7),
        lambda torch, o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=7),
    ),
    "warmup_then_cosine": (
        lambda o: schedules.LinearWarmup(o, 4, after=schedules.CosineAnnealingLR(o, T_max=6, eta_min=0.01)),
        lambda torch, o: torch.optim.lr_scheduler.SequentialLR(
            o,
            [
                torch.optim.lr_scheduler.LinearLR(o, start_factor=1 / 4, end_factor=1.0, total_iters=3),
                torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=6, eta_min=0.01),
            ],
            milestones=[3],
        ),
    ),
    "warmup_then_step": (
        lambda o: schedules.LinearWarmup(o, 5, after=schedules.StepLR(o, step_size=2, gamma=0.7)),
        lambda torch, o: torch.optim.lr_scheduler.SequentialLR(
            o,
            [
                torch.optim.lr_scheduler.LinearLR(o, start_factor=1 / 5, end_factor=1.0, total_iters=4),
                torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.7),
            ],
            milestones=[4],
        ),
    ),
}


@pytest.mark.parametrize("case", list(TORCH_CASES))
def test_schedule_matches_torch(torch, case):
    ours_make, torch_make = TORCH_CASES[case]
    steps = 27  # past T_max, where the cosine rises again
    ours = knet_sequence(ours_make, steps)
    theirs = torch_sequence(torch, torch_make, steps)
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-15)
    assert len(set(np.round(ours, 12))) > 2  # the rate really changed


def test_formulas_with_known_numbers():
    opt = kp.optim.SGD(lr=1.0)
    inv = schedules.InverseTimeLR(opt, decay=0.5)
    assert [inv(t) for t in range(4)] == [1.0, 1 / 1.5, 0.5, 1 / 2.5]
    assert [inv.step() for _ in range(3)] == [1 / 1.5, 0.5, 1 / 2.5]
    opt = kp.optim.SGD(lr=0.2)
    warm = schedules.LinearWarmup(opt, 4)
    assert opt.lr == pytest.approx(0.05)
    assert [warm.step() for _ in range(5)] == pytest.approx([0.1, 0.15, 0.2, 0.2, 0.2])
    opt = kp.optim.SGD(lr=0.3)
    cos = schedules.CosineAnnealingLR(opt, T_max=4, eta_min=0.1)
    assert [cos(t) for t in (0, 2, 4, 6, 8)] == pytest.approx([0.3, 0.2, 0.1, 0.2, 0.3])
    assert schedules.StepLR(kp.optim.SGD(lr=1.0), 2, gamma=0.1)(5) == pytest.approx(0.01)


PLATEAU_METRICS = [
    5,
    4,
    4.1,
    4.0,
    3.9996,
    4.2,
    4.3,
    3.0,
    3.0,
    3.0,
    3.0,
    3.5,
    2.0,
    2.0,
    2.0,
    2.0,
    2.0,
    2.0,
    1.9,
    2.5,
    2.5,
    2.5,
    2.5,
    2.5,
    2.5,
    2.5,
    2.5,
    2.5,
    2.5,
    2.5,
]


@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        dict(patience=1),
        dict(mode="max", patience=2, factor=0.5),
        dict(patience=1, threshold=0.1, threshold_mode="abs", cooldown=2),
        dict(patience=0, factor=0.3, min_lr=0.005, cooldown=1),
        dict(mode="max", patience=0, threshold=0.05, threshold_mode="rel", factor=0.9, eps=1e-3),
    ],
)
def test_reduce_on_plateau_matches_torch(torch, kw):
    metrics = PLATEAU_METRICS
    ours = knet_sequence(lambda o: schedules.ReduceLROnPlateau(o, **kw), len(metrics), metrics)
    theirs = torch_sequence(
        torch, lambda t, o: t.optim.lr_scheduler.ReduceLROnPlateau(o, **kw), len(metrics), metrics
    )
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    assert len(set(ours)) > 1  # the plateau logic reduced the rate at least once


def test_reduce_on_plateau_reduces_and_respects_min_lr():
    opt = kp.optim.SGD(lr=1.0)
    plateau = schedules.ReduceLROnPlateau(opt, patience=1, factor=0.5, min_lr=0.3)
    lrs = [plateau.step(m) for m in [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]]
    assert lrs == [1.0, 1.0, 0.5, 0.5, 0.3, 0.3, 0.3]
    assert plateau.best == 1.0


@pytest.mark.parametrize("case", ["step", "cosine", "warmup_then_cosine"])
def test_schedule_state_dict_roundtrip(case):
    make = TORCH_CASES[case][0]
    opt_a = kp.optim.SGD(lr=BASE_LR)
    a = make(opt_a)
    for _ in range(6):
        a.step()
    state = json.loads(json.dumps(a.state_dict()))
    opt_b = kp.optim.SGD(lr=0.777)
    b = make(opt_b)
    b.load_state_dict(state)
    assert opt_b.lr == opt_a.lr
    for _ in range(8):
        assert b.step() == a.step()


def test_plateau_state_dict_roundtrip():
    opt_a = kp.optim.SGD(lr=BASE_LR)
    a = schedules.ReduceLROnPlateau(opt_a, patience=1, cooldown=1)
    for m in PLATEAU_METRICS[:9]:
        a.step(m)
    state = json.loads(json.dumps(a.state_dict()))
    opt_b = kp.optim.SGD(lr=0.5)
    b = schedules.ReduceLROnPlateau(opt_b)
    b.load_state_dict(state)
    assert opt_b.lr == opt_a.lr and b.patience == 1
    for m in PLATEAU_METRICS[9:]:
        assert b.step(m) == a.step(m)


def test_schedule_drives_functional_optimizers():
    tree = {"w": np.ones(2), "b": np.ones(1)}
    opts = kp.optim.optimizers(tree, "sgd", lr=1.0)
    sched = schedules.ExponentialLR(opts, gamma=0.5)
    sched.step()
    assert opts["w"].lr == opts["b"].lr == 0.5
    kp.optim.update(tree, {"w": np.ones(2), "b": np.ones(1)}, opts)
    np.testing.assert_allclose(tree["w"], 0.5)


def test_schedule_errors():
    opt = kp.optim.SGD(lr=0.1)
    with pytest.raises(ValueError, match="step_size"):
        schedules.StepLR(opt, step_size=0)
    with pytest.raises(ValueError, match="did you mean 'min'"):
        schedules.ReduceLROnPlateau(opt, mode="mni")
    with pytest.raises(ValueError, match="factor"):
        schedules.ReduceLROnPlateau(opt, factor=1.0)
    with pytest.raises(TypeError, match="expected an optimizer"):
        schedules.ExponentialLR("adam", gamma=0.9)
    with pytest.raises(TypeError, match="step-based schedule"):
        schedules.LinearWarmup(opt, 3, after=schedules.ReduceLROnPlateau(opt))
    with pytest.raises(ValueError, match="same optimizer"):
        schedules.LinearWarmup(opt, 3, after=schedules.StepLR(kp.optim.SGD(lr=0.1), 2))
    with pytest.raises(ValueError, match="belongs to 'StepLR'"):
        schedules.ExponentialLR(opt, 0.9).load_state_dict(schedules.StepLR(opt, 2).state_dict())
    with pytest.raises(TypeError, match="metric must be a number"):
        schedules.ReduceLROnPlateau(opt).step("low")


def test_lr_scheduler_alias_and_callable():
    assert kp.optim.lr_scheduler is schedules
    opt = kp.optim.SGD(lr=0.4)
    sched = kp.optim.StepLR(opt, 1, gamma=0.5)
    assert sched(2) == 0.1 and opt.lr == 0.4  # calling does not change the optimizer
    assert math.isclose(kp.optim.ExponentialLR(opt, 0.5).base_lr, 0.4)
