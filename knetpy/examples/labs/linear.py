"""Linear classifiers: the multiclass SVM and softmax losses trained by SGD; the weights as class templates.

Scores are x @ W + b. The SVM loss (kp.losses.hinge: the sum over wrong classes of
max(0, s_j - s_y + 1)) and the softmax loss (kp.losses.cross_entropy), each plus reg * |W|^2, are
minimised by minibatch SGD with kp.value_and_grad (kp.classical.LinearClassifier). The images are
mean-subtracted first (kp.data.MeanSubtraction, fitted on the training set). Before training the
losses are about C - 1 (SVM: every margin is about 1) and log C (softmax: uniform scores): the
first sanity check of the course. The learning rate and regularisation are chosen on a validation
fifth of the training set; on the digits both losses reach about 0.95 test accuracy. Each column of
W is one template per class, drawn as an image ({loss}_templates.png), with the losses per step
(learning_curve.png).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import knetpy as kp
from knetpy.classical import LinearClassifier

from .._common import add_sized_option, knet_line, make_parser, parse, run_script, save_checkpoint, save_curve
from ._classical import add_dataset_options, announce, load, validation_split

NAME = "linear"
LOSSES = ("svm", "softmax")
#: (learning rate, regularisation) pairs tried on the validation set, per loss.
#: Wide apart: the right rate depends on the images' size and scale (large for the digits' 64 pixels).
GRID = {"svm": [(1.0, 1e-4), (0.1, 1e-3), (0.01, 1e-3)],
        "softmax": [(3.0, 1e-4), (0.3, 1e-3), (0.03, 1e-3)]}


def build_parser(prog=None):
    parser = make_parser(f"lab-{NAME}", __doc__, prog or f"knetpy lab {NAME}")
    add_dataset_options(parser)
    add_sized_option(parser, "--epochs", 40, 20, help="SGD passes over the training data")
    parser.add_argument("--losses", nargs="+", choices=LOSSES, default=list(LOSSES),
                        help="the losses trained (default: svm softmax)")
    return parser


def main(argv=None, prog=None):
    """Train each loss, choosing lr and reg on a validation split; returns the accuracies."""
    parser = build_parser(prog)
    args = parse(parser, argv)
    what, xtrn, ytrn, xtst, ytst, names = load(args)
    print(f"{what}: {len(xtrn)} training and {len(xtst)} test images of shape {tuple(xtrn.shape[1:])}")
    image_shape = xtrn.shape[1:]
    centre = kp.data.MeanSubtraction().fit(xtrn)  # the mean image, from the training set only
    xtrn, xtst = centre.transform(xtrn), centre.transform(xtst)
    xfit, yfit, xval, yval = validation_split(xtrn, ytrn, seed=args.seed)
    n_classes = int(max(ytrn.max(), ytst.max())) + 1

    result, history, weights = {"dataset": what}, {}, {}
    for loss in args.losses:
        best = None
        for lr, reg in GRID[loss]:
            clf = LinearClassifier(loss, lr=lr, reg=reg, epochs=args.epochs, seed=args.seed).fit(xfit, yfit, n_classes)
            val = clf.score(xval, yval)
            print(knet_line("loss", loss, "lr", lr, "reg", reg, "val", val), flush=True)
            if best is None or val > best[0]:
                best = (val, lr, reg)
        val, lr, reg = best
        clf = LinearClassifier(loss, lr=lr, reg=reg, epochs=args.epochs, seed=args.seed).fit(xtrn, ytrn, n_classes)
        trn, tst = clf.score(xtrn, ytrn), clf.score(xtst, ytst)
        initial = clf.loss_history_[0]
        expected = n_classes - 1 if loss == "svm" else float(np.log(n_classes))
        print(f"{loss}: first-step loss {initial:.3f} (expected about {expected:.3f} with small weights)")
        print(knet_line("loss", loss, "lr", lr, "reg", reg, "trn", trn, "val", val, "tst", tst), flush=True)
        result[loss] = {"trn_acc": trn, "val_acc": val, "tst_acc": tst, "lr": lr, "reg": reg,
                        "initial_loss": initial, "expected_initial_loss": expected, "loss": clf.loss_history_}
        history[f"{loss} loss"] = clf.loss_history_
        weights[loss] = {"W": clf.W, "b": clf.b}
        result[loss]["templates"] = None
        if not args.no_plot:
            result[loss]["templates"] = announce(kp.plot.filter_grid(
                clf.W, Path(args.out) / f"{loss}_templates.png", image_shape=image_shape, class_names=names,
                title=f"{loss} weights as class templates (test accuracy {tst:.3f})"))
    weights["mean_image"] = centre.mean_
    result["checkpoint"] = save_checkpoint(weights, args.out)
    result["plot"] = save_curve(history, args.out, title="Linear classifiers: loss per SGD step",
                                enabled=not args.no_plot, xlabel="step")
    return result


if __name__ == "__main__":
    raise SystemExit(run_script(main))
