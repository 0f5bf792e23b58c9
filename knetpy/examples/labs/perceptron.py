"""The perceptron: its learning rule converges on linearly separable data and never does on XOR.

Rosenblatt's rule (kp.classical.Perceptron) visits the points one at a time and, on a mistake,
adds the point (times its +-1 target) to the weights. On two classes a line separates
(kp.datasets.linearly_separable) it stops after an epoch without a mistake: 100% training
accuracy, as the convergence theorem promises. On XOR (kp.datasets.xor) no line separates the
classes, so every epoch makes mistakes and at most 3 of the 4 points are ever right. A hidden layer
fixes that: a small tanh MLP trained with kp.grad gets all four. Pictures: the boundaries
(separable.png, xor.png) and the mistakes per epoch (learning_curve.png).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import knetpy as kp
from knetpy.classical import Perceptron

from .._common import add_sized_option, knet_line, make_parser, parse, positive, run_script, save_curve
from ._classical import announce

NAME = "perceptron"


def build_parser(prog=None):
    parser = make_parser(f"lab-{NAME}", __doc__, prog or f"knetpy lab {NAME}")
    add_sized_option(parser, "--points", 400, 200, help="points of the separable problem")
    parser.add_argument("--margin", type=float, default=0.05,
                        help="no separable point is closer than this to the true line (default: %(default)s)")
    parser.add_argument("--max-epochs", type=positive(int), default=100,
                        help="epochs before the perceptron gives up (default: %(default)s)")
    return parser


def xor_mlp(x, y, hidden=8, steps=2000, lr=0.5, seed=0):
    """A 2-``hidden``-2 tanh MLP on XOR by full-batch gradient descent; its predicted labels."""
    g = np.random.default_rng(seed)
    w = [g.standard_normal((2, hidden)), np.zeros(hidden), g.standard_normal((hidden, 2)) / np.sqrt(hidden), np.zeros(2)]

    def predict(w, x):
        return kp.tanh(x @ w[0] + w[1]) @ w[2] + w[3]

    step = kp.grad(lambda w, x, y: kp.losses.cross_entropy(predict(w, x), y))
    xf = x.astype(np.float64)
    for _ in range(steps):
        for wi, gi in zip(w, step(w, xf, y)):
            wi -= lr * gi
    return lambda pts: predict(w, np.asarray(pts, np.float64))


def main(argv=None, prog=None):
    """Train the perceptron on both problems; returns whether it converged and its accuracies."""
    parser = build_parser(prog)
    args = parse(parser, argv)
    if not 0 <= args.margin < 0.5:
        parser.error(f"--margin must be in [0, 0.5), got {args.margin}")
    xs, ys = kp.datasets.linearly_separable(args.points, margin=args.margin, seed=args.seed)
    xx, yx = kp.datasets.xor()
    result, curves = {}, {}
    for name, (x, y) in {"separable": (xs, ys), "xor": (xx, yx)}.items():
        p = Perceptron(max_epochs=args.max_epochs, seed=args.seed).fit(x, y)
        acc = p.score(x, y)
        print(knet_line("data", name, "points", len(x), "epochs", len(p.errors_), "converged", p.converged_,
                        "trn", acc), flush=True)
        result[name] = {"converged": p.converged_, "epochs": len(p.errors_), "errors": p.errors_, "trn_acc": acc,
                        "model": p}
        curves[f"{name}: mistakes per epoch"] = p.errors_
    print(f"separable: no mistake in epoch {result['separable']['epochs']}: the rule has converged"
          if result["separable"]["converged"] else "separable: did NOT converge (raise --max-epochs)")
    print(f"xor: mistakes in every one of {result['xor']['epochs']} epochs (fewest {min(result['xor']['errors'])}); "
          f"final accuracy {result['xor']['trn_acc']:.2f}: no line separates XOR")
    mlp = xor_mlp(xx, yx, seed=args.seed)
    result["xor_mlp_acc"] = float(np.mean(np.argmax(mlp(xx), 1) == yx))
    print(knet_line("data", "xor", "model", "mlp(8 tanh)", "trn", result["xor_mlp_acc"]))

    result["pictures"] = []
    if not args.no_plot:
        out = Path(args.out)

        def scores(model):
            return lambda pts: np.stack([-model.decision_function(pts), model.decision_function(pts)], 1)

        for name, (x, y) in {"separable": (xs, ys), "xor": (xx, yx)}.items():
            panels = {f"perceptron (accuracy {result[name]['trn_acc']:.2f})": scores(result[name]["model"])}
            if name == "xor":
                panels[f"MLP, 8 tanh units (accuracy {result['xor_mlp_acc']:.2f})"] = mlp
            result["pictures"].append(announce(kp.plot.decision_boundary(
                panels, x, y, out / f"{name}.png", title=f"The perceptron on {name} data")))
        result["pictures"].append(save_curve(curves, out, title="Perceptron: mistakes per epoch", xlabel="epoch"))
    return result


if __name__ == "__main__":
    raise SystemExit(run_script(main))
