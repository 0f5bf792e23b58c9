"""kp.plot: learning curves and decision boundaries as PNG files; never an error for a missing picture."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import knetpy as kp
from knetpy import plot

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_size(path):
    """(width, height) from a PNG's IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


@pytest.fixture
def no_matplotlib(monkeypatch):
    """Make ``import matplotlib`` fail, as on a machine without the plot extra."""
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)


needs_matplotlib = pytest.mark.skipif(not plot.available(), reason="matplotlib (extra [plot]) is not installed")


@needs_matplotlib
def test_learning_curve_from_history_has_two_panels(tmp_path):
    model = kp.Sequential(kp.layers.Dense(3))
    model.compile(loss="cross_entropy", optimizer=kp.optim.SGD(lr=0.5), metrics=["accuracy"])
    x, y = kp.datasets.spirals(20, 3)
    history = model.fit(x, y, epochs=3, batch_size=30, validation_data=(x, y), verbose=0)
    one = plot.learning_curve({"loss": history["loss"]}, tmp_path / "one.png")
    two = plot.learning_curve(history, tmp_path / "sub" / "two.png", title="t")
    assert one == tmp_path / "one.png" and two == tmp_path / "sub" / "two.png"
    (w1, h1), (w2, h2) = _png_size(one), _png_size(two)
    assert h1 == h2 and w2 > 1.5 * w1  # losses and accuracies side by side


@needs_matplotlib
def test_decision_boundary_one_panel_per_classifier(tmp_path):
    x, y = kp.datasets.spirals(30, 3)
    w = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    classifiers = {"a": lambda p: p @ w, "b": lambda p: kp.tensor(p) @ w, "labels": lambda p: (p[:, 0] > 0).astype(int)}
    path = plot.decision_boundary(classifiers, x, y, tmp_path / "b.png", resolution=50)
    width, height = _png_size(path)
    assert width > 2.5 * height


def test_missing_matplotlib_is_a_message_not_an_error(tmp_path, no_matplotlib, capsys):
    assert not plot.available()
    assert plot.learning_curve({"loss": [2.0, 1.0]}, tmp_path / "c.png") is None
    x, y = kp.datasets.spirals(5, 3)
    assert plot.decision_boundary({"m": lambda p: p}, x, y, tmp_path / "d.png") is None
    err = capsys.readouterr().err
    assert err.count("matplotlib is not installed") == 2 and "pip install 'knetpy[plot]'" in err
    assert not list(tmp_path.iterdir())


@needs_matplotlib
def test_unwritable_path_is_a_message_not_an_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert plot.learning_curve({"loss": [2.0, 1.0]}, blocker / "c.png") is None
    assert "learning curve not written" in capsys.readouterr().err


def test_bad_inputs_are_named(tmp_path):
    with pytest.raises(TypeError, match="History or a dict"):
        plot.learning_curve([1.0, 2.0], tmp_path / "x.png")
    with pytest.raises(ValueError, match="no values"):
        plot.learning_curve({"loss": []}, tmp_path / "x.png")
    x, y = kp.datasets.spirals(5, 3)
    with pytest.raises(ValueError, match=r"x must be \(N, 2\) points"):
        plot.decision_boundary({"m": lambda p: p}, np.zeros((4, 3)), np.zeros(4, int), tmp_path / "x.png")
    with pytest.raises(ValueError, match="y must be"):
        plot.decision_boundary({"m": lambda p: p}, x, y[:3], tmp_path / "x.png")
    with pytest.raises(ValueError, match="no classifier"):
        plot.decision_boundary({}, x, y, tmp_path / "x.png")


def test_an_example_run_without_matplotlib_still_finishes(tmp_path, no_matplotlib, capsys):
    from knetpy.examples import spirals

    result = spirals.main(["--quick", "--steps", "20", "--out", str(tmp_path)])
    assert result["plot"] is None and result["boundaries"] is None
    assert (tmp_path / "model.ckpt").is_file()
    assert "matplotlib is not installed" in capsys.readouterr().err
