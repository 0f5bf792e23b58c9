"""What the examples share: command-line options, image data, Knet-style report lines, saved results."""

from __future__ import annotations

import argparse
import contextlib
import difflib
import sys
from pathlib import Path

import numpy as np

from ..callbacks import Callback
from ..datasets import CorruptFileError, DatasetNotFoundError
from ..io import CheckpointError

#: Where results go unless ``--out`` says otherwise: one subfolder per example.
DEFAULT_OUT = Path("knetpy-runs")
CHECKPOINT = "model.ckpt"
CURVE = "learning_curve.png"

#: The MNIST-format datasets the image examples train on, and what each one is.
IMAGE_DATASETS = {
    "fashion": "Fashion-MNIST (28x28 clothing, 60,000 train / 10,000 test)",
    "mnist": "MNIST (28x28 handwritten digits, 60,000 train / 10,000 test)",
    "digits": "scikit-learn's digits (8x8 handwritten digits, 1,438 train / 359 test), offline",
}
QUICK_TRAIN, QUICK_TEST = 2000, 500  # --quick keeps this many images of the large datasets
TRAIN_REPORT_SIZE = 10_000  # 'trn' accuracy is measured on at most this many training images
#: The learning-curve legend of the image classifiers trained with fit.
CURVE_LABELS = {"loss": "train loss (mean over the epoch's batches)", "trn_acc": "train accuracy (after the epoch)",
                "tst_acc": "test accuracy (after the epoch)"}


class ExampleError(Exception):
    """A problem the user can fix (missing data, a missing saved model): reported in one line."""


#: Errors reported as one line with exit status 2 rather than a traceback.
USER_ERRORS = (ExampleError, DatasetNotFoundError, CorruptFileError, CheckpointError)


# -- command line ------------------------------------------------------------------------------------
def choice(options, what):
    """An argparse ``type`` accepting one of ``options`` and suggesting the closest for a typo."""
    options = tuple(options)

    def parse(text):
        if text in options:
            return text
        close = difflib.get_close_matches(text, options, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise argparse.ArgumentTypeError(f"unknown {what} {text!r}{hint} (choose from {', '.join(options)})")

    parse.__name__ = what  # argparse names the type in its messages
    return parse


def positive(kind):
    """An argparse ``type``: a number of ``kind`` (int or float) greater than zero."""

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if not value > 0:  # also refuses NaN
            raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
        return value

    parse.__name__ = f"positive {kind.__name__}"
    return parse


def make_parser(name, doc, prog=None, quick=True):
    """An argument parser for example ``name`` with the options every example has.

    ``doc`` is the example module's docstring: its first line describes the example and the rest is
    shown below the options by ``--help``. ``quick=False`` leaves out ``--quick``.
    """
    summary, _, details = doc.strip().partition("\n")
    parser = argparse.ArgumentParser(prog=prog or f"knetpy train {name}", description=summary,
                                     epilog=details.strip() or None,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    if quick:
        parser.add_argument("--quick", action="store_true",
                            help="a small subset and few steps: checks that everything runs, in seconds")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT / name,
                        help=f"folder for the checkpoint ({CHECKPOINT}) and plots (default: %(default)s)")
    parser.add_argument("--no-plot", action="store_true", help="do not draw PNG plots")
    return parser


def add_sized_option(parser, flag, full, quick, help, kind=int):
    """An option whose default depends on ``--quick``: ``full`` normally, ``quick`` with it (see :func:`parse`)."""
    action = parser.add_argument(flag, type=positive(kind), default=None,
                                 help=f"{help} (default: {full}; {quick} with --quick)")
    table = dict(parser.get_default("sized_defaults") or {})
    table[action.dest] = (full, quick)
    parser.set_defaults(sized_defaults=table)


def add_training_options(parser, *, epochs, batch_size, lr, optimizer=None):
    """``--epochs``, ``--batch-size``, ``--lr`` (and ``--optimizer`` when ``optimizer`` is given).

    ``epochs`` and ``batch_size`` are pairs (default, default with ``--quick``).
    """
    add_sized_option(parser, "--epochs", *epochs, help="passes over the training data")
    add_sized_option(parser, "--batch-size", *batch_size, help="examples per gradient step")
    parser.add_argument("--lr", type=positive(float), default=lr, help="learning rate (default: %(default)s)")
    if optimizer is not None:
        from ..optim import OPTIMIZERS

        names = [n for n in OPTIMIZERS if n != "lbfgs"]
        parser.add_argument("--optimizer", type=choice(names, "optimizer"), default=optimizer,
                            help=f"one of {', '.join(names)} (default: %(default)s)")


def add_distributed_option(parser):
    """``--distributed``: data-parallel training on the ranks started by ``mpiexec -n P``."""
    parser.add_argument("--distributed", action="store_true",
                        help="train data-parallel on every process started by mpiexec -n P (needs mpi4py: "
                             "pip install 'knetpy[distributed]'); --batch-size is per process, rank 0 prints and saves")


@contextlib.contextmanager
def main_rank_output(distributed):
    """Under ``--distributed`` only rank 0 prints: the other ranks' output goes nowhere."""
    if not distributed:
        yield
        return
    from .. import distributed as dist

    dist.init()
    if dist.is_main():
        print(f"data-parallel on {dist.world_size()} ranks (mpiexec), batch size per rank", flush=True)
        yield
        return
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        yield


def add_image_options(parser):
    """``--dataset`` (fashion, mnist or digits) and ``--path`` (the folder of the IDX files)."""
    listed = "; ".join(f"{k}: {v}" for k, v in IMAGE_DATASETS.items())
    parser.add_argument("--dataset", type=choice(IMAGE_DATASETS, "dataset"), default="fashion",
                        help=f"{listed} (default: %(default)s)")
    parser.add_argument("--path", type=Path, default=None,
                        help="folder holding the dataset's IDX files (default: the usual lookup of kp.datasets)")


def add_threads_option(parser):
    """``--threads N|auto``: knetpy's own threads for the large ops (see ``kp.set_num_threads``)."""
    parser.add_argument("--threads", type=threads_value, default="auto",
                        help="threads knetpy splits its large ops over: a number, or auto (chosen by each "
                             "op's size, over the cores, when threadpoolctl is installed) (default: %(default)s)")


def add_device_option(parser):
    """``--device``: where the model and its data live while it trains (see :func:`on_device`)."""
    parser.add_argument("--device", type=device_value, default="cpu",
                        help="where the model trains: cpu, cuda or cuda:N (a GPU, through CuPy: pip install "
                             "'knetpy[gpu]'), or strict (knetpy's CPU test backend, whose arrays refuse to become "
                             "NumPy arrays: checks that the program makes no trips through NumPy) (default: %(default)s)")


def device_value(text):
    """An argparse ``type``: a device name, checked while parsing, so that a missing CuPy stops the program
    before it loads any data."""
    from ..devices import check_device

    if text == "strict":
        from ..testing import strict  # noqa: F401 - importing it registers the device

    try:
        return check_device(text)
    except (ValueError, RuntimeError) as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def on_device(obj, device):
    """``obj`` (an array, tensor or layer, or a list or dict of them) on ``device``; on the CPU as it is.

    Parameters move once, when the program starts; training batches are moved one at a time as they
    are used (``fit``'s own moving, or this function on each batch of a hand-written loop).
    """
    if device == "cpu":
        return obj
    from ..devices import on_device as move

    return move(obj, device)


def on_host(obj):
    """``obj`` with its arrays on the host: copies of those on a device, the others as they are."""
    from ..devices import on_device as move

    return move(obj, "cpu")


def host_float(value):
    """A number (a 0-d array, perhaps on a device) as a Python float: a meant copy to the host."""
    from ..backend import to_host

    return float(to_host(value))


def host_floats(values):
    """0-d arrays (perhaps on a device, left there until now) as one float64 NumPy array, in one copy."""
    from ..backend import array_namespace, to_host

    xp = array_namespace(*values)
    return to_host(xp.stack(values)).astype(np.float64)


def threads_value(text):
    if text == "auto":
        return text
    return positive(int)(text)


@contextlib.contextmanager
def knetpy_threads(setting):
    """Run the block with ``setting`` threads (a number or 'auto'); the previous setting afterwards."""
    from .. import parallel

    before = "auto" if parallel.is_auto() else parallel.get_num_threads()
    parallel.set_num_threads(setting)
    try:
        yield parallel.get_num_threads()
    finally:
        parallel.set_num_threads(before)


def parse(parser, argv):
    """The parsed options, those of :func:`add_sized_option` not given filled in for ``--quick`` or not."""
    args = parser.parse_args(argv)
    for dest, (full, quick) in (getattr(args, "sized_defaults", None) or {}).items():
        if getattr(args, dest) is None:
            setattr(args, dest, quick if args.quick else full)
    return args


def explain(error):
    """The message of a user error, with the command-line way to point at data files added."""
    if isinstance(error, DatasetNotFoundError):
        return f"{error} (on the command line: --path)"
    return str(error)


def run_script(main, argv=None, prog=None):
    """Run an example's ``main`` as a program: its exit status, user errors in one line (status 2)."""
    try:
        main(argv, prog=prog)
    except USER_ERRORS as e:
        print(f"error: {explain(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


# -- data ----------------------------------------------------------------------------------------------
def load_digits(flatten=False):
    """scikit-learn's 8x8 digits, ``(x, y)``; without scikit-learn an ExampleError that says to install it."""
    from .. import datasets

    try:
        return datasets.digits(flatten=flatten)
    except ImportError as e:
        raise ExampleError(str(e)) from None


def load_images(dataset, path=None, *, flatten=False, quick=False, seed=0):
    """``(xtrn, ytrn, xtst, ytst)`` of an MNIST-format dataset, images (N, 1, H, W) or flattened.

    With ``quick`` the 60,000-image datasets are cut to their first QUICK_TRAIN / QUICK_TEST images.
    digits has no split of its own: a fixed random fifth (from ``seed``) is held out for testing.
    """
    from .. import datasets

    if dataset == "digits":
        if path is not None:
            raise ExampleError("--path does not apply to --dataset digits (scikit-learn ships the digits)")
        x, y = load_digits(flatten=flatten)
        order = np.random.default_rng(seed).permutation(len(x))
        split = len(x) - len(x) // 5
        train, test = order[:split], order[split:]
        return x[train], y[train], x[test], y[test]
    loader = {"fashion": datasets.fashion_mnist, "mnist": datasets.mnist}[dataset]
    xtrn, ytrn = loader("train", path=path, flatten=flatten)
    xtst, ytst = loader("test", path=path, flatten=flatten)
    if quick:
        xtrn, ytrn, xtst, ytst = xtrn[:QUICK_TRAIN], ytrn[:QUICK_TRAIN], xtst[:QUICK_TEST], ytst[:QUICK_TEST]
    return xtrn, ytrn, xtst, ytst


def describe_images(dataset, xtrn, xtst):
    """One line naming the dataset, its sizes and the shape of an image."""
    return (f"{IMAGE_DATASETS[dataset].split(' (')[0]}: {len(xtrn)} training and {len(xtst)} test images "
            f"of shape {tuple(xtrn.shape[1:])}")


# -- reports -------------------------------------------------------------------------------------------
def knet_line(*pairs):
    """A report line the way Knet's tutorials print them: ``(:epoch, 1, :trn, 0.9123, :tst, 0.9012)``.

    ``pairs`` alternate names and values; floats get 4 decimals.
    """
    parts = []
    for i, item in enumerate(pairs):
        if i % 2 == 0:
            parts.append(f":{item}")
        elif isinstance(item, float):
            parts.append(f"{item:.4f}")
        else:
            parts.append(str(item))
    return "(" + ", ".join(parts) + ")"


class AccuracyReport(Callback):
    """After every epoch of ``fit``: train and test accuracy, printed as a Knet line and logged.

    ``trn`` is measured on at most TRAIN_REPORT_SIZE training images (in eval mode, after the
    epoch, as Knet does), not averaged over the batches while the weights were changing (that running
    mean is fit's own ``accuracy``, which lags behind; the learning curve shows ``trn`` instead).
    The values go into the epoch logs (and so the History) as ``trn_acc`` and ``tst_acc``; those
    before training, printed as epoch 0, are kept as ``initial`` = (trn, tst).
    """

    def __init__(self, train, test):
        super().__init__()
        self.train = (train[0][:TRAIN_REPORT_SIZE], train[1][:TRAIN_REPORT_SIZE])
        self.test = test

    def accuracies(self):
        trn = self.model.evaluate(*self.train)["accuracy"]
        tst = self.model.evaluate(*self.test)["accuracy"]
        return trn, tst

    def on_train_begin(self, logs=None):
        trn, tst = self.initial = self.accuracies()
        print(knet_line("epoch", 0, "trn", trn, "tst", tst), flush=True)

    def on_epoch_end(self, epoch, logs=None):
        trn, tst = self.accuracies()
        if logs is not None:
            logs["trn_acc"], logs["tst_acc"] = trn, tst
        print(knet_line("epoch", epoch + 1, "trn", trn, "tst", tst), flush=True)


# -- results -------------------------------------------------------------------------------------------
def save_checkpoint(obj, out):
    """``kp.save(obj)`` as ``out/model.ckpt``; the path, announced."""
    from ..io import save

    path = Path(out) / CHECKPOINT
    save(path, obj)
    print(f"saved {path}")
    return path


def save_curve(history, out, *, title, enabled=True, xlabel="epoch", labels=None, val_label="val"):
    """The learning-curve PNG ``out/learning_curve.png`` (None when disabled or matplotlib is missing).

    ``labels`` and ``val_label`` are passed on to :func:`knetpy.plot.learning_curve`.
    """
    if not enabled:
        return None
    from ..plot import learning_curve

    path = learning_curve(history, Path(out) / CURVE, title=title, xlabel=xlabel, labels=labels, val_label=val_label)
    if path is not None:
        print(f"saved {path}")
    return path


def fit_and_report(model, args, data, *, title, callbacks=()):
    """Compile, summarise and ``fit`` an image classifier, printing Knet-style accuracy lines; save it.

    ``callbacks`` run before the accuracy report each epoch (so an epoch timer leaves it out).
    Returns per-epoch accuracies (index 0: before training), the losses and the saved files.
    """
    from ..optim import get as get_optimizer

    xtrn, ytrn, xtst, ytst = data
    device = getattr(args, "device", "cpu")
    model = on_device(model, device)  # fit, evaluate and predict then move each batch there
    model.compile(loss="cross_entropy", optimizer=get_optimizer(args.optimizer, lr=args.lr), metrics=["accuracy"])
    model(on_device(xtrn[:1], device))  # build the layers, so that summary() knows the shapes
    model.summary()
    report = AccuracyReport((xtrn, ytrn), (xtst, ytst))
    from ..parallel import auto_blas_threads, largest_gemm_flops

    # one BLAS thread when the model's GEMMs are too small for BLAS's threads to pay
    distributed = getattr(args, "distributed", False)
    with auto_blas_threads(largest_gemm_flops(model, xtrn[:args.batch_size])):
        history = model.fit(xtrn, ytrn, epochs=args.epochs, batch_size=args.batch_size,
                            callbacks=[*callbacks, report],
                            distributed=distributed)
    if distributed:
        from .. import distributed as dist

        if not dist.is_main():  # rank 0 saves; every rank holds the same weights
            return {"trn_acc": [], "tst_acc": [], "loss": history["loss"], "checkpoint": None, "plot": None}
    checkpoint = save_checkpoint(model, args.out)
    # One training-accuracy curve: trn_acc, measured like tst_acc after each epoch (fit's running
    # accuracy, averaged while the weights changed, would be a second, lagging one).
    curves = {k: v for k, v in history.history.items() if k in CURVE_LABELS}
    curve = save_curve(curves, args.out, title=title, enabled=not args.no_plot, labels=CURVE_LABELS)
    trn = [report.initial[0], *history["trn_acc"]]
    tst = [report.initial[1], *history["tst_acc"]]
    return {"trn_acc": trn, "tst_acc": tst, "loss": history["loss"], "checkpoint": checkpoint, "plot": curve}


def one_blas_thread():
    """One BLAS thread for the block: for programs whose products are small (well under a GFLOP), where
    a second thread gains little and, on a busy machine, an unscheduled one stalls every product."""
    from ..parallel import blas_threads

    return blas_threads(1)
