"""Loss functionals of energy-based learning (LeCun, Chopra, Hadsell, Ranzato & Huang, 2006).

Also reachable as ``kp.losses.energy`` (``kp.losses.energy.hinge`` is the margin loss on energies below;
``kp.losses.hinge`` stays the multiclass SVM loss on scores). Every loss takes energies ``E`` of shape
(N, C), one per sample and answer, **lower meaning better** (inference is ``argmin``, :func:`predict`),
and the correct answers ``y`` (N,) as integers. With ``E_y`` the energy of the correct answer and
``E_bar`` that of the most offending incorrect answer, ``min over j != y of E_j``:

=================  ===============================================================
energy             ``E_y``
perceptron         ``E_y - min_j E_j``
hinge              ``max(0, margin + E_y - E_bar)``
log                ``log(1 + exp(E_y - E_bar))``
lvq2               ``min(1, max(0, (E_y - E_bar) / (delta * E_bar)))`` (``E_bar > 0``)
mce                ``sigmoid(E_y - E_bar)``
square_square      ``E_y**2 + max(0, margin - E_bar)**2``
square_exp         ``E_y**2 + gamma * exp(-E_bar)``
nll                ``E_y + (1/beta) log sum_j exp(-beta E_j)`` (NLL/MMI)
=================  ===============================================================

Energies from scores: ``E = -scores``, so ``nll`` with ``beta=1`` is the cross-entropy of the scores.
``reduction`` is "mean" (default), "sum" or "none" (one loss per sample).
"""

from __future__ import annotations

import numpy as np

from . import losses as _losses
from .backend import to_numpy
from .ops import amin, exp, logsumexp, minimum, relu, sigm, softplus, where
from .ops import sum as _sum

__all__ = ["energy", "perceptron", "hinge", "log", "lvq2", "mce", "square_square", "square_exp", "nll",
           "predict", "correct_and_offending"]


def _energies(E, y, name, reduction):
    _losses._check_reduction(reduction, name)
    E = _losses._as_input(E, name, "energies")
    if E.ndim != 2:
        raise ValueError(f"{name}: expects energies of shape (N, C), one per sample and answer, got shape "
                         f"{tuple(E.shape)}")
    if E.shape[1] < 2:
        raise ValueError(f"{name}: needs at least 2 answers (C >= 2) to have an incorrect one, got shape "
                         f"{tuple(E.shape)}")
    labels = _losses._labels(E, y, 1, name)
    return E, _losses._one_hot(labels, E, 1)


def correct_and_offending(E, y, name="correct_and_offending"):
    """``(E_y, E_bar)``, each (N,): the correct answer's energy and the lowest energy of a wrong answer."""
    E, onehot = _energies(E, y, name, "none")
    return _split(E, onehot)


def _split(E, onehot):
    correct = _sum(E * onehot, axis=1)
    offending = amin(where(onehot > 0, np.inf, E), axis=1)
    return correct, offending


def _positive(name, what, v):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or v <= 0:
        raise ValueError(f"{name}: {what} must be a finite number > 0, got {v!r}")
    return float(v)


def energy(E, y, reduction="mean"):
    """The energy loss ``E_y``: pulls the correct answer down only (collapses unless the architecture
    keeps the other energies up)."""
    E, onehot = _energies(E, y, "energy", reduction)
    return _losses._reduce(_sum(E * onehot, axis=1), reduction)


def perceptron(E, y, reduction="mean"):
    """The generalised perceptron loss ``E_y - min_j E_j`` (>= 0, zero when the answer is right; no margin)."""
    E, onehot = _energies(E, y, "perceptron", reduction)
    return _losses._reduce(_sum(E * onehot, axis=1) - amin(E, axis=1), reduction)


def hinge(E, y, margin=1.0, reduction="mean"):
    """The hinge loss ``max(0, margin + E_y - E_bar)``: zero once every wrong answer is ``margin`` above."""
    E, onehot = _energies(E, y, "energy.hinge", reduction)
    margin = _positive("energy.hinge", "margin", margin)
    correct, offending = _split(E, onehot)
    return _losses._reduce(relu(correct - offending + margin), reduction)


def log(E, y, reduction="mean"):
    """The log loss ``log(1 + exp(E_y - E_bar))``: a soft hinge with an infinite margin."""
    E, onehot = _energies(E, y, "energy.log", reduction)
    correct, offending = _split(E, onehot)
    return _losses._reduce(softplus(correct - offending), reduction)


def lvq2(E, y, delta=1.0, reduction="mean"):
    """Kohonen's LVQ2 loss ``min(1, max(0, (E_y - E_bar) / (delta * E_bar)))``.

    Meant for positive energies (distances to prototypes); zero as soon as the answer is right, so it
    makes no margin. ``delta`` > 0 sets how far into the wrong side the loss saturates at 1.
    """
    E, onehot = _energies(E, y, "lvq2", reduction)
    delta = _positive("lvq2", "delta", delta)
    correct, offending = _split(E, onehot)
    off = _losses._raw(offending)
    if off.size and not bool((off > 0).all()):
        raise ValueError("lvq2: needs positive energies (E_bar > 0), e.g. distances to prototypes; "
                         f"the smallest incorrect energy is {float(off.min()):.4g}")
    ratio = relu(correct - offending) / (offending * delta)
    return _losses._reduce(minimum(ratio, 1.0), reduction)


def mce(E, y, reduction="mean"):
    """The minimum classification error loss ``sigmoid(E_y - E_bar)`` (Juang et al., 1997): a smooth
    count of errors; it never reaches zero and saturates far on either side."""
    E, onehot = _energies(E, y, "mce", reduction)
    correct, offending = _split(E, onehot)
    return _losses._reduce(sigm(correct - offending), reduction)


def square_square(E, y, margin=1.0, reduction="mean"):
    """The square-square loss ``E_y**2 + max(0, margin - E_bar)**2``: correct energy to 0, the most
    offending wrong one above ``margin`` (for non-negative energies; siamese nets use it)."""
    E, onehot = _energies(E, y, "square_square", reduction)
    margin = _positive("square_square", "margin", margin)
    correct, offending = _split(E, onehot)
    gap = relu(margin - offending)
    return _losses._reduce(correct * correct + gap * gap, reduction)


def square_exp(E, y, gamma=1.0, reduction="mean"):
    """The square-exponential loss ``E_y**2 + gamma * exp(-E_bar)`` (LeCun & Huang, 2005)."""
    E, onehot = _energies(E, y, "square_exp", reduction)
    gamma = _positive("square_exp", "gamma", gamma)
    correct, offending = _split(E, onehot)
    return _losses._reduce(correct * correct + gamma * exp(-offending), reduction)


def nll(E, y, beta=1.0, reduction="mean"):
    """The negative log-likelihood (maximum mutual information) loss
    ``E_y + (1/beta) log sum_j exp(-beta E_j)``: ``-log`` of the Gibbs probability of the correct answer,
    ``exp(-beta E_y) / sum_j exp(-beta E_j)``, divided by ``beta``. It pulls up every wrong answer."""
    E, onehot = _energies(E, y, "energy.nll", reduction)
    beta = _positive("energy.nll", "beta", beta)
    free = logsumexp(E * -beta, axis=1) * (1.0 / beta)
    return _losses._reduce(_sum(E * onehot, axis=1) + free, reduction)


def predict(E):
    """The answer of lowest energy for each sample, (N,) int64."""
    raw = to_numpy(_losses._raw(E))
    if raw.ndim != 2:
        raise ValueError(f"predict: expects energies of shape (N, C), got shape {raw.shape}")
    return raw.argmin(axis=1).astype(np.int64)
