"""The siamese lab: held-out same-class pairs closer than different-class pairs, pairs told apart."""

import numpy as np
import pytest

from knetpy.examples.labs import siamese

pytest.importorskip("sklearn", reason="the digits come from scikit-learn")


def test_same_class_pairs_are_closer_on_held_out_digits(tmp_path):
    out = siamese.main(["--quick", "--no-plot", "--out", str(tmp_path)])
    assert out["same_distance"] < 0.5 * out["different_distance"], out
    assert out["pair_accuracy"] > 0.9
    assert np.mean(out["loss"][-50:]) < 0.5 * np.mean(out["loss"][:50])


def test_pairs_are_half_same_half_different_and_labelled_right():
    y = np.repeat(np.arange(4), [5, 7, 3, 9])
    i, j, same = siamese.make_pairs(y, 400, np.random.default_rng(0))
    assert same.mean() == 0.5
    np.testing.assert_array_equal(y[i] == y[j], same > 0)
    assert len(set(zip(y[i][same == 0].tolist(), y[j][same == 0].tolist()))) == 12  # every ordered pair of classes
