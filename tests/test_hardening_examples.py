"""Examples, benchmarks and plots as a newcomer meets them: offline, from any folder, with honest plots.

The programs run in a subprocess whose working folder is a fresh temporary one (so no ``../shared``
is near), with the network cut off by a ``sitecustomize`` module and an empty cache.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

import knetpy as kp
from knetpy import plot
from knetpy.examples import mlp, quickstart

ROOT = pathlib.Path(__file__).resolve().parents[1]
NO_NETWORK = """
import socket

def _refuse(*args, **kwargs):
    raise OSError("network disabled in this test")

socket.socket.connect = _refuse
socket.create_connection = _refuse
"""


def _offline_env(tmp_path):
    """An environment with no network, an empty cache and no data folders."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(NO_NETWORK)
    env = {k: v for k, v in os.environ.items() if k not in ("KNETPY_DATA", "PYTHONPATH")}
    env.update(PYTHONPATH=str(site), KNETPY_CACHE=str(tmp_path / "cache"), HOME=str(tmp_path / "home"),
               MPLBACKEND="Agg")
    return env


def _run(tmp_path, *args, timeout=300):
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    assert not (work.parent / "shared").exists() and not (work / ".." / ".." / "shared").exists()
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=work,
                          env=_offline_env(tmp_path))


def test_no_source_reads_a_shared_folder_next_to_the_checkout():
    pattern = re.compile(r"""["']shared["']\s*[,/)]|shared/data|\.\./shared""")
    offenders = []
    for folder in ("knetpy", "benchmarks", "examples", "tests"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.name != pathlib.Path(__file__).name and pattern.search(path.read_text(encoding="utf-8")):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


@pytest.mark.parametrize("name", ["housing", "charlm"])
def test_train_quick_runs_offline_from_any_folder(tmp_path, name):
    out = _run(tmp_path, "-m", "knetpy", "train", name, "--quick", "--out", str(tmp_path / "out"), "--no-plot")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "downloading" not in out.stderr
    assert (tmp_path / "out" / "model.ckpt").is_file()


def test_benchmarks_that_crashed_run_offline_from_any_folder(tmp_path):
    out = _run(tmp_path, "-m", "knetpy", "bench", "--quick", "linreg")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert re.search(r"\| knetpy \| [0-9.]+ \|", out.stdout) and "| linreg | ok |" in out.stdout
    # charlm's PyTorch half alone takes half a minute on two cores: its data path is what crashed.
    out = _run(tmp_path, str(ROOT / "benchmarks" / "charlm.py"), "--only", "knetpy", "--windows", "1")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert re.search(r"^knetpy: [0-9.]+ s, final loss [0-9.]+$", out.stdout, re.M)


@pytest.mark.slow
def test_the_whole_quick_bench_runs_offline(tmp_path):
    out = _run(tmp_path, "-m", "knetpy", "bench", "--quick", timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    for name in ("linreg", "overhead", "mlp", "lenet", "charlm"):
        assert re.search(rf"^\| {name} \| (ok|skipped) \|", out.stdout, re.M), name


# --- plots ---------------------------------------------------------------------------------------------------
needs_matplotlib = pytest.mark.skipif(not plot.available(), reason="matplotlib (the extra [plot]) is missing")


def _figure(history, **options):
    series = plot._series(history)
    return plot._learning_curve_figure(series, options.get("title"), options.get("xlabel", "epoch"),
                                       options.get("labels"), options.get("val_label", "val"))


def _legend(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


@needs_matplotlib
def test_one_epoch_curve_is_points_on_an_integer_axis_around_1():
    fig = _figure({"loss": [0.7], "val_loss": [0.8], "accuracy": [0.6], "val_accuracy": [0.5]}, val_label="test")
    for ax in fig.axes:
        assert ax.get_xlim() == (0.5, 1.5)
        assert ax.xaxis.get_major_locator()._integer
        fig.canvas.draw()
        ticks = [t for t in ax.get_xticks() if 0.5 <= t <= 1.5]
        assert ticks == [1.0]
        for line in ax.get_lines():
            assert line.get_marker() == "o" and len(line.get_xdata()) == 1
    assert _legend(fig.axes[0]) == ["loss", "test_loss"]
    assert _legend(fig.axes[1]) == ["accuracy", "test_accuracy"]


@needs_matplotlib
def test_many_epochs_get_whole_number_ticks_and_val_keeps_its_name_by_default():
    fig = _figure({"loss": [1.0, 0.8, 0.7], "val_loss": [1.1, 0.9, 0.8]})
    ax = fig.axes[0]
    fig.canvas.draw()
    assert all(float(t).is_integer() for t in ax.get_xticks())
    assert _legend(ax) == ["loss", "val_loss"]


@needs_matplotlib
def test_image_examples_draw_one_train_accuracy_curve_clearly_labelled(tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    seen = {}

    def capture(history, path, **options):
        seen.update(history=history, **options)
        return None

    monkeypatch.setattr(plot, "learning_curve", capture)
    mlp.main(["--quick", "--dataset", "digits", "--epochs", "1", "--out", str(tmp_path)])
    assert set(seen["history"]) == {"loss", "trn_acc", "tst_acc"}  # fit's running accuracy is not a second curve
    labels = _legend(_figure(seen["history"], labels=seen["labels"]).axes[1])
    assert labels == ["train accuracy (after the epoch)", "test accuracy (after the epoch)"]


@needs_matplotlib
def test_quickstart_labels_its_test_set_and_prints_a_snippet_that_runs_anywhere(tmp_path, monkeypatch, capsys):
    seen = {}

    def capture(history, path, **options):
        seen.update(history=history, **options)
        return None

    monkeypatch.setattr(plot, "learning_curve", capture)
    monkeypatch.chdir(tmp_path)
    result = quickstart.main(["--dataset", "spirals", "--epochs", "2", "--out", "runs/q"])
    assert seen["val_label"] == "test" and "val_accuracy" in seen["history"].history
    legend = _legend(_figure(seen["history"], val_label=seen["val_label"]).axes[1])
    assert "test_accuracy" in legend and "val_accuracy" not in legend
    out = capsys.readouterr().out
    snippet = "\n".join(line[4:] for line in out.split("predict:\n\n")[1].split("\n\n")[0].splitlines())
    path = re.search(r"kp\.load\('([^']+)'\)", snippet).group(1)
    assert pathlib.Path(path).is_absolute() and pathlib.Path(path) == (tmp_path / "runs" / "q" / "model.ckpt")
    assert result["snippet"] == snippet
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    ran = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, timeout=120, cwd=elsewhere,
                         env=_offline_env(tmp_path))
    assert ran.returncode == 0, ran.stderr
    assert re.fullmatch(r"\[[0-2 \n]+\]\n", ran.stdout)
    assert kp.load(path) is not None
