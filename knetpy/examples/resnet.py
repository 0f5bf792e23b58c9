"""ResNet-20-style network (kp.models.resnet20) on CIFAR-10-format images (32x32 colour, 10 classes).

A 3x3 stem, three stages of three basic residual blocks (16, 32, 64 channels), global average
pooling and a dense layer, trained with fit. --dataset cifar10 reads CIFAR-10 from --path, or the
usual lookup of kp.datasets (``$KNETPY_DATA``, the cache), without downloading; when it is not
there, a small synthetic CIFAR-format set (class-coloured blurred patterns with noise, the same
shapes and value range) is used instead, and the output says so. --dataset synthetic asks for that
set directly. --width scales the channels. After every epoch it prints the training and test
accuracy and the seconds the epoch took. Those accuracies are measured in eval mode, with BatchNorm's
running averages, which lag behind the weights for the first hundred or so steps: after the few
steps of --quick the training loss has fallen but the accuracies may still be near chance.
"""

from __future__ import annotations

import time

import numpy as np

import knetpy as kp
from knetpy.callbacks import Callback

from ._common import (
    add_device_option,
    add_sized_option,
    add_threads_option,
    add_training_options,
    choice,
    fit_and_report,
    knetpy_threads,
    make_parser,
    parse,
    run_script,
)

NAME = "resnet"
DATASETS = ("cifar10", "synthetic")
QUICK_TRAIN, QUICK_TEST = 256, 128  # --quick keeps this many images
SYNTHETIC_TRAIN, SYNTHETIC_TEST = 5000, 1000


def build_parser(prog=None):
    parser = make_parser(NAME, __doc__, prog)
    parser.add_argument("--dataset", type=choice(DATASETS, "dataset"), default="cifar10",
                        help="cifar10 (read from --path or kp.datasets' lookup; the synthetic set when missing) "
                             "or synthetic (default: %(default)s)")
    parser.add_argument("--path", default=None, help="the cifar-10-batches-py folder or cifar-10-python.tar.gz")
    add_sized_option(parser, "--width", 1.0, 0.5, kind=float,
                     help="channel multiplier: 1 is ResNet-20's 16/32/64")
    add_training_options(parser, epochs=(10, 2), batch_size=(128, 32), lr=2e-3, optimizer="adam")
    add_threads_option(parser)
    add_device_option(parser)
    return parser


def synthetic_cifar(n, seed=0, n_classes=10):
    """``(x, y)``: ``n`` CIFAR-format images (n, 3, 32, 32) in [0, 1] and labels 0..9.

    Each class is a fixed random low-frequency colour pattern (an 8x8 grid upsampled to 32x32);
    every image is its class's pattern, randomly shifted by up to 4 pixels, plus noise, so a
    convolutional network learns it in an epoch or two while a linear model on the pixels does not
    get it all.
    """
    rng = np.random.default_rng(seed)
    patterns = np.random.default_rng(1234).random((n_classes, 3, 8, 8)).astype(np.float32)
    patterns = patterns.repeat(4, axis=2).repeat(4, axis=3)
    y = rng.integers(0, n_classes, n)
    shifts = rng.integers(-4, 5, (n, 2))
    x = np.empty((n, 3, 32, 32), np.float32)
    for i in range(n):
        x[i] = np.roll(patterns[y[i]], tuple(shifts[i]), axis=(1, 2))
    x = 0.5 * x + 0.5 * rng.random(x.shape, dtype=np.float32)
    return x.astype(kp.get_dtype()), y.astype(np.int64)


def load_data(args):
    """``(xtrn, ytrn, xtst, ytst, description)``, from CIFAR-10 when found, from the synthetic set otherwise."""
    if args.dataset == "cifar10":
        try:
            xtrn, ytrn = kp.datasets.cifar10("train", path=args.path, download=False)
            xtst, ytst = kp.datasets.cifar10("test", path=args.path, download=False)
        except kp.datasets.DatasetNotFoundError as e:
            print(f"CIFAR-10 not found ({str(e).splitlines()[0]}); training on a SYNTHETIC CIFAR-format set "
                  "instead (give --path to use the real images)")
        else:
            if args.quick:
                xtrn, ytrn, xtst, ytst = xtrn[:QUICK_TRAIN], ytrn[:QUICK_TRAIN], xtst[:QUICK_TEST], ytst[:QUICK_TEST]
            return xtrn, ytrn, xtst, ytst, "CIFAR-10"
    ntrn, ntst = (QUICK_TRAIN, QUICK_TEST) if args.quick else (SYNTHETIC_TRAIN, SYNTHETIC_TEST)
    xtrn, ytrn = synthetic_cifar(ntrn, seed=args.seed)
    xtst, ytst = synthetic_cifar(ntst, seed=args.seed + 1)
    return xtrn, ytrn, xtst, ytst, "synthetic CIFAR-format set"


class EpochTimer(Callback):
    """Seconds each epoch of fit took (training only, not the accuracy reports after it)."""

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)
        print(f"epoch {epoch + 1}: {self.seconds[-1]:.1f} s", flush=True)


def main(argv=None, prog=None):
    """Train and report; returns per-epoch accuracies (index 0: before training), seconds per epoch and files."""
    args = parse(build_parser(prog), argv)
    kp.set_seed(args.seed)
    xtrn, ytrn, xtst, ytst, what = load_data(args)
    print(f"{what}: {len(xtrn)} training and {len(xtst)} test images of shape {tuple(xtrn.shape[1:])}")
    model = kp.models.resnet20(num_classes=10, input_shape=xtrn.shape[1:], width=args.width)
    timer = EpochTimer()
    with knetpy_threads(args.threads):
        result = fit_and_report(model, args, (xtrn, ytrn, xtst, ytst), title=f"ResNet-20 on the {what}",
                                callbacks=[timer])
    result.update(dataset=what, epoch_seconds=timer.seconds)
    print(f"{what}: test accuracy {result['tst_acc'][-1]:.4f} after {args.epochs} epochs, "
          f"{np.mean(timer.seconds):.1f} s per epoch")
    return result


if __name__ == "__main__":
    raise SystemExit(run_script(main))
