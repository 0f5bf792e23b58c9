"""Annealed Gaussian gradient noise (Neelakantan et al., 2015, "Adding Gradient Noise Improves
Learning for Very Deep Networks"): ``g + N(0, sigma_t^2)`` with ``sigma_t^2 = eta / (1 + t)^gamma``.
"""

from __future__ import annotations

import math

import numpy as np

from .. import backend


def noise_std(eta: float, gamma: float, t: int) -> float:
    """Standard deviation of the noise at step ``t`` (0 for the first update)."""
    return math.sqrt(eta / (1.0 + t) ** gamma)


def add_gradient_noise(grad, eta: float, gamma: float, t: int):
    """``grad`` plus fresh Gaussian noise of variance ``eta / (1 + t)^gamma`` (a new array).

    Draws come from :func:`knetpy.backend.rng` (the generator of the gradient's device), so
    ``kp.set_seed`` makes them reproducible; they are made in the gradient's dtype (float32 or float64).
    """
    std = noise_std(eta, gamma, t)
    dtype = grad.dtype if grad.dtype in (np.float32, np.float64) else np.float64
    draw = backend.rng(backend.array_namespace(grad)).standard_normal(grad.shape, dtype=dtype)
    draw *= std
    return grad + draw.astype(grad.dtype, copy=False)
