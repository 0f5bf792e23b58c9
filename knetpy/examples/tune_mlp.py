"""Search the learning rate and hidden size of an MLP (SGD) with hyperband, random search, a grid or goldensection.

--budget is the total number of training epochs all trials may use together; every method spends at
most that many. Unless --epochs is given, a trial trains at most R epochs, the largest power of 3 whose
hyperband schedule (reduction 3) fits in the budget: R=9 for a budget of 100 (78 epochs), R=27 for 500.
Each trial starts from the same seed and is scored by its validation loss after its epochs; a run whose
loss turns NaN or infinite or grows past 3 times its starting value stops early and scores inf.
The best configuration is then trained again for R epochs and its test accuracy printed.

    knetpy tune mlp --budget 100                  # hyperband on scikit-learn's digits
    knetpy tune mlp --budget 100 --method random  # the same epochs spent on random configurations
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

import knetpy as kp
from knetpy import tune

from ._common import ExampleError, choice, load_images, positive

NAME = "mlp"
METHODS = ("hyperband", "random", "grid", "golden")
DATASETS = {"digits": "scikit-learn's digits (8x8 images, 10 classes; needs the extra 'data')",
            "spirals": "the 3-class 2-D spirals (600 points, generated)"}
LR_RANGE = (1e-3, 10.0)
HIDDEN = [16, 32, 64, 128]
GRID_HIDDEN = 64
SPACE = f"lr log-uniform in [{LR_RANGE[0]:g}, {LR_RANGE[1]:g}], hidden one of {HIDDEN}"


def build_parser(prog=None):
    summary, _, details = __doc__.strip().partition("\n")
    parser = argparse.ArgumentParser(prog=prog or f"knetpy tune {NAME}", description=summary,
                                     epilog=details.strip(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=positive(int), default=100,
                        help="training epochs all trials may use together (default: %(default)s)")
    parser.add_argument("--method", type=choice(METHODS, "method"), default="hyperband",
                        help=f"one of {', '.join(METHODS)} (default: %(default)s)")
    parser.add_argument("--epochs", type=positive(int), default=None,
                        help="the most epochs one trial trains (hyperband's R; default: the largest that fits)")
    parser.add_argument("--dataset", type=choice(DATASETS, "dataset"), default="digits",
                        help="; ".join(f"{k}: {v}" for k, v in DATASETS.items()) + " (default: %(default)s)")
    parser.add_argument("--batch-size", type=positive(int), default=32, help="(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    return parser


def schedule_epochs(maxresource, reduction=3):
    """The epochs hyperband spends with ``maxresource`` (each trial's resource rounded as fit_loss does)."""
    return sum(n * max(1, round(r)) for bracket in tune.hyperband_schedule(maxresource, reduction) for n, r in bracket)


def largest_fitting(budget, reduction=3):
    """The largest power R of ``reduction`` whose hyperband schedule spends at most ``budget`` epochs
    (whole epochs in every round; None when not even R=1 fits)."""
    best = None
    r = 1
    while schedule_epochs(r, reduction) <= budget:
        best, r = r, r * reduction
    return best


def load(dataset, seed):
    """(x_train, y_train, x_val, y_val, x_test, y_test): the test part is never seen by the search."""
    if dataset == "digits":
        try:
            xtrn, ytrn, xtst, ytst = load_images("digits", flatten=True, seed=seed)
        except ExampleError as e:
            raise ExampleError(f"{e}; or search on generated data: --dataset spirals") from None
    else:
        x, y = kp.datasets.spirals(200, 3, seed=seed)
        split = len(x) * 4 // 5
        xtrn, ytrn, xtst, ytst = x[:split], y[:split], x[split:], y[split:]
    val = len(xtrn) // 5
    return xtrn[val:], ytrn[val:], xtrn[:val], ytrn[:val], xtst, ytst


def _epochs(n):
    return f"{n} epoch" + ("" if n == 1 else "s")


def build_model(config, n_classes):
    model = kp.Sequential(kp.layers.Dense(int(config["hidden"]), activation="relu"), kp.layers.Dense(n_classes))
    return model.compile(loss="cross_entropy", optimizer=kp.optim.SGD(lr=config["lr"]), metrics=["accuracy"])


def search(method, budget, epochs, getloss, seed):
    """Run ``method`` within ``budget`` epochs; its SearchResult and a line saying what was searched."""
    if method == "hyperband":
        spent = schedule_epochs(epochs)
        getconfig = tune.sampler({"lr": tune.log_uniform(*LR_RANGE), "hidden": HIDDEN}, seed=seed)
        return tune.hyperband(getconfig, getloss, epochs), f"hyperband, R={epochs} epochs, reduction 3 ({spent} epochs); {SPACE}"
    n = budget // epochs
    if method == "random":
        getconfig = tune.sampler({"lr": tune.log_uniform(*LR_RANGE), "hidden": HIDDEN}, seed=seed)
        return tune.random_search(getconfig, getloss, n, epochs), f"random search, {n} trials of {epochs} epochs; {SPACE}"
    if method == "grid":
        lrs = [float(v) for v in np.geomspace(*LR_RANGE, n)] if n > 1 else [0.1]
        result = tune.grid_search({"lr": lrs, "hidden": [GRID_HIDDEN]}, getloss, epochs)
        return result, (f"grid search, {len(lrs)} learning rates evenly in log scale in [{LR_RANGE[0]:g}, "
                        f"{LR_RANGE[1]:g}], hidden {GRID_HIDDEN}, {epochs} epochs each")

    def config(x):  # goldensection starts at x = 0: lr 0.1 and 64 hidden units, then moves by factors
        return {"lr": 0.1 * math.exp(x[0]), "hidden": math.ceil(64 * math.exp(x[1]))}

    trials = []

    def f(x):
        c = config(x)
        if not 1 <= c["hidden"] <= 1024:
            return math.nan  # out of range: goldensection steps back
        start = time.perf_counter()
        loss = getloss(c, epochs)
        trials.append(tune.Trial(c, epochs, loss, seconds=time.perf_counter() - start))
        return loss

    fmin, xmin = tune.goldensection(f, 2, max_evals=n)
    best = config(xmin)
    best = next(t.config for t in trials if t.config == best)
    what = (f"goldensection over lr = 0.1 exp(x0), hidden = ceil(64 exp(x1)), at most {n} trials of "
            f"{epochs} epochs")
    return tune.SearchResult(fmin, best, epochs, trials), what


def main(argv=None, prog=None):
    """Search, print the table of trials and the best configuration; returns the SearchResult and test accuracy."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    fits = largest_fitting(args.budget)
    if fits is None:
        parser.error(f"--budget {args.budget} is too small: hyperband needs at least {schedule_epochs(1)} epoch")
    epochs = args.epochs or fits
    if args.method == "hyperband" and schedule_epochs(epochs) > args.budget:
        parser.error(f"hyperband with --epochs {epochs} needs {schedule_epochs(epochs)} epochs, more than "
                     f"--budget {args.budget}; raise the budget or lower --epochs (at most {fits} fits)")
    if args.method != "hyperband" and epochs > args.budget:
        parser.error(f"--epochs {epochs} is more than --budget {args.budget}")
    xtrn, ytrn, xval, yval, xtst, ytst = load(args.dataset, args.seed)
    n_classes = int(max(ytrn.max(), yval.max(), ytst.max())) + 1
    print(f"MLP on {args.dataset}: {len(xtrn)} training, {len(xval)} validation, {len(xtst)} test examples; "
          f"SGD, batch size {args.batch_size}")

    def getloss(config, resource):
        return tune.fit_loss(lambda c: build_model(c, n_classes), config, resource, (xtrn, ytrn, xval, yval),
                             seed=args.seed, batch_size=args.batch_size)

    result, what = search(args.method, args.budget, epochs, getloss, args.seed)
    spent = sum(max(1, round(t.resource)) for t in result.trials)
    print(f"{what}; {len(result.trials)} trials, {spent} of a budget of {args.budget} epochs")
    print(result.table(loss_name="val_loss", resource_name="epochs"))
    diverged = sum(not math.isfinite(t.loss) for t in result.trials)
    if diverged:
        print(f"{diverged} trial(s) diverged (loss NaN, infinite or more than 3x its start): scored inf")
    if not math.isfinite(result.loss):
        print("no trial converged: every configuration diverged")
        return {"result": result, "test_accuracy": None}
    shown = f"lr={result.config['lr']:.4g}, hidden={result.config['hidden']}"
    print(f"best: {shown} (val_loss {result.loss:.4f} after {_epochs(result.resource)})")
    kp.set_seed(args.seed)
    model = build_model(result.config, n_classes)
    model.fit(xtrn, ytrn, epochs=epochs, batch_size=args.batch_size, verbose=0)
    accuracy = model.evaluate(xtst, ytst)["accuracy"]
    print(f"best configuration trained for {_epochs(epochs)}: test accuracy {accuracy:.4f}")
    return {"result": result, "test_accuracy": accuracy}


if __name__ == "__main__":
    from ._common import run_script

    raise SystemExit(run_script(main))
