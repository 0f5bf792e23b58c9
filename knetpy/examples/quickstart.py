"""Quickstart: train a small convolutional network on handwritten digits in seconds, save it, use it.

The data is scikit-learn's 8x8 digits (offline, the extra ``data``): 1,438 images to train on and
359 to test on. Without scikit-learn it falls back to part of Fashion-MNIST when its files are on
this machine, and else to the 2-D spirals with an MLP; it says which. It prints the test accuracy,
saves the model (kp.save) and a learning-curve PNG (with the extra ``plot``), and shows the three
lines that load the model and predict with it.
"""

from __future__ import annotations

import time
from pathlib import Path

import knetpy as kp
from knetpy import parallel
from knetpy.layers import Conv2D, Dense, Flatten, MaxPool2D

from ._common import (
    ExampleError,
    choice,
    load_images,
    make_parser,
    parse,
    positive,
    save_checkpoint,
    save_curve,
)

NAME = "quickstart"
FASHION_TRAIN, FASHION_TEST = 6000, 1000  # the part of Fashion-MNIST the fallback uses

#: dataset -> (epochs, accuracy the run should reach, the expression of some inputs in the printed snippet)
PLANS = {
    "digits": (10, 0.95, "kp.datasets.digits()[0][:5]"),
    "fashion": (3, 0.80, "kp.datasets.fashion_mnist('test')[0][:5]"),
    "spirals": (40, 0.90, "kp.datasets.spirals(2)[0]"),
}


def build_parser(prog=None):
    parser = make_parser(NAME, __doc__, prog or "knetpy quickstart", quick=False)
    parser.add_argument("--dataset", type=choice(("auto", *PLANS), "dataset"), default="auto",
                        help="auto (digits, else Fashion-MNIST, else spirals), or one of them (default: auto)")
    parser.add_argument("--epochs", type=positive(int), default=None,
                        help="default: " + ", ".join(f"{k} {v[0]}" for k, v in PLANS.items()))
    return parser


def small_cnn(n_classes=10):
    """Two 3x3 convolutions (32 and 64 filters) with 2x2 max pooling, then the class scores."""
    return kp.Sequential(
        Conv2D(32, 3, padding="same", activation="relu"),
        MaxPool2D(2),
        Conv2D(64, 3, padding="same", activation="relu"),
        MaxPool2D(2),
        Flatten(),
        Dense(n_classes),
    )


def choose_data(requested, seed):
    """``(dataset, (xtrn, ytrn, xtst, ytst), note)``: the requested data, or the first available one."""
    if requested in ("auto", "digits"):
        try:
            return "digits", load_images("digits", seed=seed), "scikit-learn's 8x8 handwritten digits"
        except ExampleError as e:  # scikit-learn is missing
            if requested == "digits":
                raise
            print(f"note: {e}\nnote: so the quickstart tries Fashion-MNIST instead")
    if requested in ("auto", "fashion"):
        try:
            xtrn, ytrn = kp.datasets.fashion_mnist("train", download=False)
            xtst, ytst = kp.datasets.fashion_mnist("test", download=False)
            data = xtrn[:FASHION_TRAIN], ytrn[:FASHION_TRAIN], xtst[:FASHION_TEST], ytst[:FASHION_TEST]
            return "fashion", data, f"{FASHION_TRAIN} Fashion-MNIST images (28x28 clothing)"
        except (kp.datasets.DatasetNotFoundError, kp.datasets.CorruptFileError) as e:
            if requested == "fashion":
                raise
            print(f"note: Fashion-MNIST is not on this machine ({str(e).split(';')[0]})\n"
                  "note: so the quickstart uses the spirals instead")
    x, y = kp.datasets.spirals(300, 3)
    order = kp.backend.rng().permutation(len(x))
    x, y = x[order], y[order]
    split = int(0.8 * len(x))
    return "spirals", (x[:split], y[:split], x[split:], y[split:]), "the 3-class 2-D spirals (with an MLP)"


def main(argv=None, prog=None):
    """Train, report, save; returns the test accuracy, the dataset used and the saved files."""
    args = parse(build_parser(prog), argv)
    start = time.perf_counter()
    kp.set_seed(args.seed)
    dataset, (xtrn, ytrn, xtst, ytst), what = choose_data(args.dataset, args.seed)
    epochs, target, inputs = PLANS[dataset]
    epochs = args.epochs or epochs
    print(f"Training on {what}: {len(xtrn)} to learn from, {len(xtst)} held out for testing.")
    if dataset == "spirals":
        model = kp.Sequential(Dense(100, activation="relu"), Dense(3))
        optimizer = kp.optim.Adam(lr=0.02)
    else:
        model = small_cnn()
        optimizer = kp.optim.Adam(lr=3e-3)
    model.compile(loss="cross_entropy", optimizer=optimizer, metrics=["accuracy"])
    # The rate falls along a cosine to near zero by the last epoch, so the final weights settle
    # instead of jumping between nearby solutions.
    schedule = kp.callbacks.LearningRateScheduler(kp.optim.CosineAnnealingLR(optimizer, T_max=epochs))
    # These GEMMs are small: BLAS's threads would cost more than they give (see parallel.BLAS_RULE).
    model(xtrn[:1])  # build, so that the weights' shapes are known
    with parallel.auto_blas_threads(parallel.largest_gemm_flops(model, xtrn[:32])) as blas_threads:
        history = model.fit(xtrn, ytrn, epochs=epochs, batch_size=32, validation_data=(xtst, ytst),
                            callbacks=[schedule])
        accuracy = model.evaluate(xtst, ytst)["accuracy"]
    seconds = time.perf_counter() - start
    print(f"test accuracy {accuracy:.3f} on {len(xtst)} held-out examples ({dataset}, {seconds:.1f} s)")

    checkpoint = save_checkpoint(model, args.out)
    # validation_data is the test set, so its curves are labelled test_*.
    curve = save_curve(history, args.out, title=f"Quickstart: small network on {dataset}", enabled=not args.no_plot,
                       val_label="test")
    snippet = snippet_for(checkpoint, inputs)
    print("\nLoad the model and predict:\n\n" + "\n".join("    " + line for line in snippet.splitlines()) + "\n")
    if accuracy < target:
        print(f"warning: the test accuracy {accuracy:.3f} is below the expected {target:.2f}")
    return {"accuracy": accuracy, "dataset": dataset, "target": target, "checkpoint": checkpoint, "plot": curve,
            "snippet": snippet, "seconds": seconds, "blas_threads": blas_threads}


def snippet_for(checkpoint, inputs):
    """Three lines of Python that load ``checkpoint`` and print the predicted classes of ``inputs``.

    The path is absolute, so the lines work pasted anywhere, not only in the folder the run started in.
    """
    return (f"import knetpy as kp\n"
            f"model = kp.load({str(Path(checkpoint).resolve())!r})\n"
            f"print(model.predict({inputs}).argmax(axis=1))  # predicted classes")

