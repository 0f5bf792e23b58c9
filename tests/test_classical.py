"""kp.classical: distances, k-nearest neighbours, linear classifiers (SVM / softmax), the perceptron, HoG
and colour histograms, each against a plain-loop reference or scikit-learn."""

import colorsys

import numpy as np
import pytest

import knetpy as kp
from knetpy import classical
from knetpy.classical import (
    KNearestNeighbors,
    LinearClassifier,
    Perceptron,
    color_histogram,
    cross_validate_k,
    hog,
    pairwise_distances,
)


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


# -- distances -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("metric,ord_", [("l2", 2), ("l1", 1)])
def test_pairwise_distances_match_a_loop_over_pairs(metric, ord_):
    a, b = rand(7, 5), rand(9, 5, seed=1)
    want = np.array([[np.linalg.norm(ai - bj, ord=ord_) for bj in b] for ai in a])
    np.testing.assert_allclose(pairwise_distances(a, b, metric), want, rtol=1e-10, atol=1e-10)


def test_l2_squared_is_clipped_at_zero_and_l1_chunks_agree(monkeypatch):
    a = rand(30, 4) * 1e3
    d = pairwise_distances(a, a, "l2", squared=True)
    assert (d >= 0).all() and np.allclose(np.diag(d), 0, atol=1e-6 * np.abs(d).max())
    whole = pairwise_distances(a, a[:11], "l1")
    monkeypatch.setattr(classical, "L1_CHUNK_BYTES", 8 * 11 * 4 * 3)  # three rows per chunk
    np.testing.assert_array_equal(pairwise_distances(a, a[:11], "l1"), whole)


def test_pairwise_distances_flatten_images_and_refuse_mismatches():
    imgs = rand(3, 1, 4, 4)
    np.testing.assert_allclose(pairwise_distances(imgs, imgs), pairwise_distances(imgs.reshape(3, -1), imgs.reshape(3, -1)))
    with pytest.raises(ValueError, match="a has 16 features per row and b has 15"):
        pairwise_distances(imgs, rand(2, 15))
    with pytest.raises(ValueError, match="metric must be one of l2, l1"):
        pairwise_distances(imgs, imgs, "cosine")


# -- k-nearest neighbours --------------------------------------------------------------------------------
@pytest.mark.parametrize("metric", ["l2", "l1"])
def test_kneighbors_match_sklearn(metric):
    neighbors = pytest.importorskip("sklearn.neighbors", reason="scikit-learn is the reference")
    x, q = rand(60, 6), rand(15, 6, seed=2)
    y = np.arange(60) % 3
    d, idx = KNearestNeighbors(5, metric).fit(x, y).kneighbors(q)
    ref = neighbors.NearestNeighbors(n_neighbors=5, metric={"l2": "euclidean", "l1": "manhattan"}[metric]).fit(x)
    rd, ridx = ref.kneighbors(q)
    np.testing.assert_allclose(d, rd, rtol=1e-8)
    np.testing.assert_array_equal(idx, ridx)


def test_knn_vote_ties_go_to_the_nearest_class_and_labels_are_kept():
    x = np.array([[0.0], [1.0], [3.0], [10.0]])
    y = np.array([7, 4, 4, 7])
    knn = KNearestNeighbors(2).fit(x, y)
    assert knn.predict(np.array([[0.4]]))[0] == 7  # one 7 (nearest) and one 4: the 7 wins
    assert knn.predict(np.array([[0.6]]))[0] == 4
    assert knn.predict(np.array([[2.0]]), k=3)[0] == 4  # a majority beats the nearest
    assert KNearestNeighbors(1).fit(x, y).score(x, y) == 1.0


def test_knn_predict_ks_equals_separate_predictions():
    x, y = rand(80, 3), np.random.default_rng(3).integers(0, 4, 80)
    q = rand(20, 3, seed=4)
    knn = KNearestNeighbors(1).fit(x, y)
    many = knn.predict_ks(q, [1, 4, 7])
    for k in (1, 4, 7):
        np.testing.assert_array_equal(many[k], knn.predict(q, k=k))


def test_cross_validate_k_picks_the_best_mean_and_checks_its_arguments():
    x, y = kp.datasets.blobs(40, centers=3, std=3.0, seed=0)
    cv = cross_validate_k(x, y, ks=(1, 5, 15), folds=5)
    assert set(cv["accuracy"]) == {1, 5, 15} and all(len(v) == 5 for v in cv["accuracy"].values())
    assert cv["mean"][cv["k"]] == max(cv["mean"].values())
    assert cv["k"] > 1  # noisy overlapping blobs: a vote over several neighbours beats the single nearest
    with pytest.raises(ValueError, match="more than the 96 samples of a training fold"):
        cross_validate_k(x, y, ks=(200,), folds=5)
    with pytest.raises(ValueError, match="folds must be between 2"):
        cross_validate_k(x, y, folds=1)
    with pytest.raises(ValueError, match="120 samples but 3 labels"):
        cross_validate_k(x, y[:3])


def test_knn_errors_are_clear():
    with pytest.raises(RuntimeError, match="call fit"):
        KNearestNeighbors().predict(rand(2, 2))
    knn = KNearestNeighbors(3).fit(rand(2, 2), np.array([0, 1]))
    with pytest.raises(ValueError, match="k=3 is more than the 2 training samples"):
        knn.predict(rand(1, 2))
    with pytest.raises(ValueError, match="x has 5 features per sample, the training data 2"):
        knn.predict(rand(1, 5), k=1)
    with pytest.raises(TypeError, match="integer labels"):
        KNearestNeighbors().fit(rand(2, 2), np.array([0.0, 1.0]))


# -- linear classifiers ----------------------------------------------------------------------------------
def svm_loss_naive(W, b, X, y, reg, delta=1.0):
    """The CS231n multiclass SVM loss and gradient with explicit loops."""
    dW, db, loss = np.zeros_like(W), np.zeros_like(b), 0.0
    n, c = len(X), W.shape[1]
    for i in range(n):
        scores = X[i] @ W + b
        for j in range(c):
            if j == y[i]:
                continue
            margin = scores[j] - scores[y[i]] + delta
            if margin > 0:
                loss += margin
                dW[:, j] += X[i]
                dW[:, y[i]] -= X[i]
                db[j] += 1
                db[y[i]] -= 1
    return loss / n + reg * np.sum(W * W), dW / n + 2 * reg * W, db / n


def softmax_loss_naive(W, b, X, y, reg):
    dW, db, loss = np.zeros_like(W), np.zeros_like(b), 0.0
    for i in range(len(X)):
        s = X[i] @ W + b
        p = np.exp(s - s.max())
        p /= p.sum()
        loss -= np.log(p[y[i]])
        p[y[i]] -= 1
        dW += np.outer(X[i], p)
        db += p
    n = len(X)
    return loss / n + reg * np.sum(W * W), dW / n + 2 * reg * W, db / n


@pytest.mark.parametrize("loss,naive", [("svm", svm_loss_naive), ("softmax", softmax_loss_naive)])
def test_linear_loss_and_gradient_match_the_naive_loops(loss, naive):
    X, W, b = rand(12, 6), rand(6, 4, seed=1) * 0.5, rand(4, seed=2) * 0.1
    y = np.random.default_rng(5).integers(0, 4, 12)
    clf = LinearClassifier(loss, reg=0.1)
    value, (gW, gb) = kp.value_and_grad(clf.loss)([W, b], X, y)
    want, dW, db = naive(W, b, X, y, 0.1)
    np.testing.assert_allclose(float(value), want, rtol=1e-10)
    np.testing.assert_allclose(gW, dW, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(gb, db, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("loss", ["svm", "softmax"])
def test_linear_loss_gradcheck(loss):
    X, y = rand(10, 5), np.random.default_rng(6).integers(0, 3, 10)
    clf = LinearClassifier(loss, reg=0.05, delta=1.0)
    assert kp.gradcheck(lambda W, b: clf.loss([W, b], X, y), rand(5, 3, seed=7), rand(3, seed=8))


def test_svm_initial_loss_is_about_classes_minus_one_and_training_lowers_it():
    x, y = kp.datasets.blobs(50, centers=5, dim=4, std=2.0, seed=1)
    clf = LinearClassifier("svm", lr=0.01, epochs=10, batch_size=50).fit(x, y)
    assert abs(clf.loss_history_[0] - 4.0) < 0.2
    assert np.mean(clf.loss_history_[-5:]) < 0.5 * clf.loss_history_[0]
    assert clf.W.shape == (4, 5) and clf.score(x, y) > 0.9


def test_linear_classifier_is_seeded_and_checks_arguments():
    x, y = kp.datasets.blobs(20, centers=3, seed=0)
    a = LinearClassifier("softmax", epochs=3, seed=4).fit(x, y)
    b = LinearClassifier("softmax", epochs=3, seed=4).fit(x, y)
    np.testing.assert_array_equal(a.W, b.W)
    with pytest.raises(ValueError, match="loss must be one of svm, softmax"):
        LinearClassifier("hinge")
    with pytest.raises(ValueError, match="reg must be a finite number >= 0"):
        LinearClassifier(reg=-1)
    with pytest.raises(ValueError, match="x has 3 features per sample, W expects 2"):
        a.predict(rand(1, 3))


# -- the perceptron --------------------------------------------------------------------------------------
def test_perceptron_converges_on_separable_data():
    x, y = kp.datasets.linearly_separable(300, dim=3, margin=0.05, seed=2)
    p = Perceptron(max_epochs=200).fit(x, y)
    assert p.converged_ and p.errors_[-1] == 0 and p.score(x, y) == 1.0
    assert all(e > 0 for e in p.errors_[:-1])


def test_perceptron_never_separates_xor():
    x, y = kp.datasets.xor()
    p = Perceptron(max_epochs=300).fit(x, y)
    assert not p.converged_ and len(p.errors_) == 300 and min(p.errors_) > 0
    assert p.score(x, y) <= 0.75


def test_perceptron_keeps_label_values_and_refuses_three_classes():
    x = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 2.0], [-1.0, -2.0]])
    y = np.array(["no", "no", "yes", "no"])
    p = Perceptron().fit(x, y)
    assert list(p.predict(x)) == list(y)
    with pytest.raises(ValueError, match="two classes, got 3"):
        Perceptron().fit(x, np.array([0, 1, 2, 0]))


# -- HoG and colour histograms ---------------------------------------------------------------------------
def hog_naive(img, cell, bins, block, eps=1e-6):
    """HoG of one grey image with loops over pixels, cells and blocks."""
    h, w = img.shape
    gy, gx = np.gradient(img)
    cy, cx = h // cell, w // cell
    hist = np.zeros((cy, cx, bins))
    width = 180.0 / bins
    for r in range(cy * cell):
        for c in range(cx * cell):
            mag = np.hypot(gx[r, c], gy[r, c])
            ang = np.degrees(np.arctan2(gy[r, c], gx[r, c])) % 180.0
            pos = ang / width - 0.5
            lo = int(np.floor(pos))
            frac = pos - lo
            hist[r // cell, c // cell, lo % bins] += mag * (1 - frac)
            hist[r // cell, c // cell, (lo + 1) % bins] += mag * frac
    out = []
    for by in range(cy - block + 1):
        for bx in range(cx - block + 1):
            v = hist[by:by + block, bx:bx + block].transpose(2, 0, 1).ravel()
            v = v / np.sqrt((v ** 2).sum() + eps ** 2)
            v = np.minimum(v, 0.2)
            out.append(v / np.sqrt((v ** 2).sum() + eps ** 2))
    return np.concatenate(out)


def test_hog_matches_a_loop_over_pixels_and_blocks():
    imgs = np.random.default_rng(0).random((3, 13, 17))
    got = hog(imgs, cell=4, bins=9, block=2)
    want = np.stack([hog_naive(im, 4, 9, 2) for im in imgs])
    assert got.shape == (3, 2 * 3 * 4 * 9)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_hog_orientation_of_a_ramp_and_colour_as_luminance():
    ramp = np.tile(np.arange(16.0), (16, 1))[None]  # brightness grows along x: gradient at 0 degrees
    f = hog(ramp, cell=8, bins=9, block=1).reshape(-1, 9)
    assert np.all(f[:, [0, 8]].sum(1) > 0.99 * f.sum(1))  # all the weight in the two bins around 0/180
    rgb = np.random.default_rng(1).random((2, 3, 16, 16))
    grey = np.tensordot(rgb, [0.299, 0.587, 0.114], axes=([1], [0]))
    np.testing.assert_allclose(hog(rgb), hog(grey), rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="fewer than one block"):
        hog(np.zeros((1, 8, 8)), cell=8, block=2)


def test_color_histogram_hue_and_rgb():
    pixels = np.random.default_rng(2).random((200, 3))
    want = [colorsys.rgb_to_hsv(*p)[0] for p in pixels]
    np.testing.assert_allclose(classical._hue(pixels.T.reshape(1, 3, 200, 1))[0, :, 0], want, atol=1e-12)
    red = np.zeros((1, 3, 4, 4))
    red[:, 0] = 1.0
    green = np.roll(red, 1, axis=1)
    hist = color_histogram(np.concatenate([red, green]), bins=6)
    np.testing.assert_array_equal(hist, [[1, 0, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0]])
    rgb = color_histogram(np.random.default_rng(3).random((4, 3, 8, 8)), bins=5, space="rgb")
    assert rgb.shape == (4, 15)
    np.testing.assert_allclose(rgb.reshape(4, 3, 5).sum(-1), 1.0)
    with pytest.raises(ValueError, match="needs colour images"):
        color_histogram(np.zeros((2, 8, 8)))
