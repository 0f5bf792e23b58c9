"""The classical labs (knn, linear, perceptron, clustering, features) reach their documented outcomes
in --quick form."""

import pytest

from knetpy.examples import labs

pytest.importorskip("sklearn", reason="the digits come from scikit-learn")


def run(name, *argv):
    return labs.run(name, ["--quick", *argv])


def test_labs_are_registered():
    for name in ("knn", "linear", "perceptron", "clustering", "features"):
        assert name in labs.LABS and callable(labs.get(name).main)


def test_knn_lab_chooses_k_by_cross_validation_and_beats_095(tmp_path):
    out = run("knn", "--no-plot", "--out", str(tmp_path))
    assert out["test_acc"] > 0.95
    means = out["cv_mean"][out["metric"]]
    assert means[out["k"]] == max(means.values())  # the chosen k is the cross-validated best
    assert set(out["cv_mean"]) == {"l1", "l2"}


def test_linear_lab_svm_and_softmax_beat_09_on_digits(tmp_path):
    out = run("linear", "--no-plot", "--out", str(tmp_path))
    for loss in ("svm", "softmax"):
        assert out[loss]["tst_acc"] > 0.9, (loss, out[loss]["tst_acc"])
        assert out[loss]["initial_loss"] == pytest.approx(out[loss]["expected_initial_loss"], rel=0.02)
    assert out["checkpoint"].exists()


def test_linear_lab_draws_templates_of_cifar_format_images(tmp_path):
    pytest.importorskip("matplotlib", reason="the templates are drawn with matplotlib")
    out = run("linear", "--dataset", "cifar", "--losses", "softmax", "--epochs", "5", "--out", str(tmp_path))
    assert out["softmax"]["tst_acc"] > 0.5  # ten classes: far above chance
    assert out["softmax"]["templates"].exists()


def test_perceptron_lab_converges_on_separable_and_fails_on_xor(tmp_path):
    out = run("perceptron", "--out", str(tmp_path))
    assert out["separable"]["converged"] and out["separable"]["trn_acc"] == 1.0
    assert not out["xor"]["converged"] and out["xor"]["trn_acc"] < 1.0 and min(out["xor"]["errors"]) > 0
    assert out["xor_mlp_acc"] == 1.0
    assert all(p is None or p.exists() for p in out["pictures"])


def test_clustering_lab_kmeans_recovers_blobs_and_em_is_monotone(tmp_path):
    out = run("clustering", "--no-plot", "--out", str(tmp_path))
    assert out["round_ari"] > 0.9
    assert out["monotone"] and out["log_likelihood"][-1] > out["log_likelihood"][0]
    assert out["elongated_gmm_ari"] > 0.9 > out["elongated_kmeans_ari"]
    inertia = out["inertia"]
    assert all(inertia[k + 1] <= inertia[k] * 1.001 for k in range(1, len(inertia)))


def test_features_lab_hog_beats_pixels_on_shifted_digits(tmp_path):
    out = run("features", "--no-plot", "--out", str(tmp_path))
    shifted = out["shifted_digits"]
    assert shifted["hog"] > shifted["pixels"] + 0.2
    assert out["digits"]["hog"] > 0.9
    assert set(out["images"]) == {"pixels", "hog", "colour", "hog+colour"}
    assert out["images"]["hog+colour"] > max(out["images"]["hog"], out["images"]["colour"]) - 0.05
