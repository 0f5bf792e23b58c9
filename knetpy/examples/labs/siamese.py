"""A siamese network with the contrastive loss: digits of one class end up close, of different classes far.

One MLP (64 -> 64 -> 16, relu) embeds both images of a pair; kp.losses.contrastive pulls the
embeddings of a same-class pair together and pushes a different-class pair at least --margin apart
(Hadsell, Chopra & LeCun, 2006). Pairs are drawn half same-class, half different-class from a
training split of the 8x8 digits; everything is measured on pairs of held-out digits: the mean
distance of same-class and of different-class pairs, and the accuracy of calling a pair "same" when
its distance is below a threshold (chosen on training pairs). With the plot extra it draws the
held-out embeddings' first two principal components, coloured by digit (siamese_embedding.png).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import knetpy as kp

from .._common import add_sized_option, load_digits, make_parser, parse, positive, run_script

NAME = "siamese"
PLOT = "siamese_embedding.png"


def build_parser(prog=None):
    parser = make_parser(f"lab-{NAME}", __doc__, prog or f"knetpy lab {NAME}")
    add_sized_option(parser, "--steps", 1500, 400, help="training steps (one batch of pairs each)")
    parser.add_argument("--batch-size", type=positive(int), default=128, help="pairs per step (default: %(default)s)")
    parser.add_argument("--margin", type=positive(float), default=1.0,
                        help="contrastive margin: different-class pairs are pushed this far apart (default: %(default)s)")
    parser.add_argument("--lr", type=positive(float), default=1e-3, help="Adam learning rate (default: %(default)s)")
    return parser


def make_pairs(y, n, rng):
    """``n`` index pairs (i, j) and their flags, half of them same-class (1), half different (0)."""
    classes, counts = np.unique(y, return_counts=True)
    by_class = np.argsort(y, kind="stable")  # indices grouped by class
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    same = np.arange(n) % 2 == 0
    first = rng.integers(0, len(y), n)
    cls = np.searchsorted(classes, y[first])
    # a different class: shift by 1..K-1 places round the classes
    cls = np.where(same, cls, (cls + rng.integers(1, len(classes), n)) % len(classes))
    second = by_class[starts[cls] + (rng.random(n) * counts[cls]).astype(np.int64)]
    return first, second, same.astype(np.float32)


def distances(model, a, b):
    za, zb = model.predict(a), model.predict(b)
    return np.sqrt(((za - zb) ** 2).sum(axis=1))


def best_threshold(d, same):
    """The distance threshold with the best accuracy of "same when d < threshold" on these pairs."""
    cands = np.sort(d)
    accs = [np.mean((d < t) == (same > 0)) for t in cands]
    return float(cands[int(np.argmax(accs))])


def main(argv=None, prog=None):
    """Train the siamese embedding and measure the held-out pair distances; the measurements."""
    args = parse(build_parser(prog), argv)
    kp.set_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    x, y = load_digits(flatten=True)
    x = x.astype(np.float32)
    order = rng.permutation(len(x))
    cut = len(x) * 3 // 4
    xtr, ytr, xte, yte = x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]]
    print(f"digits: {len(xtr)} to train on, {len(xte)} held out")

    model = kp.Sequential([kp.layers.Dense(64, activation="relu"), kp.layers.Dense(16)])
    model.build_for((x.shape[1],))
    opt = kp.optim.Adam(model.params, lr=args.lr)
    losses = []
    for step in range(args.steps):
        i, j, same = make_pairs(ytr, args.batch_size, rng)
        loss = kp.losses.contrastive(model(xtr[i]), model(xtr[j]), same, margin=args.margin)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.value))
        if (step + 1) % max(1, args.steps // 5) == 0:
            print(f"step {step + 1}: contrastive loss {np.mean(losses[-50:]):.4f}", flush=True)

    i, j, same = make_pairs(ytr, 2000, rng)
    threshold = best_threshold(distances(model, xtr[i], xtr[j]), same)
    i, j, same = make_pairs(yte, 2000, rng)
    d = distances(model, xte[i], xte[j])
    d_same, d_diff = float(d[same > 0].mean()), float(d[same == 0].mean())
    acc = float(np.mean((d < threshold) == (same > 0)))
    print(f"held-out pairs: mean distance same class {d_same:.3f}, different classes {d_diff:.3f}")
    print(f"pair accuracy with threshold {threshold:.3f} (chosen on training pairs): {acc:.3f}")
    result = {"same_distance": d_same, "different_distance": d_diff, "pair_accuracy": acc,
              "threshold": threshold, "loss": losses, "plot": None}
    if not args.no_plot:
        result["plot"] = _scatter(model.predict(xte), yte, Path(args.out) / PLOT)
    return result


def _scatter(z, y, path):
    """The embeddings' first two principal components, one colour a digit."""
    z = z - z.mean(axis=0)
    _, _, vt = np.linalg.svd(z, full_matrices=False)
    out = kp.plot.latent_scatter(z @ vt[:2].T, y, path, title="held-out digits in the siamese embedding (PCA)")
    if out is not None:
        print(f"saved {out}")
    return out


if __name__ == "__main__":
    raise SystemExit(run_script(main))
