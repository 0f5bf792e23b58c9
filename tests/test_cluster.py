"""kp.cluster: k-means (k-means++), the Gaussian mixture fitted by EM, the adjusted Rand index."""

import numpy as np
import pytest

import knetpy as kp
from knetpy.cluster import GaussianMixture, KMeans, adjusted_rand_score, kmeans_plusplus


def elongated(seed=0, n=150):
    c, s = np.cos(0.7), np.sin(0.7)
    stretch = np.array([[c, -s], [s, c]]) @ np.diag([3.0, 0.3])
    return kp.datasets.blobs(n, centers=np.array([[0.0, 0.0], [0.0, 4.0], [0.0, 8.0]]), stretch=stretch, seed=seed)


def test_adjusted_rand_score_matches_sklearn():
    metrics = pytest.importorskip("sklearn.metrics", reason="scikit-learn is the reference")
    g = np.random.default_rng(0)
    for _ in range(5):
        a, b = g.integers(0, 4, 100), g.integers(0, 6, 100)
        b[:60] = a[:60]
        assert adjusted_rand_score(a, b) == pytest.approx(metrics.adjusted_rand_score(a, b), abs=1e-12)
    assert adjusted_rand_score([0, 0, 1, 1], [5, 5, 2, 2]) == 1.0  # the same partition, other names
    assert adjusted_rand_score([0, 0, 0], [1, 1, 1]) == 1.0
    with pytest.raises(ValueError, match="3 true labels but 2 predicted"):
        adjusted_rand_score([0, 1, 1], [0, 1])


def test_kmeans_recovers_blobs_and_is_seeded():
    x, y = kp.datasets.blobs(100, centers=5, std=1.0, seed=3)
    km = KMeans(5, seed=0).fit(x)
    assert adjusted_rand_score(y, km.labels_) > 0.9
    again = KMeans(5, seed=0).fit(x)
    np.testing.assert_array_equal(km.cluster_centers_, again.cluster_centers_)
    np.testing.assert_array_equal(km.predict(x), km.labels_)
    d2 = ((x[:, None] - km.cluster_centers_[None]) ** 2).sum(-1)
    assert km.inertia_ == pytest.approx(d2.min(1).sum(), rel=1e-5)


def test_kmeans_inertia_as_good_as_sklearn():
    cluster = pytest.importorskip("sklearn.cluster", reason="scikit-learn is the reference")
    x, _ = kp.datasets.blobs(60, centers=6, std=2.5, seed=4)
    x = x.astype(np.float64)
    ours = KMeans(6, n_init=4, seed=0).fit(x).inertia_
    ref = cluster.KMeans(6, n_init=4, random_state=0).fit(x).inertia_
    assert ours <= ref * 1.02


def test_kmeans_plusplus_spreads_the_starts():
    # two far groups: k-means++ puts one start in each (uniform starts would share one half of the time)
    x = np.concatenate([np.zeros((50, 2)), np.full((50, 2), 100.0)]) + np.random.default_rng(0).random((100, 2))
    for seed in range(10):
        c = kmeans_plusplus(x, 2, seed)
        assert abs(c[0, 0] - c[1, 0]) > 50


def test_gmm_log_likelihood_never_decreases():
    x, y = elongated()
    gmm = GaussianMixture(3, reg_covar=0.0, tol=0.0, max_iter=60, seed=1).fit(x)
    ll = np.array(gmm.log_likelihood_history_)
    # tol=0 runs every iteration, unless EM reaches its fixed point first: then the last change is
    # rounding (one BLAS kernel gave -4e-16 at iteration 15) and it stops there
    assert len(ll) == 60 or (len(ll) > 10 and abs(ll[-1] - ll[-2]) < 1e-12)
    assert np.all(np.diff(ll) >= -1e-10)
    assert ll[-1] > ll[0]
    assert adjusted_rand_score(y, gmm.predict(x)) > 0.95
    assert adjusted_rand_score(y, KMeans(3, seed=1).fit_predict(x)) < 0.6  # where k-means fails


def test_gmm_matches_sklearn():
    mixture = pytest.importorskip("sklearn.mixture", reason="scikit-learn is the reference")
    x, _ = elongated(seed=2)
    x = x.astype(np.float64)
    ours = GaussianMixture(3, tol=1e-8, max_iter=300, seed=0).fit(x)
    ref = mixture.GaussianMixture(3, covariance_type="full", tol=1e-8, max_iter=300, random_state=0).fit(x)
    assert ours.score(x) == pytest.approx(ref.score(x), abs=1e-4)
    np.testing.assert_allclose(ours.score_samples(x[:20]), ref.score_samples(x[:20]), atol=1e-3)
    order = np.argsort(ours.means_[:, 1]), np.argsort(ref.means_[:, 1])
    np.testing.assert_allclose(ours.means_[order[0]], ref.means_[order[1]], atol=1e-3)
    np.testing.assert_allclose(ours.covariances_[order[0]], ref.covariances_[order[1]], atol=1e-3)


def test_gmm_posterior_sample_and_errors():
    x, _ = elongated(seed=3, n=60)
    gmm = GaussianMixture(3).fit(x)
    p = gmm.predict_proba(x)
    np.testing.assert_allclose(p.sum(1), 1.0)
    draws, comp = gmm.sample(5000, seed=0)
    assert draws.shape == (5000, 2) and np.bincount(comp, minlength=3).min() > 1000
    np.testing.assert_allclose(draws.mean(0), x.mean(0), atol=0.3)
    with pytest.raises(ValueError, match="x has 3 features, the model 2"):
        gmm.predict(np.zeros((2, 3)))
    with pytest.raises(RuntimeError, match="call fit"):
        GaussianMixture(2).score(x)
    with pytest.raises(ValueError, match="3 clusters need at least 3 samples"):
        KMeans(3).fit(x[:2])
    with pytest.raises(ValueError, match="NaN or infinite"):
        GaussianMixture(1).fit(np.array([[0.0], [np.nan]]))
