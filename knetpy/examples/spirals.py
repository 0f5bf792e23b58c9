"""A linear model against an MLP on the 3-class spirals: why hidden layers matter.

Three interleaved spiral arms of 2-D points (kp.datasets.spirals). A linear softmax classifier can
only cut the plane into three wedges and stays near 50% accuracy; a two-layer MLP (100 relu units)
bends its boundaries around the arms and exceeds 90%. Both are written the Knet way (weights in a
list, ``kp.grad`` of the loss) and trained by full-batch gradient descent on 80% of the points; the
accuracies are measured on the other 20%. With the plot extra it also draws the decision boundaries
of both models (decision_boundaries.png) beside the learning curves.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import knetpy as kp
from knetpy.progress import progress

from ._common import (
    add_device_option,
    add_sized_option,
    host_float,
    host_floats,
    knet_line,
    make_parser,
    on_device,
    parse,
    positive,
    run_script,
    save_checkpoint,
    save_curve,
)

NAME = "spirals"
BOUNDARIES = "decision_boundaries.png"


def build_parser(prog=None):
    parser = make_parser(NAME, __doc__, prog)
    add_sized_option(parser, "--steps", 1000, 300, help="full-batch gradient steps for each model")
    parser.add_argument("--lr", type=positive(float), default=1.0, help="learning rate (default: %(default)s)")
    parser.add_argument("--hidden", type=positive(int), default=100, help="MLP hidden units (default: %(default)s)")
    parser.add_argument("--points", type=positive(int), default=300, help="points per class (default: %(default)s)")
    parser.add_argument("--noise", type=float, default=0.2, help="angle noise of the arms (default: %(default)s)")
    add_device_option(parser)
    return parser


def linear(w, x):
    return x @ w[0] + w[1]


def mlp(w, x):
    return kp.relu(x @ w[0] + w[1]) @ w[2] + w[3]


def init_linear(n_in, n_classes, dtype):
    return [(0.01 * kp.backend.rng().standard_normal((n_in, n_classes))).astype(dtype), np.zeros(n_classes, dtype)]


def init_mlp(n_in, hidden, n_classes, dtype):
    """He initialisation for the relu layer, small weights for the output layer."""
    g = kp.backend.rng()
    return [(g.standard_normal((n_in, hidden)) * np.sqrt(2.0 / n_in)).astype(dtype), np.zeros(hidden, dtype),
            (g.standard_normal((hidden, n_classes)) * np.sqrt(1.0 / hidden)).astype(dtype), np.zeros(n_classes, dtype)]


def train(predict, w, x, y, steps, lr, prefix=""):
    """Full-batch gradient descent on ``nll(predict(w, x), y)``; the loss before each step."""
    def loss(w, x, y):
        return kp.nll(predict(w, x), y)

    dloss = kp.value_and_grad(loss)
    lr = w[0].dtype.type(lr)
    losses = []
    for _ in progress(range(steps), prefix=prefix):
        value, grads = dloss(w, x, y)
        for wi, gi in zip(w, grads):
            wi -= gi * lr
        losses.append(value)  # read all at once at the end, not every step (a wait for a device)
    return host_floats(losses).tolist()


def split(x, y, rng, test_fraction=0.2):
    order = rng.permutation(len(x))
    n_test = int(len(x) * test_fraction)
    test, trn = order[:n_test], order[n_test:]
    return x[trn], y[trn], x[test], y[test]


def main(argv=None, prog=None):
    """Train both models and report; returns their accuracies, losses and the saved files."""
    parser = build_parser(prog)
    args = parse(parser, argv)
    if not args.noise >= 0:
        parser.error(f"--noise must be 0 or more, got {args.noise}")
    kp.set_seed(args.seed)
    x, y = kp.datasets.spirals(args.points, 3, noise=args.noise)
    xtrn, ytrn, xtst, ytst = split(x, y, kp.backend.rng())
    print(f"spirals: {len(xtrn)} training and {len(xtst)} test points, 3 classes")
    xtrn, ytrn, xtst, ytst = on_device((xtrn, ytrn, xtst, ytst), args.device)  # full batch: moved once

    models = {"linear": (linear, init_linear(2, 3, x.dtype)), "mlp": (mlp, init_mlp(2, args.hidden, 3, x.dtype))}
    models = {name: (predict, on_device(w, args.device)) for name, (predict, w) in models.items()}
    result, history = {}, {}
    for name, (predict, w) in models.items():
        losses = train(predict, w, xtrn, ytrn, args.steps, args.lr, prefix=f"{name} ({args.steps} steps)")
        trn, tst = host_float(kp.accuracy(predict(w, xtrn), ytrn)), host_float(kp.accuracy(predict(w, xtst), ytst))
        print(knet_line("model", name, "trn", trn, "tst", tst), flush=True)
        result[name] = {"trn_acc": trn, "tst_acc": tst, "loss": losses}
        history[f"{name}_loss"] = losses

    lin, mlp_ = result["linear"]["tst_acc"], result["mlp"]["tst_acc"]
    print(f"test accuracy: linear {lin:.3f}, MLP {mlp_:.3f}: the hidden layer adds {mlp_ - lin:+.3f}")
    # (on the host: the checkpoint and the plot read them there)
    weights = {name: [kp.backend.to_host(wi) for wi in w] for name, (_, w) in models.items()}
    result["checkpoint"] = save_checkpoint(weights, args.out)
    result["plot"] = save_curve(history, args.out, title="Spirals: training loss", enabled=not args.no_plot,
                                xlabel="step")
    result["boundaries"] = None
    if not args.no_plot:
        from knetpy.plot import decision_boundary

        classifiers = {f"{name} (test acc {result[name]['tst_acc']:.2f})": (lambda pts, p=models[name][0], w=w: p(w, pts))
                       for name, w in weights.items()}
        result["boundaries"] = decision_boundary(classifiers, x, y, Path(args.out) / BOUNDARIES,
                                                 title="Spirals: decision boundaries")
        if result["boundaries"] is not None:
            print(f"saved {result['boundaries']}")
    return result


if __name__ == "__main__":
    raise SystemExit(run_script(main))
