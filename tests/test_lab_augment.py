"""The augment lab: every transform changes the batch, the seeded pipeline repeats, mixup labels sum to 1."""

import numpy as np
import pytest

from knetpy.examples.labs import LABS, augment

pytest.importorskip("sklearn", reason="the digits come from scikit-learn")


def test_lab_outcome(tmp_path):
    out = augment.main(["--quick", "--no-plot", "--out", str(tmp_path)])
    assert out["repeatable"]
    assert all(v > 0.01 for v in out["changes"].values()), out["changes"]
    np.testing.assert_allclose(out["mixup_label_sums"], 1, atol=1e-6)
    assert {"siamese", "mcdropout", "transfer", "augment"} <= set(LABS)


def test_lab_picture(tmp_path):
    pytest.importorskip("matplotlib", reason="the plot extra draws the picture")
    out = augment.main(["--quick", "--out", str(tmp_path)])
    assert out["plot"] is not None and (tmp_path / augment.PLOT).stat().st_size > 1000
