"""kp.data preprocessing: mean subtraction, PCA (against NumPy's SVD and scikit-learn), PCA and ZCA
whitening (identity covariance), fitted on training data and applied to test data."""

import numpy as np
import pytest

import knetpy as kp
from knetpy.data import PCA, ZCA, MeanSubtraction


def correlated(n=300, d=6, seed=0):
    g = np.random.default_rng(seed)
    return g.standard_normal((n, d)) @ g.standard_normal((d, d)) + g.standard_normal(d) * 5


def test_mean_subtraction_uses_the_training_mean():
    xtrn, xtst = correlated(), correlated(seed=1)
    m = MeanSubtraction().fit(xtrn)
    np.testing.assert_allclose(m.transform(xtst), xtst - xtrn.mean(0))
    np.testing.assert_allclose(m.transform(xtrn).mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(m.inverse_transform(m.transform(xtst)), xtst)
    imgs = np.random.default_rng(2).random((5, 1, 4, 4)).astype(np.float32)
    out = MeanSubtraction().fit_transform(imgs)
    assert out.shape == (5, 16) and out.dtype == np.float32


def test_pca_matches_numpy_svd():
    x = correlated()
    p = PCA(3).fit(x)
    _, s, vt = np.linalg.svd(x - x.mean(0), full_matrices=False)
    signs = np.sign((p.components_ * vt[:3]).sum(1))
    np.testing.assert_allclose(p.components_, vt[:3] * signs[:, None], atol=1e-10)
    np.testing.assert_allclose(p.explained_variance_, s[:3] ** 2 / (len(x) - 1))
    np.testing.assert_allclose(p.components_ @ p.components_.T, np.eye(3), atol=1e-12)
    z = p.transform(x)
    np.testing.assert_allclose(np.var(z, axis=0, ddof=1), p.explained_variance_)


def test_pca_matches_sklearn():
    decomposition = pytest.importorskip("sklearn.decomposition", reason="scikit-learn is the reference")
    xtrn, xtst = correlated(), correlated(seed=1)
    for whiten in (False, True):
        ours = PCA(4, whiten=whiten, eps=0.0).fit(xtrn)
        ref = decomposition.PCA(4, whiten=whiten).fit(xtrn)
        signs = np.sign((ours.components_ * ref.components_).sum(1))
        np.testing.assert_allclose(ours.components_, ref.components_ * signs[:, None], atol=1e-8)
        np.testing.assert_allclose(ours.explained_variance_ratio_, ref.explained_variance_ratio_)
        np.testing.assert_allclose(ours.transform(xtst), ref.transform(xtst) * signs, atol=1e-8)


def test_pca_inverse_and_fraction_of_variance():
    xtrn, xtst = correlated(), correlated(seed=1)
    full = PCA().fit(xtrn)
    np.testing.assert_allclose(full.inverse_transform(full.transform(xtst)), xtst, atol=1e-10)
    p = PCA(0.9).fit(xtrn)
    k = len(p.components_)
    cum = np.cumsum(full.explained_variance_ratio_)
    assert cum[k - 1] >= 0.9 and (k == 1 or cum[k - 2] < 0.9)
    part = p.inverse_transform(p.transform(xtst))  # the projection onto the kept directions
    np.testing.assert_allclose(p.transform(part), p.transform(xtst), atol=1e-10)


@pytest.mark.parametrize("kind", ["pca", "zca"])
def test_whitened_training_data_has_identity_covariance(kind):
    xtrn = correlated(500, 8)
    white = PCA(whiten=True, eps=0.0) if kind == "pca" else ZCA(eps=0.0)
    z = white.fit_transform(xtrn)
    np.testing.assert_allclose(np.cov(z, rowvar=False), np.eye(8), atol=1e-8)
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-10)
    # the default eps damps only slightly: the covariance is still the identity to 1e-3
    damped = (PCA(whiten=True) if kind == "pca" else ZCA()).fit_transform(xtrn)
    np.testing.assert_allclose(np.cov(damped, rowvar=False), np.eye(8), atol=1e-3)


def test_zca_is_symmetric_close_to_the_input_and_invertible():
    xtrn, xtst = correlated(500, 5), correlated(50, 5, seed=3)
    zca = ZCA(eps=1e-3).fit(xtrn)
    np.testing.assert_allclose(zca.whitening_, zca.whitening_.T, atol=1e-12)
    np.testing.assert_allclose(zca.inverse_transform(zca.transform(xtst)), xtst, atol=1e-8)
    # of all whitenings, ZCA moves the data least: closer to the (scaled) input than PCA whitening
    pca = PCA(whiten=True, eps=1e-3).fit(xtrn)
    x0 = xtrn - xtrn.mean(0)
    assert np.linalg.norm(zca.transform(xtrn) - x0) < np.linalg.norm(pca.transform(xtrn) - x0)


def test_whitening_on_images_with_constant_pixels_needs_eps():
    x, _ = kp.datasets.digits(flatten=True)  # some border pixels are always 0
    with pytest.raises(ValueError, match="zero variance; whiten with eps > 0"):
        PCA(whiten=True, eps=0.0).fit(x).transform(x[:2])
    z = ZCA(eps=1e-2).fit(x).transform(x)
    assert np.isfinite(z).all() and z.dtype == x.dtype


def test_preprocessing_errors_are_clear():
    p = PCA(2).fit(correlated())
    with pytest.raises(ValueError, match="x has 4 features per sample, but was fitted on 6"):
        p.transform(np.zeros((3, 4)))
    with pytest.raises(RuntimeError, match=r"PCA.transform: call fit\(x\) first"):
        PCA().transform(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="n_components=9 is more than min"):
        PCA(9).fit(correlated())
    with pytest.raises(ValueError, match="fractional n_components must be in"):
        PCA(1.5)
    with pytest.raises(ValueError, match="eps must be a finite number >= 0"):
        ZCA(eps=-1)
    with pytest.raises(TypeError, match="must hold real numbers"):
        PCA().fit(np.ones((3, 2), complex))
