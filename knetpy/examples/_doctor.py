"""``knetpy doctor NAME``: the training doctor's checks on an example's model, on a small offline part of its data.

Each model is built, compiled and given data as its example does (the examples that train with
``kp.grad`` get the same network as layers), so the report says what to expect before a long run.
"""

from __future__ import annotations

import argparse

import numpy as np

import knetpy as kp

from ._common import IMAGE_DATASETS, choice, load_images, positive

#: Model name -> what the doctor examines.
PATIENTS = {
    "mlp": "the MLP example (784 or 64 pixels -> 64 relu -> 10), SGD lr 0.1, on images",
    "lenet": "the LeNet example (two conv+pool, 500 relu, 10), Adam lr 1e-3, on images",
    "softmax": "the softmax classifier example (pixels -> 10), SGD lr 0.1, on images",
    "quickstart": "the quickstart's small CNN, Adam lr 3e-3, on images",
    "spirals": "the spirals example's MLP (2 -> 100 relu -> 3), SGD lr 1.0, on the 3-class spirals",
    "housing": "the housing example's linear regression (13 -> 1, MSE), SGD lr 0.1",
    "charlm": "the character LSTM language model (--quick sizes: embed 32, LSTM 64), Adam lr 3e-3, on Shakespeare",
}


class CharLM(kp.Model):
    """The charlm example's three layers as one model: character ids (N, T) -> scores (N, vocab, T)."""

    def __init__(self, vocab_size, embed=64, hidden=128):
        super().__init__()
        self.embed = kp.layers.Embedding(vocab_size, embed)
        self.lstm = kp.layers.LSTM(hidden, return_sequences=True)
        self.out = kp.layers.Dense(vocab_size)

    def forward(self, ids):
        h = self.lstm(self.embed(ids))
        n, t, _ = h.shape
        scores = self.out(h.reshape(n * t, -1)).reshape(n, t, -1)
        return kp.transpose(scores, (0, 2, 1))  # classes on axis 1, as cross_entropy expects


def patient(name, dataset="digits", path=None, samples=512, seed=0):
    """``(model, x, y, description, options)``: the compiled model, ``samples`` samples of its data and
    options for :func:`knetpy.doctor.doctor`."""
    from .. import layers
    from . import lenet, mlp, quickstart

    kp.set_seed(seed)
    options = {}
    if name in ("mlp", "lenet", "softmax", "quickstart"):
        x, y, _, _ = load_images(dataset, path, quick=True, seed=seed)
        x, y = x[:samples], y[:samples]
        what = f"{len(x)} {IMAGE_DATASETS[dataset].split(' (')[0]} images"
        if name == "mlp":
            model, opt = mlp.build_model([64]), kp.optim.SGD(lr=0.1)
        elif name == "lenet":
            model, opt = lenet.build_model(x.shape[-1]), kp.optim.Adam(lr=1e-3)
        elif name == "softmax":
            model, opt = kp.Sequential(layers.Flatten(), layers.Dense(10)), kp.optim.SGD(lr=0.1)
        else:
            model, opt = quickstart.small_cnn(), kp.optim.Adam(lr=3e-3)
        model.compile(loss="cross_entropy", optimizer=opt)
    elif name == "spirals":
        x, y = kp.datasets.spirals(max(samples // 3, 1), 3)
        model = kp.Sequential(layers.Dense(100, activation="relu"), layers.Dense(3))
        model.compile(loss="cross_entropy", optimizer=kp.optim.SGD(lr=1.0))
        what = f"{len(x)} spiral points"
    elif name == "housing":
        x, y = kp.datasets.housing(standardize=True)
        x, y = x[:samples], y[:samples]
        model = kp.Sequential(layers.Dense(1))
        model.compile(loss="mse", optimizer=kp.optim.SGD(lr=0.1))
        what = f"{len(x)} suburbs, 13 standardised features, prices in $1000s"
    elif name == "charlm":
        corpus = kp.datasets.tinyshakespeare()
        seq_len = 32
        n = max(min(samples // 4, (len(corpus.data) - 1) // seq_len), 1)
        ids = np.asarray(corpus.data[:n * seq_len + 1])
        x, y = ids[:-1].reshape(n, seq_len), ids[1:].reshape(n, seq_len)
        model = CharLM(corpus.vocab_size, embed=32, hidden=64)
        model.compile(loss="cross_entropy", optimizer=kp.optim.Adam(lr=3e-3))
        what = f"{n} windows of {seq_len} characters of tinyshakespeare, vocabulary {corpus.vocab_size}"
        # an LSTM step is slow on a CPU: fewer and smaller steps keep the report to seconds
        options = {"batch_size": 8, "overfit_samples": 4, "lr_steps": 60}
    else:
        raise ValueError(f"unknown model {name!r}")
    return model, x, y, what, options


def build_parser(prog=None):
    listed = "\n".join(f"  {k:<11} {v}" for k, v in PATIENTS.items())
    parser = argparse.ArgumentParser(
        prog=prog or "knetpy doctor",
        description="Run the training doctor's checks (initial loss, gradient check, overfitting one batch, "
                    "activations, gradient norms, update/weight ratio, learning-rate range test) on an "
                    "example's model and print the report.",
        epilog="models:\n" + listed, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", type=choice(PATIENTS, "model"), metavar="NAME", help="which model")
    parser.add_argument("--dataset", type=choice(IMAGE_DATASETS, "dataset"), default="digits",
                        help="images for mlp, lenet, softmax, quickstart: digits (offline, the default), "
                             "fashion or mnist")
    parser.add_argument("--path", default=None, help="folder of the fashion/mnist IDX files")
    parser.add_argument("--samples", type=positive(int), default=512, help="samples used (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    return parser


def main(argv=None, prog=None):
    """Print the report of one model; returns the :class:`knetpy.doctor.Report`."""
    from ..doctor import doctor

    args = build_parser(prog).parse_args(argv)
    model, x, y, what, options = patient(args.name, args.dataset, args.path, args.samples, args.seed)
    print(f"{args.name}: {what}")
    return doctor(model, x, y, seed=args.seed, **options)
