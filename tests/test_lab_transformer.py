"""``knetpy lab transformer``: a transformer encoder learns to sort digits to >= 99% exact match."""

from __future__ import annotations

import numpy as np
import pytest

import knetpy as kp
from knetpy import cli
from knetpy.examples.labs import LABS, transformer


def test_quick_lab_sorts_digits_to_99_percent_exact_match(tmp_path, capsys):
    result = transformer.main(["--quick", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert result["task"] == "sort"
    assert result["exact_match"] >= 0.99  # measured 0.999 on seeds 0-2, 0.997 on seed 3
    assert result["token_accuracy"] >= 0.998
    assert result["history"]["tst_exact"][0] < 0.5  # it learned: not there after the first tenth
    assert "exact-match accuracy on 1000 held-out sequences" in out
    assert result["checkpoint"].exists()
    # the saved model sorts as well as the trained one
    loaded = kp.load(result["checkpoint"])
    x, y = transformer.make_batch(np.random.default_rng(7), 200, 8, 10, "sort")
    assert transformer.evaluate(loaded, x, y)[0] >= 0.98
    if kp.plot.available():
        assert result["attention_map"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert result["plot"].exists()


def test_the_attention_weights_of_the_first_block_are_rows_of_probabilities(tmp_path):
    model = transformer.build_model(5, 10, 16, 4, 32, 1)
    w = transformer.first_block_weights(model, np.arange(5))
    assert w.shape == (4, 5, 5)
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-5)


def test_targets_of_the_tasks():
    x, y = transformer.make_batch(np.random.default_rng(0), 3, 6, 10, "sort")
    np.testing.assert_array_equal(y, np.sort(x, axis=1))
    x, y = transformer.make_batch(np.random.default_rng(0), 3, 6, 10, "reverse")
    np.testing.assert_array_equal(y, x[:, ::-1])


def test_lab_is_registered_and_checks_its_options(capsys):
    assert "transformer" in LABS
    assert cli.main(["lab", "--list"]) == 0
    assert "transformer" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        cli.main(["lab", "transformer", "--help"])
    assert exit_.value.code == 0
    assert "knetpy lab transformer" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        transformer.main(["--d-model", "10", "--heads", "4"])
    assert "divisible by --heads" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("task", ["sort", "reverse"])
def test_full_lab_reaches_exact_match(tmp_path, task):
    result = transformer.main(["--task", task, "--out", str(tmp_path), "--no-plot"])
    assert result["exact_match"] >= 0.995  # measured 1.000 for sort
