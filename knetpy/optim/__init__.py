"""Optimizers, learning-rate schedules and Knet's functional ``update``.

Object style (PyTorch)::

    opt = kp.optim.Adam(model.params, lr=1e-3)
    loss.backward(); opt.step(); opt.zero_grad()

Functional style (Knet)::

    opts = kp.optim.optimizers(w, kp.optim.Adam, lr=1e-3)
    kp.optim.update(w, kp.grad(loss)(w, x, y), opts)

Every optimizer takes ``weight_decay``, ``clip_norm``, ``clip_value``, ``grad_noise`` and
``grad_noise_decay``; see :class:`Optimizer`.
"""

from . import schedules
from .adam import Adam, Adamax, AdamW
from .adaptive import Adadelta, Adagrad, RMSprop
from .base import Optimizer
from .clipping import clip_by_global_norm, clip_by_value, global_norm
from .functional import optimizers, update
from .lbfgs import LBFGS
from .noise import add_gradient_noise
from .registry import OPTIMIZERS, get
from .schedules import (
    CosineAnnealingLR,
    ExponentialLR,
    InverseTimeLR,
    LinearWarmup,
    ReduceLROnPlateau,
    Schedule,
    StepLR,
)
from .sgd import SGD, Momentum, Nesterov, NesterovMomentum

lr_scheduler = schedules  # PyTorch's spelling

__all__ = [
    "Optimizer",
    "SGD",
    "Momentum",
    "Nesterov",
    "NesterovMomentum",
    "Adagrad",
    "Adadelta",
    "RMSprop",
    "Adam",
    "Adamax",
    "AdamW",
    "LBFGS",
    "get",
    "OPTIMIZERS",
    "optimizers",
    "update",
    "clip_by_global_norm",
    "clip_by_value",
    "global_norm",
    "add_gradient_noise",
    "schedules",
    "lr_scheduler",
    "Schedule",
    "StepLR",
    "ExponentialLR",
    "InverseTimeLR",
    "CosineAnnealingLR",
    "LinearWarmup",
    "ReduceLROnPlateau",
]
