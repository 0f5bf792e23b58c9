"""Stochastic gradient descent, with heavy-ball or Nesterov momentum."""

from __future__ import annotations

from .base import Optimizer
from .validate import check_number


class SGD(Optimizer):
    """``p -= lr * d`` where ``d`` is the gradient, or a momentum buffer of it (as ``torch.optim.SGD``).

    With ``momentum`` m the buffer is ``b = m * b + (1 - dampening) * g`` (``b = g`` on the first
    step) and ``d = b``; with ``nesterov=True``, ``d = g + m * b``.
    """

    hyper_names = ("momentum", "dampening", "nesterov")

    def __init__(
        self, params=None, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, **options
    ):
        name = type(self).__name__
        self.momentum = check_number(name, "momentum", momentum, low=0.0)
        self.dampening = check_number(name, "dampening", dampening, low=0.0, high=1.0)
        self.nesterov = bool(nesterov)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError(
                f"{name}: nesterov=True needs momentum > 0 and dampening = 0, "
                f"got momentum={momentum!r}, dampening={dampening!r}"
            )
        super().__init__(params, lr, weight_decay=weight_decay, **options)

    def update_rule(self, value, grad, state):
        m = self.momentum
        if not m:
            value -= self._lr * grad
            return
        buf = state.get("momentum_buffer")
        if buf is None:
            buf = state["momentum_buffer"] = grad.copy()
        else:
            buf *= m
            buf += grad if self.dampening == 0 else (1.0 - self.dampening) * grad
        direction = grad + m * buf if self.nesterov else buf
        value -= self._lr * direction


class Momentum(SGD):
    """SGD with heavy-ball momentum (0.9 by default)."""

    def __init__(self, params=None, lr=1e-3, momentum=0.9, dampening=0.0, weight_decay=0.0, **options):
        super().__init__(params, lr, momentum, dampening, weight_decay, nesterov=False, **options)


class Nesterov(SGD):
    """SGD with Nesterov momentum (0.9 by default)."""

    def __init__(self, params=None, lr=1e-3, momentum=0.9, weight_decay=0.0, **options):
        super().__init__(params, lr, momentum, 0.0, weight_decay, nesterov=True, **options)


NesterovMomentum = Nesterov  # NumpyDL's name
