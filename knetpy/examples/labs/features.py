"""Hand-made image features (HoG, colour histograms) against raw pixels, each feeding a linear classifier.

Histograms of oriented gradients (kp.classical.hog: gradient orientations binned per cell, blocks
of cells normalised) describe local shape and tolerate small shifts; colour histograms
(kp.classical.color_histogram: the hue of every pixel) ignore position altogether. Each feature set
is standardised and fed to the same softmax classifier (kp.classical.LinearClassifier, learning
rate and regularisation chosen on a validation fifth). Two measurements, reported as they come out:
  1. digits placed at random in a larger canvas (shifted by up to --shift pixels): raw pixels move
     under a linear classifier's fixed templates and it fails; HoG does clearly better (and also on
     the centred digits).
  2. CIFAR-format images (CIFAR-10 from --path, else the synthetic set, said so): pixels, HoG, colour
     histogram, HoG + colour. On the synthetic set, whose classes are fixed colour patterns, pixels
     win; on real CIFAR-10 the course finds HoG + colour ahead of pixels.
"""

from __future__ import annotations

import numpy as np

import knetpy as kp
from knetpy.classical import LinearClassifier, color_histogram, hog

from .._common import add_sized_option, knet_line, make_parser, parse, run_script
from ._classical import add_dataset_options, load, validation_split

NAME = "features"
GRID = [(1.0, 1e-4), (0.1, 1e-3), (0.01, 1e-3)]  # (learning rate, regularisation) for standardised features


def build_parser(prog=None):
    parser = make_parser(f"lab-{NAME}", __doc__, prog or f"knetpy lab {NAME}")
    add_dataset_options(parser, default="cifar")
    add_sized_option(parser, "--epochs", 30, 15, help="SGD passes of each linear classifier")
    parser.add_argument("--shift", type=int, default=4, help="largest shift of the digits, pixels (default: %(default)s)")
    return parser


def shifted_digits(x, shift, seed):
    """(N, 1, 8 + 2 shift, 8 + 2 shift) canvases with each 8x8 digit of ``x`` placed at a random offset."""
    g = np.random.default_rng(seed)
    size = 8 + 2 * shift
    out = np.zeros((len(x), 1, size, size), x.dtype)
    rows, cols = g.integers(0, 2 * shift + 1, (2, len(x)))
    for i in range(len(x)):  # one small copy per image
        out[i, 0, rows[i]:rows[i] + 8, cols[i]:cols[i] + 8] = x[i, 0]
    return out


def linear_accuracy(ftrn, ytrn, ftst, ytst, epochs, seed):
    """Test accuracy of a softmax classifier on standardised features, lr and reg chosen on validation."""
    scale = kp.data.Standardizer().fit(ftrn.reshape(len(ftrn), -1))
    ftrn, ftst = scale.transform(ftrn.reshape(len(ftrn), -1)), scale.transform(ftst.reshape(len(ftst), -1))
    xfit, yfit, xval, yval = validation_split(ftrn, ytrn, seed=seed)
    n_classes = int(max(ytrn.max(), ytst.max())) + 1

    def trained(x, y, lr, reg):
        return LinearClassifier("softmax", lr=lr, reg=reg, epochs=epochs, seed=seed).fit(x, y, n_classes)

    lr, reg = max(GRID, key=lambda p: trained(xfit, yfit, *p).score(xval, yval))
    return trained(ftrn, ytrn, lr, reg).score(ftst, ytst)


def compare(task, sets, ytrn, ytst, args):
    accs = {}
    for name, (ftrn, ftst) in sets.items():
        accs[name] = linear_accuracy(ftrn, ytrn, ftst, ytst, args.epochs, args.seed)
        print(knet_line("task", task, "features", name, "dims", int(np.prod(ftrn.shape[1:])), "tst", accs[name]),
              flush=True)
    return accs


def main(argv=None, prog=None):
    """Measure both comparisons; returns the test accuracies per task and feature set."""
    parser = build_parser(prog)
    args = parse(parser, argv)
    if not 0 <= args.shift <= 16:
        parser.error(f"--shift must be between 0 and 16, got {args.shift}")
    from .._common import load_images

    xtrn, ytrn, xtst, ytst = load_images("digits", seed=args.seed)
    result = {}
    result["digits"] = compare("digits", {"pixels": (xtrn, xtst), "hog": (hog(xtrn, cell=2), hog(xtst, cell=2))},
                               ytrn, ytst, args)
    strn, stst = shifted_digits(xtrn, args.shift, args.seed), shifted_digits(xtst, args.shift, args.seed + 1)
    result["shifted_digits"] = compare(f"digits shifted by up to {args.shift}",
                                       {"pixels": (strn, stst), "hog": (hog(strn, cell=4), hog(stst, cell=4))},
                                       ytrn, ytst, args)

    what, xtrn, ytrn, xtst, ytst, _ = load(args)
    if xtrn.shape[1] == 3:
        print(f"{what}: {len(xtrn)} training and {len(xtst)} test images")
        h = hog(xtrn), hog(xtst)
        c = color_histogram(xtrn), color_histogram(xtst)
        result["images"] = compare(what, {"pixels": (xtrn, xtst), "hog": h, "colour": c,
                                          "hog+colour": (np.hstack([h[0], c[0]]), np.hstack([h[1], c[1]]))},
                                   ytrn, ytst, args)
    result["images_dataset"] = what
    gain = result["shifted_digits"]["hog"] - result["shifted_digits"]["pixels"]
    print(f"on shifted digits HoG {'beats' if gain > 0 else 'does not beat'} raw pixels by {gain:+.3f}")
    return result


if __name__ == "__main__":
    raise SystemExit(run_script(main))
