"""Per-element adaptive step sizes from running gradient statistics: Adagrad, Adadelta, RMSprop."""

from __future__ import annotations

from ..backend import array_namespace
from .base import Optimizer
from .validate import check_number


class Adagrad(Optimizer):
    """Adagrad (Duchi et al., 2011), as ``torch.optim.Adagrad``.

    ``s += g^2``; ``p -= lr_t * g / (sqrt(s) + eps)`` with ``lr_t = lr / (1 + (step - 1) * lr_decay)``.
    """

    hyper_names = ("lr_decay", "initial_accumulator_value", "eps")

    def __init__(
        self,
        params=None,
        lr=1e-2,
        lr_decay=0.0,
        weight_decay=0.0,
        initial_accumulator_value=0.0,
        eps=1e-10,
        **options,
    ):
        name = type(self).__name__
        self.lr_decay = check_number(name, "lr_decay", lr_decay, low=0.0)
        self.initial_accumulator_value = check_number(
            name, "initial_accumulator_value", initial_accumulator_value, low=0.0
        )
        self.eps = check_number(name, "eps", eps, low=0.0)
        super().__init__(params, lr, weight_decay=weight_decay, **options)

    def init_state(self, value):
        xp = array_namespace(value)
        return {"sum": xp.full_like(value, self.initial_accumulator_value)}

    def update_rule(self, value, grad, state):
        xp = array_namespace(value)
        lr_t = self._lr / (1.0 + (state["step"] - 1) * self.lr_decay)
        acc = state["sum"]
        scratch = grad * grad
        acc += scratch
        denom = xp.sqrt(acc, out=scratch)
        denom += self.eps
        step = xp.divide(grad, denom, out=scratch)
        step *= lr_t
        value -= step


class Adadelta(Optimizer):
    """Adadelta (Zeiler, 2012), as ``torch.optim.Adadelta``.

    ``E[g^2] = rho E[g^2] + (1 - rho) g^2``; ``dx = sqrt(E[dx^2] + eps) / sqrt(E[g^2] + eps) * g``;
    ``E[dx^2] = rho E[dx^2] + (1 - rho) dx^2``; ``p -= lr * dx``.
    """

    hyper_names = ("rho", "eps")

    def __init__(self, params=None, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, **options):
        name = type(self).__name__
        self.rho = check_number(name, "rho", rho, low=0.0, high=1.0)
        self.eps = check_number(name, "eps", eps, low=0.0)
        super().__init__(params, lr, weight_decay=weight_decay, **options)

    def init_state(self, value):
        xp = array_namespace(value)
        return {"square_avg": xp.zeros_like(value), "acc_delta": xp.zeros_like(value)}

    def update_rule(self, value, grad, state):
        xp = array_namespace(value)
        rho, eps = self.rho, self.eps
        square_avg, acc_delta = state["square_avg"], state["acc_delta"]
        scratch = grad * grad
        scratch *= 1.0 - rho
        square_avg *= rho
        square_avg += scratch
        delta = acc_delta + eps
        xp.sqrt(delta, out=delta)
        xp.add(square_avg, eps, out=scratch)
        delta /= xp.sqrt(scratch, out=scratch)
        delta *= grad
        xp.multiply(delta, delta, out=scratch)
        scratch *= 1.0 - rho
        acc_delta *= rho
        acc_delta += scratch
        delta *= self._lr
        value -= delta


class RMSprop(Optimizer):
    """RMSprop (Hinton, 2012), as ``torch.optim.RMSprop``.

    ``v = alpha v + (1 - alpha) g^2``; the step is ``g / (sqrt(v) + eps)`` (``centered``: ``v`` minus
    the squared running mean of ``g``), fed through a momentum buffer when ``momentum`` > 0.
    """

    hyper_names = ("alpha", "eps", "momentum", "centered")

    def __init__(
        self,
        params=None,
        lr=1e-2,
        alpha=0.99,
        eps=1e-8,
        weight_decay=0.0,
        momentum=0.0,
        centered=False,
        **options,
    ):
        name = type(self).__name__
        self.alpha = check_number(name, "alpha", alpha, low=0.0, high=1.0)
        self.eps = check_number(name, "eps", eps, low=0.0)
        self.momentum = check_number(name, "momentum", momentum, low=0.0)
        self.centered = bool(centered)
        super().__init__(params, lr, weight_decay=weight_decay, **options)

    def init_state(self, value):
        xp = array_namespace(value)
        state = {"square_avg": xp.zeros_like(value)}
        if self.centered:
            state["grad_avg"] = xp.zeros_like(value)
        if self.momentum > 0:
            state["momentum_buffer"] = xp.zeros_like(value)
        return state

    def update_rule(self, value, grad, state):
        xp = array_namespace(value)
        alpha = self.alpha
        square_avg = state["square_avg"]
        scratch = grad * grad
        scratch *= 1.0 - alpha
        square_avg *= alpha
        square_avg += scratch
        if self.centered:
            grad_avg = state["grad_avg"]
            xp.multiply(grad, 1.0 - alpha, out=scratch)
            grad_avg *= alpha
            grad_avg += scratch
            xp.multiply(grad_avg, grad_avg, out=scratch)
            xp.subtract(square_avg, scratch, out=scratch)
            denom = xp.sqrt(scratch, out=scratch)
        else:
            denom = xp.sqrt(square_avg, out=scratch)
        denom += self.eps
        step = xp.divide(grad, denom, out=scratch)
        if self.momentum > 0:
            buf = state["momentum_buffer"]
            buf *= self.momentum
            buf += step
            step = xp.multiply(buf, self._lr, out=scratch)
        else:
            step *= self._lr
        value -= step
