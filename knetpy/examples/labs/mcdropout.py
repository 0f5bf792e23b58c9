"""MC dropout: a network's uncertainty grows away from its training data.

A small MLP with dropout learns y = sin(x) + noise from points in [-3, 3]. At test time dropout stays
on (kp.mc_dropout_predict, only in the calling thread and only for the dropout layers) and T
stochastic passes give a predictive mean and standard deviation on a grid over [-8, 8]. The lab
reports the mean std inside the training range and outside it (|x| > 5): outside it is about twice
as large or more. With the plot extra it draws the mean with a band of two standard deviations
(mc_dropout.png).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import knetpy as kp

from .._common import add_sized_option, make_parser, parse, positive, run_script

NAME = "mcdropout"
PLOT = "mc_dropout.png"


def build_parser(prog=None):
    parser = make_parser(f"lab-{NAME}", __doc__, prog or f"knetpy lab {NAME}")
    add_sized_option(parser, "--epochs", 300, 100, help="passes over the training points")
    add_sized_option(parser, "--samples", 100, 50, help="stochastic passes T")
    parser.add_argument("--points", type=positive(int), default=200, help="training points (default: %(default)s)")
    parser.add_argument("--dropout", type=float, default=0.1, help="dropout probability (default: %(default)s)")
    parser.add_argument("--lr", type=positive(float), default=3e-3, help="Adam learning rate (default: %(default)s)")
    return parser


def make_model(dropout, hidden=64):
    return kp.Sequential([kp.layers.Dense(hidden, activation="relu"), kp.layers.Dropout(dropout),
                          kp.layers.Dense(hidden, activation="relu"), kp.layers.Dropout(dropout),
                          kp.layers.Dense(1)])


def main(argv=None, prog=None):
    """Train, sample T passes, compare the std inside and outside the training range; the measurements."""
    args = parse(build_parser(prog), argv)
    if not 0 < args.dropout < 1:
        raise SystemExit(f"--dropout must be in (0, 1), got {args.dropout}")
    kp.set_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    x = rng.uniform(-3, 3, (args.points, 1)).astype(np.float32)
    y = (np.sin(x) + 0.1 * rng.standard_normal(x.shape)).astype(np.float32)
    model = make_model(args.dropout)
    model.compile(loss="mse", optimizer=kp.optim.Adam(lr=args.lr))
    hist = model.fit(x, y, epochs=args.epochs, batch_size=32, verbose=0)
    grid = np.linspace(-8, 8, 321, dtype=np.float32)[:, None]
    mean, std = kp.mc_dropout_predict(model, grid, T=args.samples)
    inside = np.abs(grid[:, 0]) <= 3
    outside = np.abs(grid[:, 0]) > 5
    std_in, std_out = float(std[inside].mean()), float(std[outside].mean())
    rmse_in = float(np.sqrt(np.mean((mean[inside, 0] - np.sin(grid[inside, 0])) ** 2)))
    print(f"training loss {hist.history['loss'][-1]:.4f}; RMSE of the MC mean against sin(x) in [-3, 3]: "
          f"{rmse_in:.3f}")
    print(f"mean predictive std: inside the training range {std_in:.3f}, outside (|x| > 5) {std_out:.3f} "
          f"({std_out / std_in:.1f}x)")
    result = {"std_inside": std_in, "std_outside": std_out, "rmse_inside": rmse_in,
              "final_loss": float(hist.history["loss"][-1]), "plot": None}
    if not args.no_plot:
        result["plot"] = kp.plot.predictive_band(
            grid, mean, std, Path(args.out) / PLOT, x_train=x, y_train=y, truth=np.sin,
            title=f"MC dropout (T={args.samples}): mean ± 2 std")
        if result["plot"] is not None:
            print(f"saved {result['plot']}")
    return result


if __name__ == "__main__":
    raise SystemExit(run_script(main))
