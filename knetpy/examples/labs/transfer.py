"""Transfer learning: a digit recogniser's features help a new task on other images learned from 50 examples.

Source task: the 10 digits, on one half of the 8x8 digit images (an MLP body 64 -> 128 -> 64, relu,
and a 10-way head). Target task: a new labelling, the digit modulo 5 (classes {0,5}, {1,6}, ...), on
the other half of the images, with only --labelled examples (10 a class). Three ways to learn it,
each with a fresh 5-way head and the same epochs: (1) from scratch; (2) the pretrained body frozen
(``trainable = False``), only the head trained; (3) fine-tuning everything with parameter groups, the
body at a learning rate 10x lower than the head's (``Adam([{"params": body, "lr": lr / 10},
{"params": head}], lr=lr)``). Accuracies are measured on all the other target images; the lab reports
how much fine-tuning gains over training from scratch. (Digits 0-4 as the source for 5-9 does not
work at this scale: with 50 labels a network from scratch already reaches about 95% on 5-9, and the
0-4 features lose a few points; transfer pays when the source features fit the target.)
"""

from __future__ import annotations

import numpy as np

import knetpy as kp

from .._common import add_sized_option, load_digits, make_parser, parse, positive, run_script

NAME = "transfer"


def build_parser(prog=None):
    parser = make_parser(f"lab-{NAME}", __doc__, prog or f"knetpy lab {NAME}")
    add_sized_option(parser, "--source-epochs", 60, 40, help="epochs on the source task (the 10 digits)")
    add_sized_option(parser, "--target-epochs", 80, 60, help="epochs on the small target set (digit mod 5)")
    parser.add_argument("--labelled", type=positive(int), default=50,
                        help="labelled target examples, spread evenly over the 5 classes (default: %(default)s)")
    parser.add_argument("--lr", type=positive(float), default=3e-3, help="Adam learning rate of the heads "
                        "(default: %(default)s); the fine-tuned body uses a tenth of it")
    return parser


def make_body():
    return kp.Sequential([kp.layers.Dense(128, activation="relu"), kp.layers.Dense(64, activation="relu")])


def accuracy(model, x, y):
    return float(np.mean(model.predict_classes(x) == y))


def small_target_set(x, y, n, rng):
    """``n`` examples spread evenly over the classes of ``y`` (indices), the rest for testing."""
    classes = np.unique(y)
    per = max(1, n // len(classes))
    picked = np.concatenate([rng.choice(np.flatnonzero(y == c), per, replace=False) for c in classes])
    rest = np.setdiff1d(np.arange(len(y)), picked)
    return picked, rest


def main(argv=None, prog=None):
    """Pretrain, then learn the target three ways; the test accuracies."""
    args = parse(build_parser(prog), argv)
    kp.set_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    x, y = load_digits(flatten=True)
    x = x.astype(np.float32)
    order = rng.permutation(len(x))
    src, tgt = order[: len(x) // 2], order[len(x) // 2:]
    xs, ys = x[src], y[src]
    xt, yt = x[tgt], y[tgt] % 5
    train, test = small_target_set(xt, yt, args.labelled, rng)
    print(f"source: {len(xs)} images, 10 digits; target (digit mod 5): {len(train)} labelled images of the "
          f"other {len(xt)}, {len(test)} to test on")

    body = make_body()
    source = kp.Sequential([body, kp.layers.Dense(10)])
    source.compile(loss="cross_entropy", optimizer=kp.optim.Adam(lr=args.lr), metrics=["accuracy"])
    source.fit(xs, ys, epochs=args.source_epochs, batch_size=64, verbose=0)
    src_acc = accuracy(source, xs, ys)
    print(f"source task (10 digits) training accuracy: {src_acc:.3f}")
    pretrained = {k: p.value.copy() for k, p in body.params.items()}

    def target_run(name, model, optimizer):
        model.compile(loss="cross_entropy", optimizer=optimizer, metrics=["accuracy"])
        model.fit(xt[train], yt[train], epochs=args.target_epochs, batch_size=16, verbose=0)
        acc = accuracy(model, xt[test], yt[test])
        print(f"{name:<34s} target test accuracy {acc:.3f}")
        return acc

    result = {"source_acc": src_acc}
    scratch = kp.Sequential([make_body(), kp.layers.Dense(5)])
    result["scratch"] = target_run("from scratch", scratch, kp.optim.Adam(lr=args.lr))

    body.trainable = False
    frozen = kp.Sequential([body, kp.layers.Dense(5)])
    result["frozen"] = target_run("pretrained body frozen, new head", frozen, kp.optim.Adam(lr=args.lr))
    result["frozen_body_unchanged"] = all(np.array_equal(p.value, pretrained[k]) for k, p in body.params.items())
    body.trainable = True

    head = kp.layers.Dense(5)
    tuned = kp.Sequential([body, head])
    tuned.build_for((x.shape[1],))
    groups = [{"params": body.parameters(), "lr": args.lr / 10}, {"params": head.parameters()}]
    result["finetune"] = target_run("fine-tuned (body at lr/10)", tuned, kp.optim.Adam(groups, lr=args.lr))
    result["gain"] = result["finetune"] - result["scratch"]
    print(f"fine-tuning beats training from scratch by {result['gain']:+.3f}")
    return result


if __name__ == "__main__":
    raise SystemExit(run_script(main))
