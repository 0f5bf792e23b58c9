"""Linear regression on the Boston housing data: predict a suburb's median house value from 13 features.

The first model of the Knet tutorial, written the Knet way: the parameters are a plain list
[w, b], the loss a Python function, and ``kp.grad(loss)`` its gradient. Full-batch gradient descent
from a small random start: the mean squared error falls from hundreds to about 30 within 10 steps.
A fifth of the suburbs (a fixed random choice) is held out; features are standardized with the
training rows' mean and standard deviation.

The data is the copy of housing.data shipped with knetpy (kp.datasets.housing); --path FILE_OR_FOLDER
reads another copy instead.
"""

from __future__ import annotations

import numpy as np

import knetpy as kp

from ._common import (
    add_device_option,
    host_float,
    knet_line,
    make_parser,
    on_device,
    parse,
    positive,
    run_script,
    save_checkpoint,
    save_curve,
)

NAME = "housing"


def build_parser(prog=None):
    parser = make_parser(NAME, __doc__, prog)
    parser.add_argument("--steps", type=positive(int), default=None,
                        help="full-batch gradient steps (default: 100; 20 with --quick)")
    parser.add_argument("--lr", type=positive(float), default=0.1, help="learning rate (default: %(default)s)")
    parser.add_argument("--path", default=None,
                        help="housing.data, or a folder holding it (default: the copy shipped with knetpy)")
    add_device_option(parser)
    return parser


def predict(w, x):
    return x @ w[0] + w[1]


def loss(w, x, y):
    """Mean squared error of the predictions."""
    return kp.mean(kp.square(predict(w, x) - y))


def split_and_standardize(x, y, seed):
    """A fixed random fifth held out; features scaled by the training rows' statistics."""
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = len(x) // 5
    test, train = order[:n_test], order[n_test:]
    mean, std = x[train].mean(axis=0), x[train].std(axis=0)
    scale = lambda a: (a - mean) / std  # noqa: E731
    return scale(x[train]), y[train], scale(x[test]), y[test], mean, std


def main(argv=None, prog=None):
    """Train and report; returns the losses per step (index 0: before training) and the saved files."""
    args = parse(build_parser(prog), argv)
    steps = args.steps or (20 if args.quick else 100)
    kp.set_seed(args.seed)
    x, y = kp.datasets.housing(args.path)
    xtrn, ytrn, xtst, ytst, mean, std = split_and_standardize(x, y, args.seed)
    print(f"housing: {len(xtrn)} training and {len(xtst)} test suburbs, {x.shape[1]} features")

    dtype = xtrn.dtype
    w = [(0.1 * kp.backend.rng().standard_normal((x.shape[1], 1))).astype(dtype), np.zeros(1, dtype)]
    # full batch: the weights and all the data go to the device once
    w, xtrn, ytrn, xtst, ytst = on_device((w, xtrn, ytrn, xtst, ytst), args.device)
    lr = dtype.type(args.lr)  # a float32 scalar keeps the float32 weights float32
    dloss = kp.value_and_grad(loss)
    trn_mse, tst_mse = [host_float(loss(w, xtrn, ytrn))], [host_float(loss(w, xtst, ytst))]
    print(knet_line("step", 0, "trn", trn_mse[0], "tst", tst_mse[0]))
    report_every = max(1, steps // 10)
    for step in range(1, steps + 1):
        _, grads = dloss(w, xtrn, ytrn)
        for wi, gi in zip(w, grads):
            wi -= gi * lr
        trn_mse.append(host_float(loss(w, xtrn, ytrn)))  # (logged every step: the program's point)
        tst_mse.append(host_float(loss(w, xtst, ytst)))
        if step <= 10 or step % report_every == 0 or step == steps:
            print(knet_line("step", step, "trn", trn_mse[-1], "tst", tst_mse[-1]))
    print(f"train MSE {trn_mse[-1]:.2f}, test MSE {tst_mse[-1]:.2f} (RMSE {np.sqrt(tst_mse[-1]):.2f}, "
          f"in $1000s) after {steps} steps")

    checkpoint = save_checkpoint({"w": w[0], "b": w[1], "mean": mean, "std": std,
                                  "features": list(kp.datasets.HOUSING_FEATURES)}, args.out)
    curve = save_curve({"train_mse": trn_mse[1:], "test_mse": tst_mse[1:]}, args.out,
                       title="Linear regression on housing", enabled=not args.no_plot, xlabel="step")
    return {"trn_mse": trn_mse, "tst_mse": tst_mse, "checkpoint": checkpoint, "plot": curve}


if __name__ == "__main__":
    raise SystemExit(run_script(main))
