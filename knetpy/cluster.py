"""Clustering: k-means (k-means++ initialisation) and Gaussian mixtures fitted by EM, on NumPy arrays.

- :class:`KMeans`: Lloyd's iterations from a seeded k-means++ start, the best of ``n_init`` runs.
- :class:`GaussianMixture`: full covariance matrices, fitted by expectation-maximisation; the
  mean log-likelihood per sample after every E-step is in ``log_likelihood_history_`` and never
  decreases (up to rounding) when ``reg_covar`` is 0.
- :func:`adjusted_rand_score`: agreement of two labelings, 1 when identical up to renaming, about 0
  for random ones (Hubert and Arabie's adjusted Rand index).
"""

from __future__ import annotations

import numpy as np

from .classical import _positive_int, _samples, pairwise_distances

__all__ = ["GaussianMixture", "KMeans", "adjusted_rand_score"]


def _generator(seed):
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _check_fit_data(x, k, who):
    x = _samples(x, "x", who).astype(np.float64)
    if len(x) < k:
        raise ValueError(f"{who}: {k} clusters need at least {k} samples, got {len(x)}")
    if not np.isfinite(x).all():
        raise ValueError(f"{who}: x holds NaN or infinite values")
    return x


def kmeans_plusplus(x, k, seed=None):
    """``k`` starting centres chosen from the rows of ``x`` by k-means++ (Arthur and Vassilvitskii).

    The first is uniform; each next one is drawn with probability proportional to the squared
    distance to the nearest centre chosen so far, so the centres start spread out.
    """
    g = _generator(seed)
    centres = [x[g.integers(len(x))]]
    d2 = pairwise_distances(x, centres[0][None], squared=True)[:, 0]
    for _ in range(1, k):
        total = d2.sum()
        i = g.choice(len(x), p=d2 / total) if total > 0 else g.integers(len(x))
        centres.append(x[i])
        d2 = np.minimum(d2, pairwise_distances(x, x[i][None], squared=True)[:, 0])
    return np.stack(centres)


class KMeans:
    """k-means clustering: minimises the summed squared distance of the samples to their centres.

    Each of ``n_init`` runs starts from k-means++ centres (drawn from ``seed``) and alternates
    assigning every sample to its nearest centre and moving every centre to its samples' mean, until
    the centres move less than ``tol`` (relative to the data's variance) or ``max_iter``. A centre
    left without samples is moved to the sample farthest from its centre. The run with the smallest
    ``inertia_`` is kept: ``cluster_centers_`` (k, D), ``labels_``, ``n_iter_``.
    """

    def __init__(self, n_clusters=8, *, n_init=4, max_iter=300, tol=1e-6, seed=0):
        who = "KMeans"
        self.n_clusters = _positive_int(n_clusters, "n_clusters", who)
        self.n_init = _positive_int(n_init, "n_init", who)
        self.max_iter = _positive_int(max_iter, "max_iter", who)
        if not tol >= 0:
            raise ValueError(f"{who}: tol must be >= 0, got {tol!r}")
        self.tol, self.seed = tol, seed
        self.cluster_centers_ = self.labels_ = self.inertia_ = None
        self.n_iter_ = 0

    def _run(self, x, g):
        k = self.n_clusters
        centres = kmeans_plusplus(x, k, g)
        tol = self.tol * np.mean(np.var(x, axis=0))
        n_iter = 0
        while n_iter < self.max_iter:
            n_iter += 1
            d2 = pairwise_distances(x, centres, squared=True)
            labels = d2.argmin(1)
            counts = np.bincount(labels, minlength=k)
            sums = np.zeros_like(centres)
            np.add.at(sums, labels, x)
            new = sums / np.maximum(counts, 1)[:, None]
            for j in np.flatnonzero(counts == 0):  # rare: an empty cluster takes the worst-fitted sample
                far = d2[np.arange(len(x)), labels].argmax()
                new[j] = x[far]
                d2[far] = 0
            shift = ((new - centres) ** 2).sum()
            centres = new
            if shift <= tol:
                break
        d2 = pairwise_distances(x, centres, squared=True)
        labels = d2.argmin(1)
        return centres, labels, float(d2[np.arange(len(x)), labels].sum()), n_iter

    def fit(self, x):
        x = _check_fit_data(x, self.n_clusters, "KMeans.fit")
        g = _generator(self.seed)
        best = min((self._run(x, g) for _ in range(self.n_init)), key=lambda r: r[2])
        self.cluster_centers_, self.labels_, self.inertia_, self.n_iter_ = best
        return self

    def fit_predict(self, x):
        return self.fit(x).labels_

    def transform(self, x):
        """Distances (N, k) of ``x`` to the centres."""
        if self.cluster_centers_ is None:
            raise RuntimeError("KMeans: call fit(x) first")
        x = _samples(x, "x", "KMeans.predict")
        if x.shape[1] != self.cluster_centers_.shape[1]:
            raise ValueError(f"KMeans: x has {x.shape[1]} features, the centres {self.cluster_centers_.shape[1]}")
        return pairwise_distances(x, self.cluster_centers_)

    def predict(self, x):
        """The index of the nearest centre of every row of ``x``."""
        return self.transform(x).argmin(1)


class GaussianMixture:
    """A mixture of ``n_components`` Gaussians with full covariances, fitted by EM.

    Starts from k-means (seeded) responsibilities, then alternates the E-step (each sample's
    posterior over the components) and the M-step (weights, means and covariances that maximise the
    expected log-likelihood; ``reg_covar`` is added to the diagonals so that they stay invertible)
    until the mean log-likelihood improves by less than ``tol`` or ``max_iter``.
    Fitted: ``weights_`` (K,), ``means_`` (K, D), ``covariances_`` (K, D, D), ``converged_``,
    ``n_iter_`` and ``log_likelihood_history_`` (the mean log-likelihood of the training samples
    under the parameters before each M-step; EM never lowers it).
    """

    def __init__(self, n_components=1, *, max_iter=100, tol=1e-6, reg_covar=1e-6, seed=0):
        who = "GaussianMixture"
        self.n_components = _positive_int(n_components, "n_components", who)
        self.max_iter = _positive_int(max_iter, "max_iter", who)
        for name, v in (("tol", tol), ("reg_covar", reg_covar)):
            if not (np.isfinite(v) and v >= 0):
                raise ValueError(f"{who}: {name} must be a finite number >= 0, got {v!r}")
        self.tol, self.reg_covar, self.seed = tol, reg_covar, seed
        self.weights_ = self.means_ = self.covariances_ = None
        self.log_likelihood_history_, self.converged_, self.n_iter_ = [], False, 0

    def _m_step(self, x, resp):
        nk = resp.sum(0) + 10 * np.finfo(np.float64).eps
        means = resp.T @ x / nk[:, None]
        d = x.shape[1]
        covs = np.empty((len(nk), d, d))
        for j in range(len(nk)):  # one (D, D) product per component
            diff = x - means[j]
            covs[j] = (resp[:, j, None] * diff).T @ diff / nk[j]
            covs[j].flat[::d + 1] += self.reg_covar
        return nk / len(x), means, covs

    def _log_joint(self, x, weights, means, covs):
        """log(w_j N(x_i | mu_j, S_j)), (N, K), through the Cholesky factors of the covariances."""
        n, d = x.shape
        out = np.empty((n, len(weights)))
        for j in range(len(weights)):
            try:
                chol = np.linalg.cholesky(covs[j])
            except np.linalg.LinAlgError:
                raise np.linalg.LinAlgError(
                    f"GaussianMixture: the covariance of component {j} is singular (a component collapsed "
                    "onto too few points); raise reg_covar") from None
            z = np.linalg.solve(chol, (x - means[j]).T)  # (D, N)
            log_det = 2 * np.log(np.diag(chol)).sum()
            out[:, j] = np.log(weights[j]) - 0.5 * ((z ** 2).sum(0) + log_det + d * np.log(2 * np.pi))
        return out

    @staticmethod
    def _normalise(log_joint):
        top = log_joint.max(1, keepdims=True)
        log_px = top[:, 0] + np.log(np.exp(log_joint - top).sum(1))
        return log_px, np.exp(log_joint - log_px[:, None])

    def fit(self, x):
        x = _check_fit_data(x, self.n_components, "GaussianMixture.fit")
        k = self.n_components
        labels = KMeans(k, n_init=1, seed=self.seed).fit_predict(x)
        resp = np.eye(k)[labels]
        params = self._m_step(x, resp)
        self.log_likelihood_history_, self.converged_ = [], False
        for _ in range(self.max_iter):
            log_px, resp = self._normalise(self._log_joint(x, *params))  # E-step
            self.log_likelihood_history_.append(float(log_px.mean()))
            params = self._m_step(x, resp)  # M-step
            hist = self.log_likelihood_history_
            if len(hist) > 1 and hist[-1] - hist[-2] < self.tol:
                self.converged_ = True
                break
        self.weights_, self.means_, self.covariances_ = params
        self.n_iter_ = len(self.log_likelihood_history_)
        return self

    def _checked(self, x, who):
        if self.means_ is None:
            raise RuntimeError(f"GaussianMixture.{who}: call fit(x) first")
        x = _samples(x, "x", f"GaussianMixture.{who}").astype(np.float64)
        if x.shape[1] != self.means_.shape[1]:
            raise ValueError(f"GaussianMixture.{who}: x has {x.shape[1]} features, the model {self.means_.shape[1]}")
        return x

    def score_samples(self, x):
        """log p(x) of every row of ``x``."""
        x = self._checked(x, "score_samples")
        return self._normalise(self._log_joint(x, self.weights_, self.means_, self.covariances_))[0]

    def score(self, x):
        """The mean log-likelihood of the rows of ``x``."""
        return float(self.score_samples(x).mean())

    def predict_proba(self, x):
        """The posterior (N, K) of the components given each row of ``x``."""
        x = self._checked(x, "predict_proba")
        return self._normalise(self._log_joint(x, self.weights_, self.means_, self.covariances_))[1]

    def predict(self, x):
        return self.predict_proba(x).argmax(1)

    def sample(self, n, seed=None):
        """``(x, component)``: ``n`` samples drawn from the fitted mixture."""
        if self.means_ is None:
            raise RuntimeError("GaussianMixture.sample: call fit(x) first")
        g = _generator(seed)
        comp = g.choice(len(self.weights_), size=_positive_int(n, "n", "GaussianMixture.sample"), p=self.weights_)
        chol = np.linalg.cholesky(self.covariances_)
        z = g.standard_normal((len(comp), self.means_.shape[1]))
        return self.means_[comp] + np.einsum("nij,nj->ni", chol[comp], z), comp


def adjusted_rand_score(labels_true, labels_pred):
    """The adjusted Rand index of two labelings of the same samples: 1 for the same partition (whatever
    the label values), about 0 for independent ones, negative when worse than chance."""
    a, b = np.asarray(labels_true).ravel(), np.asarray(labels_pred).ravel()
    if a.shape != b.shape:
        raise ValueError(f"adjusted_rand_score: {a.size} true labels but {b.size} predicted ones")
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    table = np.bincount(ia * (ib.max() + 1) + ib, minlength=(ia.max() + 1) * (ib.max() + 1)) if a.size else np.zeros(1)

    def pairs(c):
        c = np.asarray(c, np.float64)
        return float((c * (c - 1) / 2).sum())

    index = pairs(table)
    rows = pairs(np.bincount(ia)) if a.size else 0.0
    cols = pairs(np.bincount(ib)) if a.size else 0.0
    total = a.size * (a.size - 1) / 2
    expected = rows * cols / total if total else 0.0
    top = (rows + cols) / 2
    if top == expected:  # both partitions trivial (one cluster, or all singletons): identical ones agree fully
        return 1.0
    return (index - expected) / (top - expected)
