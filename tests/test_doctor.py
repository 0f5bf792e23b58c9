"""The training doctor: each check flags a model built to fail it, and a healthy model passes them all."""

import json

import numpy as np
import pytest

import knetpy as kp
from knetpy import cli, primitive
from knetpy.doctor import CHECKS, Report, lr_range_test
from knetpy.gradcheck import relative_error
from knetpy.layers import BatchNorm, Dense, Dropout, Lambda, Layer


def data(n=256, d=20, c=10, seed=0):
    """Gaussian inputs, labels from a random linear teacher: learnable, no dataset needed."""
    g = np.random.default_rng(seed)
    x = g.standard_normal((n, d)).astype("float32")
    return x, np.argmax(x @ g.standard_normal((d, c)), axis=1)


def mlp(*middle, act="relu", hidden=(64,), optimizer="adam", lr=1e-3):
    kp.set_seed(0)
    layers = [Dense(h, activation=act, input_shape=(20,) if i == 0 else None) for i, h in enumerate(hidden)]
    model = kp.Sequential(layers + list(middle) + [Dense(10)])
    model.compile(loss="cross_entropy", optimizer=kp.optim.get(optimizer, lr=lr))
    return model


def run(model, x=None, y=None, **kw):
    if x is None:
        x, y = data()
    return kp.doctor(model, x, y, print_fn=None, **kw)


# A custom primitive whose VJP for the weight is 3x too large, inside a layer.
@primitive
def _scale(x, w):
    return x * w


_scale.defvjp(lambda g, ans, x, w: g * w, lambda g, ans, x, w: kp.sum(g * x, axis=0) * 3.0)


class BrokenScale(Layer):
    def build(self, shape):
        self.w = kp.Param(np.ones(shape[1:], "float32"))

    def forward(self, x):
        return _scale(x, self.w)


def test_healthy_model_passes_every_check():
    report = run(mlp())
    assert [c.name for c in report.checks] == list(CHECKS)
    assert {c.name: c.verdict for c in report.checks} == {name: "ok" for name in CHECKS}
    assert report.verdict == "ok" and report.ok and not report.problems
    assert report["gradient check"].value < 1e-7


def test_healthy_model_with_dropout_and_batchnorm_passes_the_gradient_check():
    # dropout draws the same masks in every evaluation (the generator is reset), batch norm uses batch statistics
    report = run(mlp(BatchNorm(), Dropout(0.3)), checks=["gradient check"])
    assert report["gradient check"].verdict == "ok", report["gradient check"].message


def test_model_weights_optimizer_and_random_state_are_untouched():
    x, y = data()
    model = mlp(Dropout(0.2))
    model.fit(x, y, epochs=1, verbose=0)  # an optimizer with state
    before = model.state_dict()
    opt = model.optimizer
    opt_before = opt.state_dict()
    rng_before = kp.get_rng_state()
    run(model, x, y)
    after = model.state_dict()
    assert list(after) == list(before)
    for k in before:
        assert after[k].dtype == before[k].dtype and np.array_equal(after[k], before[k]), k
    opt_after = opt.state_dict()
    assert opt_after["meta"] == opt_before["meta"]
    for k, v in opt_before["arrays"].items():
        assert np.array_equal(opt_after["arrays"][k], v), k
    assert opt.lr == 1e-3 and model.optimizer is opt
    assert {id(p) for p in opt.params.values()} == {id(p) for p in model.params.values()}
    assert kp.get_rng_state() == rng_before
    assert model.training and all(layer.training for layer in model)


def test_unbuilt_model_stays_unbuilt():
    model = kp.Sequential(Dense(16, activation="relu"), Dense(10))
    model.compile(loss="cross_entropy", optimizer="sgd")
    run(model, checks=["initial loss"])
    assert not model.built and not model.params


def test_broken_vjp_is_named_by_the_gradient_check():
    report = run(mlp(BrokenScale()))
    check = report["gradient check"]
    assert check.verdict == "problem"
    assert check.value > 1e-2
    assert "1.w (BrokenScale" in check.message and "VJP" in check.message
    errors = {row["parameter"]: row["rel_error"] for row in check.details}
    assert errors["1.w"] > 0.5 and errors["0.w"] < 1e-7  # the weights before it get a correct gradient here


def test_too_large_init_is_named_by_the_initial_loss():
    model = mlp()
    model[1].w.value *= 30
    check = run(model, checks=["initial loss"])["initial loss"]
    assert check.verdict == "problem"
    assert check.details[0]["expected"] == pytest.approx(np.log(10), rel=1e-5)
    assert check.details[0]["loss"] > 3 * np.log(10)
    assert "too large" in check.message and "log C = log 10" in check.message


def test_initial_loss_of_a_healthy_model_is_near_log_c():
    check = run(mlp(), checks=["initial loss"])["initial loss"]
    assert check.verdict == "ok"
    assert abs(check.details[0]["loss"] - np.log(10)) < 0.3


def test_initial_loss_for_regression_targets_far_from_zero():
    g = np.random.default_rng(0)
    x = g.standard_normal((128, 5)).astype("float32")
    y = (50 + x @ g.standard_normal((5, 1))).astype("float32")
    model = kp.Sequential(Dense(16, activation="relu"), Dense(1))
    model.compile(loss="mse", optimizer=kp.optim.SGD(lr=1e-3))
    check = run(model, x, y, checks=["initial loss"])["initial loss"]
    assert check.verdict == "warning"
    assert "mean(y)" in check.message
    assert check.details[0]["expected"] == pytest.approx(float(np.mean(y ** 2)), rel=1e-4)


def test_learning_rate_100x_too_high_is_named():
    healthy = run(mlp(optimizer="sgd", lr=0.1))
    assert healthy["update/weight ratio"].verdict == "ok" and healthy["learning rate"].verdict == "ok"
    report = run(mlp(optimizer="sgd", lr=10.0))
    ratio, lr = report["update/weight ratio"], report["learning rate"]
    assert ratio.verdict == "problem" and "too high" in ratio.message
    assert lr.verdict == "problem" and "too high" in lr.message
    assert report.lr_range["chosen"] == 10.0 and report.lr_range["suggested"] < 1.0


def test_saturated_tanh_net_is_named_by_the_activations():
    model = mlp(act="tanh", hidden=(64, 64, 64))
    for layer in list(model)[:-1]:
        layer.w.value *= 8
    check = run(model, checks=["activations"])["activations"]
    assert check.verdict == "problem"
    assert "saturated" in check.message and "Dense(tanh)" in check.message
    healthy = run(mlp(act="tanh", hidden=(64, 64, 64)), checks=["activations"])["activations"]
    assert healthy.verdict == "ok"


def test_dead_relu_units_and_zero_gradients_are_named():
    model = mlp()
    model[0].b.value[:] = -10  # every hidden unit starts below zero for these inputs
    report = run(model, checks=["activations", "gradient norms"])
    assert report["activations"].verdict == "problem" and "dead" in report["activations"].message
    assert report.layers[0]["dead"] == 1.0
    norms = report["gradient norms"]
    assert norms.verdict == "problem" and "0.w" in norms.message and "zero gradient" in norms.message


def test_model_that_cannot_overfit_one_batch():
    report = run(mlp(Lambda(lambda h: h * 0)), checks=["overfit one batch"])
    check = report["overfit one batch"]
    assert check.verdict == "problem" and "cannot fit 16 samples" in check.message
    assert run(mlp(), checks=["overfit one batch"])["overfit one batch"].verdict == "ok"


def test_lr_range_data_for_plotting():
    report = run(mlp(), checks=["learning rate"])
    r = report.lr_range
    assert set(r) >= {"lr", "loss", "suggested", "min_lr", "raw_loss", "chosen"}
    assert len(r["lr"]) == len(r["loss"]) == len(r["raw_loss"]) > 20
    assert np.all(np.diff(r["lr"]) > 0) and r["lr"][0] == pytest.approx(1e-7)
    assert r["suggested"] == pytest.approx(r["min_lr"] / 10)
    assert min(r["loss"]) < r["loss"][0] - 0.5  # the loss fell somewhere along the sweep


def test_lr_range_test_stops_when_the_loss_explodes():
    x, y = data()
    model = mlp(optimizer="sgd")
    model._ready(model._batches(x, y, 32, False, "t"), "t")
    batch = lambda i: (x[i % 8 * 32:][:32], y[i % 8 * 32:][:32])  # noqa: E731
    out = lr_range_test(model, model._loss, batch, lr_min=1e-3, lr_max=1e4, steps=200)
    assert len(out["lr"]) < 200 and out["suggested"] < 10


def test_report_table_and_plain_data():
    lines = []
    report = kp.doctor(mlp(BrokenScale()), *data(), print_fn=lines.append)
    assert isinstance(report, Report) and len(lines) == 1
    text = lines[0]
    assert text == str(report)
    for name in CHECKS:
        assert name in text
    assert "PROBLEM" in text and "verdict: problem" in text and "gradcheck err" in text and "dead ReLU" in text
    plain = json.loads(json.dumps(report.to_dict()))
    assert plain["verdict"] == "problem"
    assert [c["name"] for c in plain["checks"]] == list(CHECKS)
    assert all(set(c) == {"name", "verdict", "value", "message"} for c in plain["checks"])


def test_subclassed_model_and_sequence_targets():
    class Seq(kp.Model):
        def __init__(self):
            super().__init__()
            self.embed = kp.layers.Embedding(12, 8)
            self.rnn = kp.layers.LSTM(16, return_sequences=True)
            self.out = Dense(12)

        def forward(self, ids):
            h = self.rnn(self.embed(ids))
            n, t, _ = h.shape
            return kp.transpose(self.out(h.reshape(n * t, -1)).reshape(n, t, -1), (0, 2, 1))

    kp.set_seed(0)
    ids = np.random.default_rng(0).integers(0, 12, (32, 6))
    model = Seq()
    model.compile(loss="cross_entropy", optimizer="adam")
    report = kp.doctor(model, ids[:, :-1], ids[:, 1:], print_fn=None, checks=["initial loss", "gradient check"],
                       grad_elements=4)
    assert report["initial loss"].details[0]["expected"] == pytest.approx(np.log(12), rel=1e-5)
    assert report["gradient check"].verdict == "ok", report["gradient check"].message


def test_clear_errors():
    model = kp.Sequential(Dense(3))
    with pytest.raises(ValueError, match="not compiled; pass loss="):
        kp.doctor(model, *data(), print_fn=None)
    with pytest.raises(ValueError, match="no optimizer; pass optimizer="):
        kp.doctor(model, *data(), loss="cross_entropy", print_fn=None)
    with pytest.raises(ValueError, match="unknown check"):
        kp.doctor(mlp(), *data(), checks=["gradcheck"], print_fn=None)
    with pytest.raises(ValueError, match="x has 5 samples|same length|samples"):
        kp.doctor(mlp(), data()[0][:5], data()[1], print_fn=None)
    with pytest.raises(ValueError, match="overfit_steps must be a positive integer, got 0"):
        kp.doctor(mlp(), *data(), overfit_steps=0, print_fn=None)
    with pytest.raises(ValueError, match="0 < lr_min < lr_max"):
        kp.doctor(mlp(), *data(), lr_min=1.0, lr_max=0.1, print_fn=None)
    report = kp.doctor(kp.Sequential(Dense(10)), *data(), loss="cross_entropy", optimizer="sgd",
                       checks=["initial loss"], print_fn=None)
    assert report["initial loss"].verdict == "ok"


def test_a_check_that_cannot_run_is_reported_not_raised():
    def single_precision_only(h):
        if kp.get_dtype() != h.dtype:  # the gradient check runs a float64 copy
            raise TypeError(f"expected {kp.get_dtype()}, got {h.dtype}")
        return h

    report = run(mlp(Lambda(single_precision_only)), checks=["initial loss", "gradient check"])
    assert report["initial loss"].verdict == "ok"
    check = report["gradient check"]
    assert check.verdict == "problem" and "could not run" in check.message and "got float64" in check.message


def test_relative_error_as_cs231n_defines_it():
    assert relative_error(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.0
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert relative_error(np.array([3.0]), np.array([1.0])) == pytest.approx(2 / 3)


def test_cli_doctor(capsys):
    assert cli.main(["doctor", "spirals", "--samples", "150"]) == 0
    out = capsys.readouterr().out
    assert "spirals: 150 spiral points" in out and "Training doctor" in out and "learning rate" in out
    with pytest.raises(SystemExit) as e:
        cli.main(["doctor", "nosuch"])
    assert e.value.code == 2
    assert "unknown model 'nosuch'" in capsys.readouterr().err


def test_cli_doctor_on_images(capsys):
    pytest.importorskip("sklearn", reason="the digits come with scikit-learn (the 'data' extra)")
    cli.main(["doctor", "mlp", "--samples", "256"])
    out = capsys.readouterr().out
    assert "256 scikit-learn's digits images" in out
    assert "gradient check       ok" in out and "initial loss         ok" in out


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lenet", "quickstart", "softmax", "charlm", "housing"])
def test_cli_doctor_every_example_model(capsys, name):
    if name in ("lenet", "quickstart", "softmax"):
        pytest.importorskip("sklearn", reason="the digits come with scikit-learn (the 'data' extra)")
    status = cli.main(["doctor", name])
    out = capsys.readouterr().out
    assert "gradient check       ok" in out and "initial loss" in out and "verdict:" in out
    # housing's targets (prices near 22) start far from the zero output: the doctor says so
    assert status == (1 if name == "housing" else 0), out
    if name == "housing":
        assert "mean(y)" in out
