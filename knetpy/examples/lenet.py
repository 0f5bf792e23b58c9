"""LeNet, a convolutional network, on MNIST-format images.

conv 5x5 20 relu -> maxpool 2 -> conv 5x5 50 relu -> maxpool 2 -> dense 500 relu -> dense 10, the
model of Knet's CNN tutorial and benchmark, built from ``Conv2D``, ``MaxPool2D``, ``Flatten`` and
``Dense`` layers and trained with ``fit`` and Adam, as in that tutorial. Images are (N, 1, H, W). On
28x28 images the convolutions are 'valid' (28 -> 24 -> 12 -> 8 -> 4) as in the original; images
smaller than 16 pixels (the 8x8 digits) are zero-padded ('same') so that two 5x5 convolutions fit.
After every epoch it prints the accuracy on the training images (at most 10,000) and on the test
images: (:epoch, 1, :trn, 0.86, :tst, 0.85). About 0.9 on Fashion-MNIST and 0.99 on MNIST after 3
epochs.
"""

from __future__ import annotations

import knetpy as kp
from knetpy.layers import Conv2D, Dense, Flatten, MaxPool2D

from ._common import (
    add_device_option,
    add_image_options,
    add_threads_option,
    add_training_options,
    describe_images,
    fit_and_report,
    knetpy_threads,
    load_images,
    make_parser,
    parse,
    run_script,
)

NAME = "lenet"
SMALL_IMAGE = 16  # below this many pixels a side, two valid 5x5 convolutions and two poolings do not fit


def build_parser(prog=None):
    parser = make_parser(NAME, __doc__, prog)
    add_image_options(parser)
    add_training_options(parser, epochs=(3, 1), batch_size=(100, 100), lr=1e-3, optimizer="adam")
    add_threads_option(parser)
    add_device_option(parser)
    return parser


def build_model(image_size, n_classes=10):
    """LeNet for square images of ``image_size`` pixels a side."""
    padding = "valid" if image_size >= SMALL_IMAGE else "same"
    return kp.Sequential(
        Conv2D(20, 5, padding=padding, activation="relu"),
        MaxPool2D(2),
        Conv2D(50, 5, padding=padding, activation="relu"),
        MaxPool2D(2),
        Flatten(),
        Dense(500, activation="relu"),
        Dense(n_classes),
    )


def main(argv=None, prog=None):
    """Train and report; returns per-epoch accuracies (index 0: before training) and the saved files."""
    args = parse(build_parser(prog), argv)
    kp.set_seed(args.seed)
    xtrn, ytrn, xtst, ytst = load_images(args.dataset, args.path, quick=args.quick, seed=args.seed)
    print(describe_images(args.dataset, xtrn, xtst))
    model = build_model(xtrn.shape[-1])
    with knetpy_threads(args.threads):
        return fit_and_report(model, args, (xtrn, ytrn, xtst, ytst), title=f"LeNet on {args.dataset}")


if __name__ == "__main__":
    raise SystemExit(run_script(main))
