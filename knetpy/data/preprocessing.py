"""Preprocessing fitted on training data and applied to any data: mean subtraction, PCA, whitening.

Each class has ``fit(x)`` (returns self), ``transform(x)``, ``fit_transform(x)`` and
``inverse_transform(z)``; samples are rows (images are flattened to rows and ``inverse_transform``
returns rows). Statistics are computed in float64; results come back in the input's float dtype.
Per-feature normalisation (mean 0, std 1) is :class:`knetpy.data.Standardizer`.

- :class:`MeanSubtraction`: subtract the training mean (the "mean image" for image rows).
- :class:`PCA`: project onto the top principal directions (from an SVD of the centred data),
  optionally whitened (each component scaled to unit variance).
- :class:`ZCA`: whitening that rotates back to the input space (``U diag(1/sqrt(l + eps)) U^T``),
  so that whitened images still look like images, with edges enhanced.
"""

from __future__ import annotations

import numpy as np

from ._checks import as_data_array, require_real


def _rows(x, who, n_features=None):
    x = as_data_array(x, "x", who)
    require_real(x, "x", who)
    dtype = x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)
    x = x.reshape(len(x), -1)
    if n_features is not None and x.shape[1] != n_features:
        raise ValueError(f"{who}: x has {x.shape[1]} features per sample, but was fitted on {n_features}")
    if not np.isfinite(x).all():
        raise ValueError(f"{who}: x holds NaN or infinite values")
    return x.astype(np.float64), dtype


def _check_eps(eps, who):
    if not (np.isfinite(eps) and eps >= 0):
        raise ValueError(f"{who}: eps must be a finite number >= 0, got {eps!r}")
    return float(eps)


class MeanSubtraction:
    """Subtract the per-feature mean of the training data: ``x - mean_``."""

    def __init__(self):
        self.mean_ = None

    def fit(self, x):
        x, _ = _rows(x, "MeanSubtraction.fit")
        self.mean_ = x.mean(0)
        return self

    def _require_fit(self, who):
        if self.mean_ is None:
            raise RuntimeError(f"{type(self).__name__}.{who}: call fit(x) first")

    def transform(self, x):
        self._require_fit("transform")
        x, dtype = _rows(x, f"{type(self).__name__}.transform", len(self.mean_))
        return (x - self.mean_).astype(dtype)

    def fit_transform(self, x):
        return self.fit(x).transform(x)

    def inverse_transform(self, z):
        self._require_fit("inverse_transform")
        z, dtype = _rows(z, "MeanSubtraction.inverse_transform", len(self.mean_))
        return (z + self.mean_).astype(dtype)


def _sign_fixed(vt):
    """Rows of ``vt`` with the sign that makes each one's largest-magnitude entry positive, so
    that the components do not depend on the SVD routine's arbitrary signs."""
    pick = np.abs(vt).argmax(1)
    return vt * np.sign(vt[np.arange(len(vt)), pick])[:, None]


class PCA(MeanSubtraction):
    """Principal component analysis: ``z = (x - mean_) @ components_.T``, optionally whitened.

    ``n_components``: how many directions to keep (all, up to min(N, D), when None); an int, or a
    float in (0, 1) for the fewest components that explain that fraction of the variance.
    ``whiten=True`` divides each component by ``sqrt(explained_variance_ + eps)``, so the training
    data's components have unit variance (covariance about the identity when ``eps`` is small).
    Fitted: ``mean_``, ``components_`` (k, D), orthonormal rows, each one's largest entry positive;
    ``explained_variance_`` (k,) (the sample variance, divided by N - 1) and
    ``explained_variance_ratio_``; ``singular_values_``.
    """

    def __init__(self, n_components=None, *, whiten=False, eps=1e-5):
        super().__init__()
        who = "PCA"
        if n_components is not None:
            if isinstance(n_components, bool) or not isinstance(n_components, (int, float, np.integer, np.floating)):
                raise TypeError(f"{who}: n_components must be an int, a fraction in (0, 1) or None, got {n_components!r}")
            if isinstance(n_components, (float, np.floating)) and not 0 < n_components < 1:
                raise ValueError(f"{who}: a fractional n_components must be in (0, 1), got {n_components}")
            if isinstance(n_components, (int, np.integer)) and n_components < 1:
                raise ValueError(f"{who}: n_components must be at least 1, got {n_components}")
        self.n_components, self.whiten, self.eps = n_components, bool(whiten), _check_eps(eps, who)
        self.components_ = self.explained_variance_ = self.explained_variance_ratio_ = self.singular_values_ = None

    def fit(self, x):
        who = f"{type(self).__name__}.fit"
        x, _ = _rows(x, who)
        if len(x) < 2:
            raise ValueError(f"{who}: needs at least 2 samples to estimate a covariance, got {len(x)}")
        self.mean_ = x.mean(0)
        _, s, vt = np.linalg.svd(x - self.mean_, full_matrices=False)
        var = s ** 2 / (len(x) - 1)
        total = var.sum()
        ratio = var / total if total > 0 else np.zeros_like(var)
        k = self._n_kept(ratio, len(s), who)
        self.components_ = _sign_fixed(vt[:k])
        self.explained_variance_, self.explained_variance_ratio_, self.singular_values_ = var[:k], ratio[:k], s[:k]
        return self

    def _n_kept(self, ratio, most, who):
        k = self.n_components
        if k is None:
            return most
        if isinstance(k, (float, np.floating)):
            return int(min(most, np.searchsorted(np.cumsum(ratio), k) + 1))
        if k > most:
            raise ValueError(f"{who}: n_components={k} is more than min(samples, features) = {most}")
        return int(k)

    def _scale(self):
        if not self.whiten:
            return np.ones_like(self.explained_variance_)
        var = self.explained_variance_
        # variances this small are rounding noise of directions the data does not span
        tiny = (var.max() if var.size else 0.0) * np.finfo(np.float64).eps * max(len(self.mean_), len(var))
        scale = np.sqrt(var + self.eps)
        if not (scale > 0).all() or (self.eps == 0 and (var <= tiny).any()):
            raise ValueError(f"{type(self).__name__}: a component has zero variance; whiten with eps > 0 "
                             "or keep fewer components")
        return scale

    def transform(self, x):
        self._require_fit("transform")
        x, dtype = _rows(x, f"{type(self).__name__}.transform", len(self.mean_))
        return ((x - self.mean_) @ self.components_.T / self._scale()).astype(dtype)

    def inverse_transform(self, z):
        """Rows back in the input space; exact for all components, the projection onto them otherwise."""
        self._require_fit("inverse_transform")
        z, dtype = _rows(z, f"{type(self).__name__}.inverse_transform", len(self.components_))
        return ((z * self._scale()) @ self.components_ + self.mean_).astype(dtype)


class ZCA(PCA):
    """ZCA whitening: ``z = (x - mean_) @ U diag(1 / sqrt(l + eps)) U^T`` (U, l: the covariance's
    eigenvectors and eigenvalues). The training data's covariance becomes about the identity (exactly
    when ``eps`` is 0 and the covariance has full rank); ``z`` keeps the input's dimensions and
    stays as close to ``x`` as any whitening can. ``eps`` damps the directions of tiny variance
    (noise), which would otherwise be blown up. Fitted: ``mean_``, ``components_`` (U^T),
    ``explained_variance_`` (l), ``whitening_`` and ``coloring_`` (D, D).
    """

    def __init__(self, *, eps=1e-5):
        super().__init__(None, whiten=True, eps=eps)
        self.whitening_ = self.coloring_ = None

    def fit(self, x):
        super().fit(x)
        scale = self._scale()
        u = self.components_.T
        self.whitening_ = (u / scale) @ u.T
        self.coloring_ = (u * scale) @ u.T
        return self

    def transform(self, x):
        self._require_fit("transform")
        x, dtype = _rows(x, "ZCA.transform", len(self.mean_))
        return ((x - self.mean_) @ self.whitening_).astype(dtype)

    def inverse_transform(self, z):
        """Back to the input space: exact when the data has full rank (N > D and no constant direction)."""
        self._require_fit("inverse_transform")
        z, dtype = _rows(z, "ZCA.inverse_transform", len(self.mean_))
        return (z @ self.coloring_ + self.mean_).astype(dtype)
