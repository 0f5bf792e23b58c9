"""Learning-rate schedules: they set ``optimizer.lr`` as training goes, one ``.step()`` per epoch/batch.

Use them as in ``torch.optim.lr_scheduler``: create the schedule on an optimizer (which sets the
step-0 rate), then call ``opt.step()`` and afterwards ``schedule.step()``. The rate at step ``t`` is
a closed-form function of ``t`` and the optimizer's rate when the schedule was created
(``base_lr``), so the sequences equal torch's. A schedule owns the rate: setting ``opt.lr`` by hand
is overridden at its next step. ``optimizer`` may also be a pytree of optimizers from
:func:`knetpy.optim.optimizers` (the functional style); all get the same rate.
"""

from __future__ import annotations

import math

from ..tree import flatten
from .base import Optimizer
from .validate import check_choice, check_int, check_number


def _optimizers_in(optimizer, owner):
    if isinstance(optimizer, Optimizer):
        return [optimizer]
    leaves, _ = flatten(optimizer)
    if not leaves or not all(isinstance(o, Optimizer) for o in leaves):
        raise TypeError(
            f"{owner}: expected an optimizer (or a pytree of them from kp.optim.optimizers), "
            f"got {type(optimizer).__name__}"
        )
    return leaves


class Schedule:
    """Base class: subclasses define ``lr_at(t)`` and list their settings in ``config_names``."""

    config_names: tuple = ()

    def __init__(self, optimizer):
        self.optimizer = optimizer
        self._targets = _optimizers_in(optimizer, type(self).__name__)
        #: The rate at step 0 (the optimizer's rate when the schedule was created).
        self.base_lr = self._targets[0].lr
        #: Number of ``step()`` calls so far.
        self.last_step = 0
        self.last_lr = self.base_lr
        self._apply(self.lr_at(0))

    def lr_at(self, t: int) -> float:
        """The learning rate after ``t`` calls of ``step()``."""
        raise NotImplementedError

    def __call__(self, t: int) -> float:
        """The rate at step ``t`` (without changing anything): schedules double as functions."""
        return self.lr_at(t)

    def step(self):
        """Advance one step and set the optimizer's rate; returns the new rate."""
        self.last_step += 1
        self._apply(self.lr_at(self.last_step))
        return self.last_lr

    def _apply(self, lr):
        for opt in self._targets:
            opt.lr = lr
        self.last_lr = float(lr)

    def get_last_lr(self) -> float:
        """The rate set by the latest step (or at creation)."""
        return self.last_lr

    def state_dict(self) -> dict:
        """Plain JSON-serialisable state: the schedule's name, settings and counters."""
        return {
            "schedule": type(self).__name__,
            "config": {name: getattr(self, name) for name in self.config_names},
            "base_lr": self.base_lr,
            "last_step": self.last_step,
            "last_lr": self.last_lr,
        }

    def load_state_dict(self, state: dict):
        """Restore a :meth:`state_dict`, and set the optimizer's rate to the saved one."""
        cls = type(self).__name__
        if not isinstance(state, dict) or state.get("schedule") != cls:
            found = state.get("schedule") if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"{cls}.load_state_dict: this state belongs to {found!r}")
        for name, value in state["config"].items():
            if name not in self.config_names:
                raise ValueError(f"{cls}.load_state_dict: unknown setting {name!r}")
            setattr(self, name, value)
        self.base_lr = float(state["base_lr"])
        self.last_step = int(state["last_step"])
        self._apply(state["last_lr"])

    def __repr__(self):
        body = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.config_names)
        return f"{type(self).__name__}({body})"


class StepLR(Schedule):
    """``base_lr * gamma ** (t // step_size)``: decay by ``gamma`` every ``step_size`` steps."""

    config_names = ("step_size", "gamma")

    def __init__(self, optimizer, step_size, gamma=0.1):
        self.step_size = check_int("StepLR", "step_size", step_size)
        self.gamma = check_number("StepLR", "gamma", gamma, low=0.0, low_open=True)
        super().__init__(optimizer)

    def lr_at(self, t):
        return self.base_lr * self.gamma ** (t // self.step_size)


class ExponentialLR(Schedule):
    """``base_lr * gamma ** t``."""

    config_names = ("gamma",)

    def __init__(self, optimizer, gamma):
        self.gamma = check_number("ExponentialLR", "gamma", gamma, low=0.0, low_open=True)
        super().__init__(optimizer)

    def lr_at(self, t):
        return self.base_lr * self.gamma**t


class InverseTimeLR(Schedule):
    """``base_lr / (1 + decay * t)``."""

    config_names = ("decay",)

    def __init__(self, optimizer, decay):
        self.decay = check_number("InverseTimeLR", "decay", decay, low=0.0)
        super().__init__(optimizer)

    def lr_at(self, t):
        return self.base_lr / (1.0 + self.decay * t)


class CosineAnnealingLR(Schedule):
    """``eta_min + (base_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2`` (SGDR without restarts).

    Reaches ``eta_min`` at ``t = T_max``; past it the cosine continues (rising again), as in torch.
    """

    config_names = ("T_max", "eta_min")

    def __init__(self, optimizer, T_max, eta_min=0.0):
        self.T_max = check_int("CosineAnnealingLR", "T_max", T_max)
        self.eta_min = check_number("CosineAnnealingLR", "eta_min", eta_min, low=0.0)
        super().__init__(optimizer)

    def lr_at(self, t):
        return self.eta_min + (self.base_lr - self.eta_min) * (1.0 + math.cos(math.pi * t / self.T_max)) / 2.0


class LinearWarmup(Schedule):
    """Ramp the rate linearly up to ``base_lr`` over ``warmup_steps``, then hand over to ``after``.

    At step ``t`` the rate is ``base_lr * (t + 1) / warmup_steps`` until it reaches ``base_lr`` at
    ``t = warmup_steps - 1``; from there on it is ``after.lr_at(t - warmup_steps + 1)`` (so the
    wrapped schedule starts at its own step 0), or stays ``base_lr`` without ``after``. Create
    ``after`` first, on the same optimizer, and step only the warmup: it keeps ``after`` in step.
    """

    config_names = ("warmup_steps",)

    def __init__(self, optimizer, warmup_steps, after=None):
        self.warmup_steps = check_int("LinearWarmup", "warmup_steps", warmup_steps)
        if after is not None:
            if not isinstance(after, Schedule) or isinstance(after, LinearWarmup):
                raise TypeError(
                    f"LinearWarmup: after must be a step-based schedule (StepLR, CosineAnnealingLR, ...), "
                    f"got {type(after).__name__}"
                )
            if after.optimizer is not optimizer:
                raise ValueError("LinearWarmup: after must drive the same optimizer as the warmup")
            # The wrapped schedule saw the full rate when it was created; warm up to that rate.
            for opt in _optimizers_in(optimizer, "LinearWarmup"):
                opt.lr = after.base_lr
        self.after = after
        super().__init__(optimizer)

    def lr_at(self, t):
        ramp_end = self.warmup_steps - 1
        if t < ramp_end:
            return self.base_lr * (t + 1) / self.warmup_steps
        if self.after is None:
            return self.base_lr
        return self.after.lr_at(t - ramp_end)

    def step(self):
        lr = super().step()
        if self.after is not None:
            self.after.last_step = max(0, self.last_step - (self.warmup_steps - 1))
            self.after.last_lr = lr
        return lr

    def state_dict(self):
        state = super().state_dict()
        state["after"] = self.after.state_dict() if self.after is not None else None
        return state

    def load_state_dict(self, state):
        if (state.get("after") is None) != (self.after is None):
            raise ValueError(
                "LinearWarmup.load_state_dict: saved and current warmups differ in having `after`"
            )
        if self.after is not None:
            self.after.load_state_dict(state["after"])
        super().load_state_dict(state)


class ReduceLROnPlateau:
    """Multiply the rate by ``factor`` when a metric stops improving, as torch's ReduceLROnPlateau.

    Call ``step(metric)`` once per epoch. A metric is an improvement when it beats the best so far
    by more than ``threshold`` (relative: ``best * (1 - threshold)`` in ``mode="min"``, or absolute:
    ``best - threshold``; mirrored for ``"max"``). After more than ``patience`` steps without
    improvement the rate becomes ``max(lr * factor, min_lr)`` (changes smaller than ``eps`` are
    skipped), then ``cooldown`` steps pass before bad steps are counted again.
    """

    config_names = ("mode", "factor", "patience", "threshold", "threshold_mode", "cooldown", "min_lr", "eps")

    def __init__(
        self,
        optimizer,
        mode="min",
        factor=0.1,
        patience=10,
        threshold=1e-4,
        threshold_mode="rel",
        cooldown=0,
        min_lr=0.0,
        eps=1e-8,
    ):
        owner = "ReduceLROnPlateau"
        self.mode = check_choice(owner, "mode", mode, ("min", "max"))
        self.factor = check_number(owner, "factor", factor, low=0.0, high=1.0, low_open=True, high_open=True)
        self.patience = check_int(owner, "patience", patience, low=0)
        self.threshold = check_number(owner, "threshold", threshold, low=0.0)
        self.threshold_mode = check_choice(owner, "threshold_mode", threshold_mode, ("rel", "abs"))
        self.cooldown = check_int(owner, "cooldown", cooldown, low=0)
        self.min_lr = check_number(owner, "min_lr", min_lr, low=0.0)
        self.eps = check_number(owner, "eps", eps, low=0.0)
        self.optimizer = optimizer
        self._targets = _optimizers_in(optimizer, owner)
        #: Best metric so far (None before the first step).
        self.best = None
        self.num_bad_steps = 0
        self.cooldown_counter = 0
        self.last_step = 0
        self.last_lr = self._targets[0].lr

    def is_better(self, metric: float) -> bool:
        """Whether ``metric`` improves on the best so far by more than the threshold."""
        best = self.best
        if self.mode == "min":
            if best is None:
                best = math.inf
            bar = best * (1.0 - self.threshold) if self.threshold_mode == "rel" else best - self.threshold
            return metric < bar
        if best is None:
            best = -math.inf
        bar = best * (1.0 + self.threshold) if self.threshold_mode == "rel" else best + self.threshold
        return metric > bar

    def step(self, metric):
        """Record this epoch's metric; reduce the rate if it has plateaued. Returns the rate."""
        try:
            value = float(metric)
        except (TypeError, ValueError):
            raise TypeError(f"ReduceLROnPlateau.step: metric must be a number, got {metric!r}") from None
        self.last_step += 1
        if self.is_better(value):
            self.best = value
            self.num_bad_steps = 0
        else:
            self.num_bad_steps += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_steps = 0  # bad steps during the cooldown do not count
        if self.num_bad_steps > self.patience:
            self._reduce()
            self.cooldown_counter = self.cooldown
            self.num_bad_steps = 0
        self.last_lr = self._targets[0].lr
        return self.last_lr

    def _reduce(self):
        for opt in self._targets:
            new = max(opt.lr * self.factor, self.min_lr)
            if opt.lr - new > self.eps:
                opt.lr = new

    def get_last_lr(self) -> float:
        return self.last_lr

    def state_dict(self) -> dict:
        """Plain JSON-serialisable state (``best`` is None before the first step)."""
        state = {name: getattr(self, name) for name in self.config_names}
        state.update(
            schedule="ReduceLROnPlateau",
            best=self.best,
            num_bad_steps=self.num_bad_steps,
            cooldown_counter=self.cooldown_counter,
            last_step=self.last_step,
            last_lr=self.last_lr,
        )
        return state

    def load_state_dict(self, state: dict):
        """Restore a :meth:`state_dict` and set the optimizer's rate to the saved one."""
        if not isinstance(state, dict) or state.get("schedule") != "ReduceLROnPlateau":
            raise ValueError("ReduceLROnPlateau.load_state_dict: not a ReduceLROnPlateau state")
        for name in self.config_names + ("best", "num_bad_steps", "cooldown_counter", "last_step"):
            setattr(self, name, state[name])
        self.last_lr = float(state["last_lr"])
        for opt in self._targets:
            opt.lr = self.last_lr

    def __repr__(self):
        body = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.config_names)
        return f"ReduceLROnPlateau({body})"
