"""Multi-layer perceptron on MNIST-format images: 784 pixels -> 64 relu -> 10 class scores.

Knet's MLP tutorial model, written the Keras way: ``kp.Sequential`` of ``Flatten`` and ``Dense``
layers, ``compile`` with a loss, an optimizer and the accuracy metric, then ``fit`` (with a progress
bar) and ``evaluate``. After every epoch it prints the accuracy on the training images (at most
10,000) and on the test images: (:epoch, 1, :trn, 0.85, :tst, 0.84). About 0.86 on Fashion-MNIST and
0.97 on MNIST after 10 epochs.

    knetpy train mlp --hidden 256 128     # two hidden layers
"""

from __future__ import annotations

import knetpy as kp
from knetpy.layers import Dense, Dropout, Flatten

from ._common import (
    add_device_option,
    add_distributed_option,
    add_image_options,
    add_training_options,
    describe_images,
    fit_and_report,
    load_images,
    main_rank_output,
    make_parser,
    parse,
    positive,
    run_script,
)

NAME = "mlp"


def build_parser(prog=None):
    parser = make_parser(NAME, __doc__, prog)
    add_image_options(parser)
    add_training_options(parser, epochs=(10, 2), batch_size=(100, 100), lr=0.1, optimizer="sgd")
    parser.add_argument("--hidden", type=positive(int), nargs="+", default=[64],
                        help="sizes of the hidden layers (default: 64)")
    parser.add_argument("--dropout", type=float, default=0.0, help="dropout before each hidden layer (default: 0)")
    add_distributed_option(parser)
    add_device_option(parser)
    return parser


def build_model(hidden, n_classes=10, dropout=0.0):
    """Flatten, then a relu Dense layer per entry of ``hidden``, then the class scores."""
    model = kp.Sequential(Flatten())
    for units in hidden:
        if dropout:
            model.add(Dropout(dropout))
        model.add(Dense(units, activation="relu"))
    model.add(Dense(n_classes))
    return model


def main(argv=None, prog=None):
    """Train and report; returns per-epoch accuracies (index 0: before training) and the saved files."""
    parser = build_parser(prog)
    args = parse(parser, argv)
    if not 0 <= args.dropout < 1:
        parser.error(f"--dropout must be in [0, 1), got {args.dropout}")
    with main_rank_output(args.distributed):
        kp.set_seed(args.seed)
        xtrn, ytrn, xtst, ytst = load_images(args.dataset, args.path, quick=args.quick, seed=args.seed)
        print(describe_images(args.dataset, xtrn, xtst))
        model = build_model(args.hidden, dropout=args.dropout)
        return fit_and_report(model, args, (xtrn, ytrn, xtst, ytst), title=f"MLP on {args.dataset}")


if __name__ == "__main__":
    raise SystemExit(run_script(main))
