"""Adam and its relatives: AdamW (decoupled weight decay) and Adamax (infinity norm)."""

from __future__ import annotations

import math

from ..backend import array_namespace
from .base import Optimizer
from .validate import check_number


def check_betas(owner, betas):
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"{owner}: betas must be a pair (beta1, beta2), got {betas!r}")
    return tuple(
        check_number(owner, f"betas[{i}]", b, low=0.0, high=1.0, high_open=True) for i, b in enumerate(betas)
    )


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015), as ``torch.optim.Adam``.

    ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2`` and, with bias corrections
    ``c1 = 1 - b1^t``, ``c2 = 1 - b2^t``: ``p -= lr / c1 * m / (sqrt(v) / sqrt(c2) + eps)``.
    ``amsgrad`` uses the running maximum of ``v``. ``decoupled_weight_decay=True`` shrinks the
    parameter (``p *= 1 - lr * weight_decay``) instead of adding L2 to the gradient (AdamW).
    """

    hyper_names = ("betas", "eps", "amsgrad", "decoupled_weight_decay")

    def __init__(
        self,
        params=None,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.0,
        amsgrad=False,
        decoupled_weight_decay=False,
        **options,
    ):
        name = type(self).__name__
        self.betas = check_betas(name, betas)
        self.eps = check_number(name, "eps", eps, low=0.0)
        self.amsgrad = bool(amsgrad)
        self.decoupled_weight_decay = bool(decoupled_weight_decay)
        super().__init__(params, lr, weight_decay=weight_decay, **options)

    def init_state(self, value):
        xp = array_namespace(value)
        state = {"exp_avg": xp.zeros_like(value), "exp_avg_sq": xp.zeros_like(value)}
        if self.amsgrad:
            state["max_exp_avg_sq"] = xp.zeros_like(value)
        return state

    def update_rule(self, value, grad, state):
        xp = array_namespace(value)
        beta1, beta2 = self.betas
        t = state["step"]
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        # One scratch array serves every intermediate: no other temporaries per step.
        scratch = grad * (1.0 - beta1)
        exp_avg *= beta1
        exp_avg += scratch
        xp.multiply(grad, grad, out=scratch)
        scratch *= 1.0 - beta2
        exp_avg_sq *= beta2
        exp_avg_sq += scratch
        second = exp_avg_sq
        if self.amsgrad:
            second = xp.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
        # Python floats (not NumPy scalars) so float32 arrays stay float32.
        step_size = self._lr / (1.0 - beta1**t)
        denom = xp.sqrt(second, out=scratch)
        denom /= math.sqrt(1.0 - beta2**t)
        denom += self.eps
        step = xp.divide(exp_avg, denom, out=scratch)
        step *= step_size
        value -= step


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019), as ``torch.optim.AdamW``."""

    def __init__(
        self, params=None, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, **options
    ):
        super().__init__(
            params, lr, betas, eps, weight_decay, amsgrad, decoupled_weight_decay=True, **options
        )


class Adamax(Optimizer):
    """Adamax, Adam with the infinity norm (Kingma & Ba, 2015, sec. 7), as ``torch.optim.Adamax``.

    ``m = b1 m + (1 - b1) g``, ``u = max(b2 u, |g| + eps)``, ``p -= lr / (1 - b1^t) * m / u``.
    """

    hyper_names = ("betas", "eps")

    def __init__(self, params=None, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, **options):
        name = type(self).__name__
        self.betas = check_betas(name, betas)
        self.eps = check_number(name, "eps", eps, low=0.0)
        super().__init__(params, lr, weight_decay=weight_decay, **options)

    def init_state(self, value):
        xp = array_namespace(value)
        return {"exp_avg": xp.zeros_like(value), "exp_inf": xp.zeros_like(value)}

    def update_rule(self, value, grad, state):
        xp = array_namespace(value)
        beta1, beta2 = self.betas
        exp_avg, exp_inf = state["exp_avg"], state["exp_inf"]
        scratch = grad * (1.0 - beta1)
        exp_avg *= beta1
        exp_avg += scratch
        xp.abs(grad, out=scratch)
        scratch += self.eps
        exp_inf *= beta2
        xp.maximum(exp_inf, scratch, out=exp_inf)
        step = xp.divide(exp_avg, exp_inf, out=scratch)
        step *= self._lr / (1.0 - beta1 ** state["step"])
        value -= step
