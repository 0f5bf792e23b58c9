"""The example programs run end to end in their short form (--quick) and learn what they claim.

Each example's ``main(argv)`` is called in-process (fast) and returns its metrics; the scripts in
examples/ are run as programs only for ``--help``. The MNIST-format examples run on scikit-learn's
digits and on a small synthetic MNIST-format set written here, so they are tested even where
Fashion-MNIST is not installed; the Fashion-MNIST runs skip (saying why) where it is absent.
"""

from __future__ import annotations

import importlib
import math
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from example_cases import has, no_downloads

import knetpy as kp
from knetpy import plot
from knetpy.examples import EXAMPLES, charlm, housing, lenet, mlp, softmax, spirals
from knetpy.examples._common import ExampleError, knet_line, load_images, run_script

ROOT = pathlib.Path(__file__).resolve().parents[1]
FASHION = pathlib.Path("/usr/share/datasets/fashion-mnist")
needs_fashion = pytest.mark.skipif(
    not FASHION.is_dir(), reason=f"Fashion-MNIST is not installed at {FASHION} (apt-get install dataset-fashion-mnist)")
needs_sklearn = pytest.mark.skipif(not has("sklearn"), reason="the digits need scikit-learn (extra [data])")

IMAGE_EXAMPLES = {"softmax": softmax, "mlp": mlp, "lenet": lenet}
# Two epochs: one loss value per epoch, and the loss must fall from the first to the last.
DIGITS_EPOCHS = 2


@pytest.fixture(autouse=True)
def _no_downloads(tmp_path, monkeypatch):
    no_downloads(tmp_path, monkeypatch)


# -- the report line ------------------------------------------------------------------------------------
def test_knet_line_format():
    assert knet_line("epoch", 1, "trn", 0.91, "tst", 0.9) == "(:epoch, 1, :trn, 0.9100, :tst, 0.9000)"
    assert knet_line("model", "mlp", "tst", 0.5) == "(:model, mlp, :tst, 0.5000)"


# -- housing ----------------------------------------------------------------------------------------------
def test_housing_loss_falls_from_hundreds_below_100_in_10_steps(tmp_path, capsys):
    result = housing.main(["--quick", "--out", str(tmp_path), "--no-plot"])
    trn, tst = result["trn_mse"], result["tst_mse"]
    assert len(trn) == 21  # before training, then 20 steps (--quick)
    assert trn[0] > 200 and tst[0] > 200  # from a small random start the error is in the hundreds
    assert trn[10] < 100 and tst[10] < 100
    assert all(b < a for a, b in zip(trn[:11], trn[1:11]))  # full-batch GD on a convex loss: every step helps
    assert trn[-1] < 35 and tst[-1] < 40
    out = capsys.readouterr().out
    assert "(:step, 10, :trn, " in out and "test MSE" in out
    saved = kp.load(result["checkpoint"])
    assert saved["w"].shape == (13, 1) and saved["b"].shape == (1,) and len(saved["features"]) == 13
    assert result["plot"] is None


def test_housing_checkpoint_reproduces_the_reported_test_error(tmp_path):
    result = housing.main(["--quick", "--steps", "5", "--out", str(tmp_path),
                           "--no-plot"])
    saved = kp.load(result["checkpoint"])
    x, y = kp.datasets.housing()
    _, _, xtst, ytst, mean, std = housing.split_and_standardize(x, y, seed=0)
    np.testing.assert_allclose(saved["mean"], mean)
    mse = float(np.mean((xtst @ saved["w"] + saved["b"] - ytst) ** 2))
    assert mse == pytest.approx(result["tst_mse"][-1], rel=1e-5)


def test_housing_missing_file_is_one_line_error(tmp_path, capsys):
    status = run_script(housing.main, ["--path", str(tmp_path / "nowhere"), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("error: ") and "does not exist" in err and "Traceback" not in err


# -- softmax, mlp, lenet ----------------------------------------------------------------------------------
def _check_image_run(name, result, out):
    trn, tst = result["trn_acc"], result["tst_acc"]
    assert tst[-1] > 0.3 and trn[-1] > 0.3, f"{name}: accuracy {tst} is not well above chance (0.1)"
    assert tst[-1] > tst[0] + 0.1, f"{name}: test accuracy did not improve: {tst}"
    losses = result["loss"]
    assert losses[-1] < math.log(10), f"{name}: loss {losses} is no better than a uniform guess over 10 classes"
    assert len(losses) == 1 or losses[-1] < losses[0], f"{name}: loss did not fall: {losses}"
    assert "(:epoch, 0, :trn, " in out and f"(:epoch, {len(trn) - 1}, :trn, " in out


def _saved_accuracy(name, checkpoint, x, y):
    saved = kp.load(checkpoint)
    if name == "softmax":
        xf = x.reshape(len(x), -1)
        return kp.accuracy(softmax.predict(saved, xf), y)
    return kp.accuracy(saved.predict(x), y)


@needs_sklearn
@pytest.mark.parametrize("name", list(IMAGE_EXAMPLES))
def test_image_examples_learn_the_digits(name, tmp_path, capsys):
    example = IMAGE_EXAMPLES[name]
    result = example.main(["--quick", "--dataset", "digits", "--epochs", str(DIGITS_EPOCHS),
                           "--out", str(tmp_path), "--no-plot"])
    _check_image_run(name, result, capsys.readouterr().out)
    _, _, xtst, ytst = load_images("digits", seed=0)
    # The checkpoint holds the trained model: it scores what the run reported.
    assert _saved_accuracy(name, result["checkpoint"], xtst, ytst) == pytest.approx(result["tst_acc"][-1])


def _write_synthetic_mnist(folder, n_train=600, n_test=200, seed=0):
    """MNIST-format IDX files of 28x28 images in which each class is a bright band at its own rows."""
    g = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = g.integers(0, 10, n).astype(np.uint8)
        images = g.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(labels):
            images[i, 2 + 2 * c: 5 + 2 * c, 4:24] = 200
        kp.datasets.write_idx(folder / f"{split}-images-idx3-ubyte.gz", images)
        kp.datasets.write_idx(folder / f"{split}-labels-idx1-ubyte.gz", labels)
    return folder


@pytest.mark.parametrize("name", ["softmax", "mlp"])
def test_image_examples_read_mnist_format_files(name, tmp_path, capsys, monkeypatch):
    folder = _write_synthetic_mnist(tmp_path / "data")
    # Stand-ins for the real MNIST files, whose pinned digests they cannot match: structure checks only.
    monkeypatch.setattr(importlib.import_module("knetpy.datasets.mnist"), "MNIST_SHA256", {})
    result = IMAGE_EXAMPLES[name].main(["--quick", "--dataset", "mnist", "--path", str(folder),
                                        "--out", str(tmp_path / "out"), "--no-plot"])
    out = capsys.readouterr().out
    assert "MNIST: 600 training and 200 test images" in out
    assert result["tst_acc"][-1] > 0.8  # the bands are easy to tell apart
    _check_image_run(name, result, out)


@needs_fashion
@pytest.mark.parametrize("name", list(IMAGE_EXAMPLES))
def test_image_examples_on_fashion_mnist_quick(name, tmp_path, capsys):
    result = IMAGE_EXAMPLES[name].main(["--quick", "--out", str(tmp_path), "--no-plot"])
    out = capsys.readouterr().out
    assert "Fashion-MNIST: 2000 training and 500 test images" in out
    _check_image_run(name, result, out)


def test_lenet_fits_small_and_mnist_sized_images():
    small = lenet.build_model(8)
    assert small(np.zeros((2, 1, 8, 8), np.float32)).shape == (2, 10)
    full = lenet.build_model(28)
    assert full(np.zeros((2, 1, 28, 28), np.float32)).shape == (2, 10)
    assert full.params["5.w"].shape == (800, 500)  # 50 channels of 4x4 after two valid convs and pools


# -- charlm -------------------------------------------------------------------------------------------------
SENTENCE = "the quick brown fox jumps over the lazy dog.\n"


@pytest.fixture
def trained_charlm(tmp_path_factory):
    """A charlm trained (--quick) on a repetitive text, and its output folder."""
    folder = tmp_path_factory.mktemp("charlm")
    text = folder / "fox.txt"
    text.write_text(SENTENCE * 500, encoding="utf-8")
    result = charlm.main(["--quick", "--path", str(text), "--out", str(folder), "--sample", "0", "--no-plot"])
    return result, folder


def test_charlm_loss_falls_and_model_is_saved(trained_charlm):
    result, folder = trained_charlm
    losses = result["losses"]
    vocab_size = len(set(SENTENCE))
    assert losses[0] == pytest.approx(math.log(vocab_size), abs=0.3)  # an untrained model guesses uniformly
    assert np.mean(losses[-5:]) < losses[0] - 1.5
    assert result["dev_loss"][-1] < 1.0
    assert (folder / "model.ckpt").is_file()


def test_charlm_generates_n_characters_from_the_saved_model(trained_charlm, capsys):
    _, folder = trained_charlm
    result = charlm.main(["--generate", "60", "--out", str(folder), "--start", "the quick ", "--temperature", "0.2"])
    text = result["text"]
    assert len(text) == 60 and set(text) <= set(SENTENCE)
    # At a low temperature the model continues the sentence it learned.
    truth = (SENTENCE * 3)[len("the quick "):][:60]
    assert np.mean([a == b for a, b in zip(text, truth)]) > 0.8, text
    assert capsys.readouterr().out.startswith("the quick " + text[:10])


def test_charlm_generate_without_a_model_says_so(tmp_path, capsys):
    status = run_script(charlm.main, ["--generate", "10", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert status == 2 and "no saved model" in err and "knetpy train charlm" in err


def test_charlm_start_text_with_unknown_characters_is_refused(trained_charlm):
    _, folder = trained_charlm
    with pytest.raises(ExampleError, match="never saw: 'Z'"):
        charlm.main(["--generate", "5", "--out", str(folder), "--start", "Zebra"])


def test_charlm_short_text_without_newlines(tmp_path, capsys):
    text = tmp_path / "abc.txt"
    text.write_text("abcdefghijklmnopqrstuvwxyz" * 4, encoding="utf-8")
    assert run_script(charlm.main, ["--path", str(text), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is too short: 104 characters" in err and "smaller --batch-size" in err
    # Small enough settings work, and sampling starts from a character the text has (no newline in it).
    result = charlm.main(["--path", str(text), "--out", str(tmp_path), "--batch-size", "4", "--seq-len", "5",
                          "--hidden", "8", "--embed", "4", "--sample", "7", "--no-plot"])
    assert len(result["sample"]) == 7 and set(result["sample"]) <= set("abcdefghijklmnopqrstuvwxyz")


def test_charlm_default_text_is_tinyshakespeare(tmp_path, capsys):
    result = charlm.main(["--quick", "--out", str(tmp_path), "--sample", "20", "--no-plot"])
    assert "tinyshakespeare: 19000 training and 1000 held-out characters" in capsys.readouterr().out
    assert np.mean(result["losses"][-5:]) < result["losses"][0] - 0.5
    assert len(result["sample"]) == 20


# -- spirals -----------------------------------------------------------------------------------------------
def test_spirals_linear_stays_near_half_and_mlp_exceeds_90_percent(tmp_path, capsys):
    result = spirals.main(["--quick", "--out", str(tmp_path)])
    lin, net = result["linear"], result["mlp"]
    assert 0.35 < lin["trn_acc"] < 0.65 and 0.3 < lin["tst_acc"] < 0.7
    assert net["trn_acc"] > 0.9 and net["tst_acc"] > 0.9
    assert net["loss"][-1] < 0.5 * lin["loss"][-1]
    out = capsys.readouterr().out
    assert "(:model, linear, :trn, " in out and "(:model, mlp, :trn, " in out
    saved = kp.load(result["checkpoint"])
    assert [a.shape for a in saved["mlp"]] == [(2, 100), (100,), (100, 3), (3,)]
    if plot.available():
        for key in ("plot", "boundaries"):
            assert result[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert result["plot"] is None and result["boundaries"] is None


# -- command-line options ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(EXAMPLES))
def test_every_example_script_has_help(name):
    out = subprocess.run([sys.executable, str(ROOT / "examples" / f"{name}.py"), "--help"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"usage: python examples/{name}.py")
    assert "--quick" in out.stdout and "--out" in out.stdout


@pytest.mark.parametrize("argv, message", [
    (["--dataset", "fashon"], "did you mean 'fashion'?"),
    (["--epochs", "0"], "must be greater than 0"),
    (["--optimizer", "adm"], "did you mean 'adam'?"),
    (["--lr", "fast"], "expected a float"),
])
def test_bad_options_are_named(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        mlp.main(argv)
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


def test_charlm_refuses_a_zero_temperature(capsys):
    with pytest.raises(SystemExit):
        charlm.main(["--generate", "5", "--temperature", "0"])
    assert "--temperature" in capsys.readouterr().err


def test_digits_with_a_path_is_refused(tmp_path):
    with pytest.raises(ExampleError, match="--path does not apply"):
        softmax.main(["--dataset", "digits", "--path", str(tmp_path), "--out", str(tmp_path)])


@needs_sklearn
def test_lenet_with_threads_learns_and_leaves_the_setting_as_it_was(tmp_path, capsys):
    pytest.importorskip("threadpoolctl")
    from knetpy.examples import lenet

    before = kp.get_num_threads()
    result = lenet.main(["--quick", "--dataset", "digits", "--epochs", str(DIGITS_EPOCHS), "--threads", "2",
                         "--out", str(tmp_path), "--no-plot"])
    _check_image_run("lenet", result, capsys.readouterr().out)
    assert kp.get_num_threads() == before


def test_threads_option_refuses_bad_values(capsys):
    from knetpy.examples import lenet

    with pytest.raises(SystemExit):
        lenet.main(["--threads", "0"])
    assert "--threads" in capsys.readouterr().err
