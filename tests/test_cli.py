"""The command line: quickstart, train, bench, info; errors in one line with suggestions.

Commands run in-process through ``knetpy.cli.main`` (fast); ``python -m knetpy`` is run as a program
where the entry point itself is what is tested.
"""

from __future__ import annotations

import contextlib
import io
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
from example_cases import has, no_downloads

import knetpy as kp
from knetpy import cli, plot

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _no_downloads(tmp_path, monkeypatch):
    no_downloads(tmp_path, monkeypatch)


def _run_module(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "knetpy", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


# -- info -------------------------------------------------------------------------------------------------
def test_info_reports_version_backend_blas_threads_and_device(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"knetpy {kp.__version__}")
    assert f"numpy {np.__version__}" in out
    assert "backend: NumPy" in out and "default dtype float32" in out
    assert re.search(r"\d+ cores", out)
    assert "blas" in out.lower() and "thread settings:" in out
    assert re.search(r"^GPU: ", out, re.M)
    assert "optional extras: data (scikit-learn" in out and "plot (matplotlib" in out
    assert "Fashion-MNIST:" in out and "UCI housing, tinyshakespeare: shipped with knetpy" in out


def test_info_names_a_dataset_found_in_knetpy_data(tmp_path, monkeypatch, capsys):
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "train-images-idx3-ubyte.gz").write_text("not checked by info")
    monkeypatch.setenv("KNETPY_DATA", str(tmp_path))
    cli.main(["info"])
    assert f"MNIST: {tmp_path / 'mnist'}" in capsys.readouterr().out


def test_module_entry_point_runs_info_and_version():
    out = _run_module("info")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("knetpy ")
    version = _run_module("--version")
    assert version.stdout.strip() == f"knetpy {kp.__version__}"


# -- errors and help ------------------------------------------------------------------------------------------
def test_unknown_command_suggests_the_closest(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["trian"])
    assert stop.value.code == 2
    assert "did you mean 'train'?" in capsys.readouterr().err


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 2
    out = capsys.readouterr().out
    for command in cli.COMMANDS:
        assert command in out


def test_train_lists_the_examples(capsys):
    assert cli.main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    for name in ("housing", "softmax", "mlp", "lenet", "charlm", "spirals"):
        assert re.search(rf"^  {name} ", out, re.M)
    assert cli.main(["train"]) == 2  # a name is required


def test_train_unknown_example_suggests_the_closest(capsys):
    assert cli.main(["train", "mpl"]) == 2
    assert "unknown example 'mpl'; did you mean 'mlp'?" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["quickstart"], ["train", "lenet"], ["bench"], ["info"]])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main([*command, "--help"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.startswith("usage: knetpy " + command[0])


def test_missing_data_is_one_line_with_status_2(tmp_path, capsys):
    status = cli.main(["train", "housing", "--path", str(tmp_path / "nowhere"), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("knetpy train: error: kp.datasets.housing: path ") and "(on the command line: --path)" in err


# -- train ---------------------------------------------------------------------------------------------------
def test_train_housing_quick_as_a_program(tmp_path):
    out = _run_module("train", "housing", "--quick", "--out", str(tmp_path), "--no-plot")
    assert out.returncode == 0, out.stderr
    losses = [float(v) for v in re.findall(r"^\(:step, \d+, :trn, ([0-9.]+)", out.stdout, re.M)]
    assert len(losses) >= 11 and losses[0] > 200 and losses[10] < 100
    assert (tmp_path / "model.ckpt").is_file()


def test_train_spirals_quick(tmp_path, capsys):
    assert cli.main(["train", "spirals", "--quick", "--out", str(tmp_path), "--no-plot"]) == 0
    out = capsys.readouterr().out
    accuracy = dict(re.findall(r"^\(:model, (\w+), :trn, [0-9.]+, :tst, ([0-9.]+)\)", out, re.M))
    assert float(accuracy["linear"]) < 0.7 < 0.9 < float(accuracy["mlp"])


# -- quickstart ------------------------------------------------------------------------------------------------
def _exec_snippet(snippet):
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        exec(compile(snippet, "snippet", "exec"), {})
    return buffer.getvalue()


@pytest.mark.skipif(not has("sklearn"), reason="the quickstart's digits need scikit-learn (extra [data])")
def test_quickstart_trains_a_cnn_on_digits_saves_it_and_shows_how_to_use_it(tmp_path, capsys):
    assert cli.main(["quickstart", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    accuracy = float(re.search(r"test accuracy ([0-9.]+) on 359 held-out examples \(digits", out).group(1))
    assert accuracy >= 0.95
    model = kp.load(tmp_path / "model.ckpt")
    assert any(isinstance(layer, kp.layers.Conv2D) for layer in model)
    # The three printed lines load the model and predict the first five digits.
    snippet = out.split("Load the model and predict:\n\n")[1].split("\n\n")[0]
    lines = [line[4:] for line in snippet.splitlines()]
    assert len(lines) == 3
    predicted = _exec_snippet("\n".join(lines))
    x, y = kp.datasets.digits()
    assert predicted.strip() == str(model.predict(x[:5]).argmax(axis=1))
    assert np.mean(model.predict(x).argmax(axis=1) == y) > 0.95
    if plot.available():
        assert (tmp_path / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"


def test_quickstart_falls_back_to_spirals_and_says_so(tmp_path, monkeypatch, capsys):
    def no_sklearn(**kwargs):
        raise ImportError("kp.datasets.digits needs scikit-learn, which is not installed")

    def no_files(*args, **kwargs):
        raise kp.datasets.DatasetNotFoundError("kp.datasets.fashion_mnist: not found; put the files somewhere")

    monkeypatch.setattr(kp.datasets, "digits", no_sklearn)
    monkeypatch.setattr(kp.datasets, "fashion_mnist", no_files)
    assert cli.main(["quickstart", "--out", str(tmp_path), "--no-plot"]) == 0
    out = capsys.readouterr().out
    assert "note: kp.datasets.digits needs scikit-learn" in out
    assert "Fashion-MNIST is not on this machine" in out and "uses the spirals instead" in out
    accuracy = float(re.search(r"test accuracy ([0-9.]+) on 180 held-out examples \(spirals", out).group(1))
    assert accuracy > 0.9
    snippet = "\n".join(line[4:] for line in out.split("predict:\n\n")[1].split("\n\n")[0].splitlines())
    assert re.fullmatch(r"\[[0-2 ]+\]\n", _exec_snippet(snippet))


@pytest.mark.slow
@pytest.mark.skipif(not pathlib.Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="Fashion-MNIST is absent")
def test_quickstart_on_fashion_mnist(tmp_path, capsys):
    assert cli.main(["quickstart", "--dataset", "fashion", "--out", str(tmp_path), "--no-plot"]) == 0
    assert "(fashion, " in capsys.readouterr().out


# -- bench ----------------------------------------------------------------------------------------------------
def test_bench_lists_the_benchmark_scripts(capsys):
    assert cli.main(["bench", "--list"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^linreg\s+\S+linreg\.py$", out, re.M)
    names = [line.split()[0] for line in out.splitlines()]
    # not benchmarks: shared code, the JAX peers, and the report driver (run as a benchmark it wrote BENCHMARKS.md)
    assert not {"common", "peers_jax", "report"} & set(names)


def test_bench_runs_a_short_benchmark(capsys):
    status = cli.main(["bench", "--quick", "overhead"])
    out = capsys.readouterr().out
    assert status == 0
    assert "overhead: python benchmarks/overhead.py --steps 2000" in out
    assert "| overhead | ok |" in out


def test_bench_unknown_name_suggests(capsys):
    with pytest.raises(SystemExit):
        cli.main(["bench", "linreq"])
    assert "did you mean 'linreg'?" in capsys.readouterr().err


def test_bench_outside_a_source_checkout_says_where_to_find_them(monkeypatch, capsys):
    monkeypatch.setattr(cli, "benchmarks_dir", lambda: None)
    assert cli.main(["bench"]) == 1
    out = capsys.readouterr().out
    assert "benchmarks/ folder of knetpy's source repository" in out
