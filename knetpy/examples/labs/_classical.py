"""What the classical labs (knn, linear, features) share: digits or CIFAR-format images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import knetpy as kp

from .._common import ExampleError, choice

#: --dataset choices of the image labs.
DATASETS = {
    "digits": "scikit-learn's 8x8 digits (offline; a fixed fifth held out for testing)",
    "cifar": "CIFAR-10 from --path or kp.datasets' lookup, else a synthetic CIFAR-format set (said so)",
}
#: Training / test images taken from CIFAR (real or synthetic): full run, --quick.
CIFAR_SIZES = {False: (5000, 1000), True: (1000, 200)}


def add_dataset_options(parser, default="digits"):
    listed = "; ".join(f"{k}: {v}" for k, v in DATASETS.items())
    parser.add_argument("--dataset", type=choice(DATASETS, "dataset"), default=default,
                        help=f"{listed} (default: %(default)s)")
    parser.add_argument("--path", type=Path, default=None,
                        help="with --dataset cifar: the cifar-10-batches-py folder or cifar-10-python.tar.gz")


def load(args):
    """``(description, xtrn, ytrn, xtst, ytst, class_names)``, images (N, C, H, W) in [0, 1]."""
    if args.dataset == "digits":
        if args.path is not None:
            raise ExampleError("--path applies to --dataset cifar only (scikit-learn ships the digits)")
        from .._common import load_images

        xtrn, ytrn, xtst, ytst = load_images("digits", seed=args.seed)
        return "scikit-learn's digits", xtrn, ytrn, xtst, ytst, [str(i) for i in range(10)]
    ntrn, ntst = CIFAR_SIZES[bool(args.quick)]
    try:
        xtrn, ytrn = kp.datasets.cifar10("train", path=args.path, download=False)
        xtst, ytst = kp.datasets.cifar10("test", path=args.path, download=False)
    except kp.datasets.DatasetNotFoundError as e:
        from ..resnet import synthetic_cifar

        print(f"CIFAR-10 not found ({str(e).splitlines()[0][:100]}); using a SYNTHETIC CIFAR-format set "
              "instead (give --path to use the real images)")
        xtrn, ytrn = synthetic_cifar(ntrn, seed=args.seed)
        xtst, ytst = synthetic_cifar(ntst, seed=args.seed + 1)
        return "a synthetic CIFAR-format set", xtrn, ytrn, xtst, ytst, [str(i) for i in range(10)]
    return ("CIFAR-10", xtrn[:ntrn], ytrn[:ntrn], xtst[:ntst], ytst[:ntst], list(kp.datasets.CIFAR10_CLASSES))


def validation_split(x, y, fraction=0.2, seed=0):
    """``(xtrn, ytrn, xval, yval)``: a random ``fraction`` of the training data held out for choosing
    hyper-parameters."""
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = max(1, int(len(x) * fraction))
    val, trn = order[:n_val], order[n_val:]
    return x[trn], y[trn], x[val], y[val]


def announce(path):
    if path is not None:
        print(f"saved {path}")
    return path
