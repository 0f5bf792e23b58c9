"""Stochastic gradient descent, with heavy-ball or Nesterov momentum."""

from __future__ import annotations

from ..autograd import mark_modified
from .base import Optimizer, _leaf_value
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

    def step(self, closure=None):
        # The common case, plain SGD (one group, no momentum, decay, clipping or noise), skips the
        # general pipeline's per-step bookkeeping: the same `p -= lr * g` as update_rule.
        if closure is not None or not self._plain():
            return super().step(closure)
        params, state, lr = self._params, self.state, self._lr
        work = []
        for name in self._group_names[0]:
            p = params[name]
            g = p.grad
            if g is None:
                continue
            g = _leaf_value(g)
            v = p.value
            if g.shape != v.shape or g.dtype != v.dtype:
                return super().step()  # nothing updated yet: the general path casts or reports it
            work.append((name, p, v, g))
        for name, _, v, g in work:
            s = state.get(name)
            if s is None:
                s = state[name] = {"step": 0}
                s.update(self.init_state(v))
            s["step"] += 1
            v -= lr * g
        mark_modified(*(p for _, p, _, _ in work))
        self.iterations += 1
        return None

    def _plain(self):
        return (
            self._plain_rule() and self._params is not None and len(self.param_groups) == 1
            and self._rule_for(self.param_groups[0]) is self
        )

    def _plain_rule(self):
        """Whether an update is ``value -= lr * grad`` and nothing else (no momentum, decay, clipping, noise)."""
        return all_plain((self,))

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


def all_plain(opts):
    """Whether every one of ``opts`` is an SGD whose update is ``value -= lr * grad`` and nothing else (no
    momentum, decay, clipping or noise, no overridden rule): one loop, as a compiled step asks on every replay."""
    for opt in opts:
        cls = type(opt)
        if (not issubclass(cls, SGD) or cls.update_rule is not SGD.update_rule
                or cls._update_array is not Optimizer._update_array or cls.init_state is not Optimizer.init_state
                or opt.momentum or opt.weight_decay or opt.clip_norm is not None or opt.clip_value is not None
                or opt.grad_noise):
            return False
    return True
