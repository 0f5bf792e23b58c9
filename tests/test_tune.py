"""kp.tune: goldensection, hyperband, random and grid search, fit_loss/Reporter, and ``knetpy tune mlp``."""

import itertools
import math

import numpy as np
import pytest

import knetpy as kp
from knetpy import cli, tune

PHI = (1 + 5 ** 0.5) / 2


# -- goldensection ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("lr_opt, hidden_opt", [(0.03, 200), (0.5, 20), (1e-4, 100)])
def test_goldensection_finds_a_quadratic_minimum_in_log_space(lr_opt, hidden_opt):
    # lr = 0.01 exp(x0), hidden = 100 exp(x1): a quadratic in log(lr), log(hidden), minimum 0 at the optimum.
    target = np.array([math.log(lr_opt / 0.01), math.log(hidden_opt / 100)])
    calls = []

    def f(x):
        calls.append(x.copy())
        lr, hidden = 0.01 * math.exp(x[0]), 100 * math.exp(x[1])
        return (math.log(lr) - math.log(lr_opt)) ** 2 + (math.log(hidden) - math.log(hidden_opt)) ** 2

    fmin, xmin = tune.goldensection(f, 2)
    assert np.max(np.abs(xmin - target)) < 0.1  # dxmin: the last step size
    assert fmin == pytest.approx(f(xmin)) and fmin < 0.01
    assert len(calls) - 1 <= 60  # the budget it needs from 0 to a point up to 9 units away


def test_goldensection_minimises_a_noisy_function():
    rng = np.random.default_rng(0)
    target = np.array([1.5, -2.0, 0.5])

    def f(x):
        return float(np.sum((x - target) ** 2) + 0.01 * rng.standard_normal())

    history = []
    fmin, xmin = tune.goldensection(f, 3, history=history, max_evals=80)
    assert len(history) <= 80
    assert np.max(np.abs(xmin - target)) < 0.25
    assert fmin == min(v for _, v in history)  # it returns the best point it evaluated


def test_goldensection_follows_knets_steps_in_one_dimension():
    # (x-1)^2 from 0: +1 improves (step grows by phi), +phi overshoots (reverse, shrink by phi), the
    # reversed step lands on 0 again (cached, not re-evaluated), then steps of 1/phi, 1/phi^2, ... close in.
    history = []
    tune.goldensection(lambda x: float((x[0] - 1) ** 2), 1, history=history)
    xs = [float(x[0]) for x, _ in history]
    np.testing.assert_allclose(xs[:4], [0.0, 1.0, 1 + PHI, 1 + 1 / PHI], rtol=1e-12)
    assert len({round(x, 9) for x in xs}) == len(xs)  # every point evaluated once


def test_goldensection_steps_back_from_nan_and_stops_at_max_evals():
    def f(x):  # undefined beyond 0.5: the best defined point is at the edge
        return math.nan if x[0] > 0.5 else (x[0] - 2.0) ** 2

    fmin, xmin = tune.goldensection(f, 1)
    assert math.isfinite(fmin) and 0.3 < xmin[0] <= 0.5
    calls = []
    fmin, xmin = tune.goldensection(lambda x: calls.append(1) or -float(x[0]), 1, max_evals=7)
    assert len(calls) == 7 and fmin == -xmin[0] and xmin[0] > 5  # unbounded below: the budget stops it


def test_goldensection_refuses_bad_arguments():
    with pytest.raises(ValueError, match="goldensection: n must be an integer >= 1"):
        tune.goldensection(lambda x: 0.0, 0)
    with pytest.raises(ValueError, match="accel must be a finite number > 1"):
        tune.goldensection(lambda x: 0.0, 1, accel=1.0)
    with pytest.raises(ValueError, match="dxmin"):
        tune.goldensection(lambda x: 0.0, 1, dxmin=-1)


# -- hyperband -------------------------------------------------------------------------------------------
PAPER_TABLE_R81_ETA3 = [  # Li et al. 2017, Table 1
    [(81, 1), (27, 3), (9, 9), (3, 27), (1, 81)],
    [(34, 3), (11, 9), (3, 27), (1, 81)],
    [(15, 9), (5, 27), (1, 81)],
    [(8, 27), (2, 81)],
    [(5, 81)],
]


def test_hyperband_schedule_is_the_papers_table():
    assert tune.hyperband_schedule(81, 3) == PAPER_TABLE_R81_ETA3


@pytest.mark.parametrize("big_r, eta", [(81, 3), (27, 3), (243, 3), (16, 2), (100, 4), (10, 3), (1, 3)])
def test_hyperband_schedule_follows_the_definition(big_r, eta):
    smax = max(s for s in range(20) if eta ** s <= big_r)
    budget = (smax + 1) * big_r
    expected = []
    for s in range(smax, -1, -1):
        n = math.ceil(budget / big_r * eta ** s / (s + 1) - 1e-9)
        r = big_r * eta ** -s
        expected.append([(math.floor(n * eta ** -i + 1e-9), r * eta ** i) for i in range(s + 1)])
    got = tune.hyperband_schedule(big_r, eta)
    assert [[n for n, _ in b] for b in got] == [[n for n, _ in b] for b in expected]
    for b_got, b_exp in zip(got, expected):
        np.testing.assert_allclose([r for _, r in b_got], [r for _, r in b_exp], rtol=1e-12)


def test_hyperband_runs_the_schedule_and_keeps_the_best_third():
    counter = itertools.count()
    scramble = {}

    def getconfig():
        c = next(counter)
        scramble[c] = (c * 7919) % 1009  # a loss unrelated to the drawing order
        return c

    def getloss(config, r):
        return scramble[config] + 1.0 / r

    result = tune.hyperband(getconfig, getloss, maxresource=81, reduction=3)
    assert next(counter) == sum(b[0][0] for b in PAPER_TABLE_R81_ETA3)  # 81 + 34 + 15 + 8 + 5 drawn
    smax = len(PAPER_TABLE_R81_ETA3) - 1
    for b, rounds in enumerate(PAPER_TABLE_R81_ETA3):
        s = smax - b
        previous = None
        for i, (n_i, r_i) in enumerate(rounds):
            ran = [t for t in result.trials if t.bracket == s and t.round == i]
            assert len(ran) == n_i and {t.resource for t in ran} == {r_i}
            if previous is not None:  # the survivors: the best n_i of the previous round
                best = sorted(previous, key=lambda t: t.loss)[:n_i]
                assert sorted(t.config for t in ran) == sorted(t.config for t in best)
            previous = ran
    assert result.loss == min(t.loss for t in result.trials)
    assert result.config == min(result.trials, key=lambda t: t.loss).config
    assert "bracket" in result.table() and result.table().count("*") == 1


def test_diverged_configurations_score_inf_and_lose():
    configs = iter(range(1000))
    result = tune.hyperband(lambda: next(configs), lambda c, r: math.nan if c % 2 else float(c), 9, 3)
    assert all(t.loss == math.inf for t in result.trials if t.config % 2)
    assert math.isfinite(result.loss) and result.config % 2 == 0
    all_bad = tune.random_search(lambda: 1, lambda c, r: math.inf, 3, 1)
    assert all_bad.loss == math.inf and len(all_bad.trials) == 3
    with pytest.raises(TypeError, match="must return a number, got str"):
        tune.random_search(lambda: 1, lambda c, r: "bad", 1, 1)


def test_random_and_grid_search_share_the_interface():
    seen = []

    def getloss(config, resource):
        seen.append((dict(config), resource))
        return (math.log10(config["lr"]) + 1) ** 2 + config["hidden"] / 1000

    grid = tune.grid_search({"lr": [1e-3, 1e-1, 10.0], "hidden": [64, 32]}, getloss, 5)
    assert [c for c, _ in seen] == [{"lr": lr, "hidden": h} for lr in (1e-3, 1e-1, 10.0) for h in (64, 32)]
    assert {r for _, r in seen} == {5}
    assert grid.config == {"lr": 0.1, "hidden": 32} and grid.resource == 5
    getconfig = tune.sampler({"lr": tune.log_uniform(1e-4, 1.0), "hidden": [32, 64], "act": "relu"}, seed=3)
    first = tune.random_search(getconfig, getloss, 20, 2)
    again = tune.random_search(tune.sampler({"lr": tune.log_uniform(1e-4, 1.0), "hidden": [32, 64],
                                             "act": "relu"}, seed=3), getloss, 20, 2)
    assert [t.config for t in first.trials] == [t.config for t in again.trials]  # seeded
    lrs = [t.config["lr"] for t in first.trials]
    assert min(lrs) >= 1e-4 and max(lrs) <= 1.0 and {t.config["hidden"] for t in first.trials} == {32, 64}
    assert abs(math.log10(first.config["lr"]) + 1) < 0.5
    with pytest.raises(ValueError, match=r"grid\['lr'\] must be a non-empty list"):
        tune.grid_search({"lr": []}, getloss, 1)


# -- with Model.fit --------------------------------------------------------------------------------------
class _Count(kp.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = 0

    def on_epoch_end(self, epoch, logs=None):
        self.epochs += 1


def _spirals():
    x, y = kp.datasets.spirals(100, 3, seed=0)
    return x[:240], y[:240], x[240:], y[240:]


def _mlp(config):
    model = kp.Sequential(kp.layers.Dense(config.get("hidden", 32), activation="relu"), kp.layers.Dense(3))
    return model.compile(loss="cross_entropy", optimizer=kp.optim.SGD(lr=config["lr"]))


def test_reporter_stops_on_nan_and_on_an_exploding_loss():
    class Fake:
        stop_training = False

    rep = tune.Reporter("val_loss", explode=3.0, baseline=1.0)
    rep.set_model(Fake())
    rep.on_train_begin()
    reported = []
    rep.report = lambda epoch, value: reported.append((epoch, value))
    rep.on_epoch_end(0, {"val_loss": 0.8})
    rep.on_epoch_end(1, {"val_loss": 2.9})
    assert not rep.diverged and rep.score == 2.9 and not rep.model.stop_training
    rep.on_epoch_end(2, {"val_loss": 3.5})
    assert rep.diverged and rep.model.stop_training and rep.score == math.inf
    assert reported == [(0, 0.8), (1, 2.9), (2, 3.5)] and rep.losses == [0.8, 2.9, 3.5]
    nan = tune.Reporter("loss")
    nan.set_model(Fake())
    nan.on_epoch_end(0, {"loss": math.nan})
    assert nan.diverged and nan.score == math.inf
    with pytest.raises(KeyError, match="'val_los' is not in the epoch logs"):
        tune.Reporter("val_los").on_epoch_end(0, {"val_loss": 1.0})


def test_fit_loss_scores_and_stops_diverging_runs_early():
    data = _spirals()
    good = _Count()
    loss = tune.fit_loss(_mlp, {"lr": 0.3}, 5, data, callbacks=[good])
    assert good.epochs == 5 and 0 < loss < math.log(3)  # below the untrained loss
    assert tune.fit_loss(_mlp, {"lr": 0.3}, 5, data) == loss  # seeded: the same run
    bad = _Count()
    assert tune.fit_loss(_mlp, {"lr": 1e4}, 20, data, callbacks=[bad]) == math.inf
    assert bad.epochs < 20  # stopped early, not trained to the end
    assert tune.fit_loss(_mlp, {"lr": 0.3}, 2.6, data, callbacks=[good]) < math.log(3)
    assert good.epochs == 8  # a float resource is rounded: 3 more epochs
    with pytest.raises(TypeError, match="model_fn must return a compiled kp.Model"):
        tune.fit_loss(lambda c: kp.Sequential(kp.layers.Dense(3)), {}, 1, data)
    with pytest.raises(ValueError, match=r"data must be \(x, y\) or \(x, y, x_val, y_val\)"):
        tune.fit_loss(_mlp, {"lr": 0.1}, 1, data[:3])


def test_searches_pick_a_good_learning_rate_for_an_mlp():
    """On the digits an SGD MLP learns well for lr about 0.1-2; far below it barely moves, far above it diverges."""
    pytest.importorskip("sklearn", reason="the digits come from scikit-learn (extra 'data')")
    x, y = kp.datasets.digits(flatten=True)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    data = (x[:1000], y[:1000], x[1000:1400], y[1000:1400])

    def build(config):
        model = kp.Sequential(kp.layers.Dense(32, activation="relu"), kp.layers.Dense(10))
        return model.compile(loss="cross_entropy", optimizer=kp.optim.SGD(lr=config["lr"]))

    def getloss(config, epochs):
        return tune.fit_loss(build, config, epochs, data, batch_size=64)

    space = {"lr": tune.log_uniform(1e-4, 100.0)}
    hb = tune.hyperband(tune.sampler(space, seed=0), getloss, maxresource=9)
    assert 0.05 <= hb.config["lr"] <= 3 and hb.loss < 0.3
    assert any(t.loss == math.inf for t in hb.trials)  # the large rates diverged and were scored so
    grid = tune.grid_search({"lr": [1e-4, 1e-2, 0.3, 10.0, 100.0]}, getloss, 3)
    assert grid.config["lr"] == 0.3
    fmin, xmin = tune.goldensection(lambda v: getloss({"lr": 0.01 * math.exp(v[0])}, 3), 1, max_evals=12)
    assert 0.05 <= 0.01 * math.exp(xmin[0]) <= 3 and fmin < 0.8  # from lr 0.01, whose loss is about 2.3


# -- knetpy tune mlp -------------------------------------------------------------------------------------
def test_cli_tune_mlp_prints_the_trials_and_the_best(capsys):
    assert cli.main(["tune", "mlp", "--budget", "20", "--dataset", "spirals"]) == 0
    out = capsys.readouterr().out
    assert "hyperband, R=3 epochs" in out and "12 of a budget of 20 epochs" in out
    header = next(line for line in out.splitlines() if line.lstrip().startswith("trial"))
    assert header.split() == ["trial", "bracket", "round", "lr", "hidden", "epochs", "val_loss", "s"]
    rows = [line for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert len(rows) == 6 and sum("*" in r for r in rows) == 1  # (3,1)(1,3) then (2,3)
    assert "best: lr=" in out and "test accuracy" in out
    assert cli.main(["tune", "mlp", "--budget", "10", "--method", "random", "--epochs", "2",
                     "--dataset", "spirals"]) == 0
    out = capsys.readouterr().out
    assert "random search, 5 trials of 2 epochs" in out


def test_cli_tune_refuses_bad_requests(capsys):
    assert cli.main(["tune", "mpl"]) == 2
    assert "unknown search 'mpl'; did you mean 'mlp'?" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli.main(["tune", "mlp", "--budget", "10", "--epochs", "9"])
    assert e.value.code == 2
    assert "needs 78 epochs, more than --budget 10" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["tune", "mlp", "--method", "bayes"])
    assert "unknown method 'bayes'" in capsys.readouterr().err


def test_readme_search_block_prints_what_it_says():
    import ast
    import contextlib
    import io
    import pathlib
    import re

    text = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text.split("## Searching hyper-parameters", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md (Searching hyper-parameters)", "exec"), {"__name__": "__main__"})
    lines = out.getvalue().splitlines()
    config = ast.literal_eval(lines[0].split("}")[0] + "}")  # the printed dict of the best configuration
    assert 0.01 <= config["lr"] <= 1 and config["hidden"] in (16, 64)
    assert lines[1].split() == ["trial", "bracket", "round", "lr", "hidden", "epochs", "loss", "s"]
    lr, loss = map(float, lines[2].split())
    assert 0.01 <= lr <= 1 and loss < 0.3
    assert lines[3] == "[(34, 3), (11, 9), (3, 27), (1, 81)]"
