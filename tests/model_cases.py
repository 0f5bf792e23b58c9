"""Small models and data sets for the Model / callbacks tests (built from kp.Param only)."""

import numpy as np

import knetpy as kp


def blobs(n_per_class=60, n_classes=3, spread=0.6, seed=0):
    """Gaussian blobs around points on a circle: (x float32 (N, 2), integer labels (N,)), shuffled."""
    g = np.random.default_rng(seed)
    angles = 2 * np.pi * np.arange(n_classes) / n_classes
    centres = 3 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    x = np.concatenate([c + spread * g.standard_normal((n_per_class, 2)) for c in centres])
    y = np.repeat(np.arange(n_classes), n_per_class)
    order = g.permutation(len(y))
    return x[order].astype(np.float32), y[order]


class TinyMLP(kp.Model):
    """x -> relu(x w1 + b1) w2 + b2, recording the training flag of every forward call."""

    def __init__(self, n_in=2, hidden=16, n_out=3, name=None):
        super().__init__(name=name)
        r = kp.backend.rng()
        self.w1 = kp.Param((r.standard_normal((n_in, hidden)) * np.sqrt(2 / n_in)).astype(np.float32))
        self.b1 = kp.Param(np.zeros(hidden, np.float32))
        self.w2 = kp.Param((r.standard_normal((hidden, n_out)) * np.sqrt(1 / hidden)).astype(np.float32))
        self.b2 = kp.Param(np.zeros(n_out, np.float32))
        self.modes = []

    def forward(self, x):
        self.modes.append(self.training)
        return kp.relu(x @ self.w1 + self.b1) @ self.w2 + self.b2


def compiled_mlp(lr=0.3, metrics=("accuracy",), **kw):
    model = TinyMLP(**kw)
    model.compile(loss="cross_entropy", optimizer=kp.optim.SGD(lr=lr), metrics=list(metrics))
    return model


def params_copy(model):
    return {k: p.value.copy() for k, p in model.params.items()}
