"""What the generative-model labs (autoencoder, vae, gan, dcgan) share: their image data and training loop."""

from __future__ import annotations

from pathlib import Path

import knetpy as kp

from .._common import add_sized_option
from .._common import load_images as load_digit_images

#: --dataset choices: auto takes Fashion-MNIST when its files are on this machine, else the digits.
DATASETS = ("auto", "fashion", "digits")


def add_data_options(parser, train, test=None):
    """``--dataset`` and the subset sizes ``--train`` (and ``--test`` unless None): pairs (default, with --quick)."""
    parser.add_argument("--dataset", choices=DATASETS, default="auto",
                        help="fashion: Fashion-MNIST (28x28, needs its files); digits: scikit-learn's 8x8 digits; "
                             "auto: Fashion-MNIST when found, else digits (default: %(default)s)")
    add_sized_option(parser, "--train", *train, help="training images used")
    if test is not None:
        add_sized_option(parser, "--test", *test, help="test images used")


def load_images(dataset, n_train, n_test, seed=0):
    """``(name, xtrn, ytrn, xtst, ytst)``: (N, 1, H, W) images in [0, 1] and their labels, cut to the sizes.

    ``auto`` falls back to the digits (saying so) when Fashion-MNIST's files are not on this machine;
    nothing is downloaded.
    """
    if dataset in ("auto", "fashion"):
        try:
            xtrn, ytrn = kp.datasets.fashion_mnist("train", download=False)
            xtst, ytst = kp.datasets.fashion_mnist("test", download=False)
            return "Fashion-MNIST", xtrn[:n_train], ytrn[:n_train], xtst[:n_test], ytst[:n_test]
        except kp.datasets.DatasetNotFoundError as e:
            if dataset == "fashion":
                raise
            print(f"Fashion-MNIST not found ({str(e).splitlines()[0][:120]}...); using scikit-learn's digits")
    xtrn, ytrn, xtst, ytst = load_digit_images("digits", seed=seed)  # the examples' fixed fifth held out
    return "digits", xtrn[:n_train], ytrn[:n_train], xtst[:n_test], ytst[:n_test]


def class_names(name):
    return kp.datasets.FASHION_MNIST_CLASSES if name == "Fashion-MNIST" else None


def batches(n, batch_size):
    """Index arrays of one shuffled pass over ``n`` examples (knetpy's generator: ``kp.set_seed``)."""
    order = kp.backend.rng().permutation(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def step(loss, optimizer):
    """One PyTorch-style update: backward, step, clear the gradients; the loss as a float."""
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return float(loss.value)


def evaluate(fn, x, batch_size=500):
    """``fn(batch)`` (a float per batch) averaged over ``x`` by examples, without recording."""
    total = 0.0
    with kp.no_grad():
        for i in range(0, len(x), batch_size):
            xb = x[i:i + batch_size]
            total += float(fn(xb)) * len(xb)
    return total / len(x)


def saved(path):
    """Announce a picture (None when it was not drawn) and return it."""
    if path is not None:
        print(f"saved {path}")
    return path


def out_path(args, name):
    Path(args.out).mkdir(parents=True, exist_ok=True)
    return Path(args.out) / name
