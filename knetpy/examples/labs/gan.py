"""A toy GAN that learns a known 1-D distribution, N(4, 1.25^2), from samples of it.

The generator G maps noise z ~ N(0, I) through a small MLP to one number; the discriminator D, another
MLP, scores numbers as real (from the target) or fake (from G). They are trained in turn, the Knet
way (weights in lists, ``kp.value_and_grad``, ``kp.optim.update``): D on ``bce(D(real), 1) +
bce(D(fake), 0)``, G on the non-saturating ``bce(D(G(z)), 1)``. D also sees the standard deviation of
its whole minibatch (the minibatch-stddev feature of Karras et al., 2018), so a wrong spread is easy
to spot and G gets it right (without it, --no-mbstd, the std typically ends 0.1 to 0.4 off, either way;
the mean is matched regardless).

The outcome: G's samples have the target's mean and std within TOLERANCE (0.25 each), printed with
both losses every few hundred steps; a histogram of the samples over the target density
(samples.png) and the loss curves (learning_curve.png) are saved.
"""

from __future__ import annotations

import numpy as np

import knetpy as kp

from .._common import (
    add_sized_option,
    knet_line,
    make_parser,
    parse,
    positive,
    run_script,
    save_checkpoint,
    save_curve,
)
from ._generative import out_path, saved

NAME = "gan"
TARGET_MEAN, TARGET_STD = 4.0, 1.25
TOLERANCE = 0.25  # |mean error| and |std error| the trained generator must stay within


def build_parser(prog=None):
    parser = make_parser(NAME, __doc__, prog or f"knetpy lab {NAME}")
    add_sized_option(parser, "--steps", 3000, 1000, help="training steps (one D update, then one G update)")
    parser.add_argument("--batch-size", type=positive(int), default=128, help="samples per step (default: %(default)s)")
    parser.add_argument("--lr", type=positive(float), default=2e-3,
                        help="Adam learning rate, divided by 5 for the last 30%% of steps (default: %(default)s)")
    parser.add_argument("--hidden", type=positive(int), default=32, help="units of each hidden layer (default: %(default)s)")
    parser.add_argument("--noise-dim", type=positive(int), default=4, help="size of G's noise input (default: %(default)s)")
    parser.add_argument("--no-mbstd", action="store_true", help="leave out D's minibatch-stddev input")
    return parser


def init_mlp(sizes, rng):
    """[W1, b1, W2, b2, ...] with He-scaled weights, float32."""
    w = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        w += [(rng.standard_normal((a, b)) * np.sqrt(2.0 / a)).astype(np.float32), np.zeros(b, np.float32)]
    return w


def mlp(w, x):
    for i in range(0, len(w) - 2, 2):
        x = kp.activations.leaky_relu(x @ w[i] + w[i + 1], 0.2)
    return x @ w[-2] + w[-1]


def discriminate(wd, x, mbstd):
    """D's logits for a batch x (N, 1); with ``mbstd`` each row also gets the batch's std as a feature."""
    if mbstd:
        spread = kp.std(x, axis=0, keepdims=True) * np.ones((x.shape[0], 1), np.float32)
        x = kp.concatenate([x, spread], axis=1)
    return mlp(wd, x)


def main(argv=None, prog=None):
    """Train the toy GAN; returns the samples' mean and std, their errors and the logged losses."""
    args = parse(build_parser(prog), argv)
    kp.set_seed(args.seed)
    rng = kp.backend.rng()
    mbstd = not args.no_mbstd
    n, zdim = args.batch_size, args.noise_dim
    wg = init_mlp([zdim, args.hidden, args.hidden, 1], rng)
    wd = init_mlp([2 if mbstd else 1, args.hidden, args.hidden, 1], rng)
    adam = dict(lr=args.lr, betas=(0.5, 0.999))  # beta1 = 0.5, as DCGAN: less momentum in a moving game
    opt_g, opt_d = kp.optim.optimizers(wg, kp.optim.Adam, **adam), kp.optim.optimizers(wd, kp.optim.Adam, **adam)
    ones, zeros = np.ones((n, 1), np.float32), np.zeros((n, 1), np.float32)

    def d_loss(wd, real, fake):
        return (kp.losses.bce_with_logits(discriminate(wd, real, mbstd), ones)
                + kp.losses.bce_with_logits(discriminate(wd, fake, mbstd), zeros))

    def g_loss(wg, wd, z):
        return kp.losses.bce_with_logits(discriminate(wd, mlp(wg, z), mbstd), ones)

    d_step, g_step = kp.value_and_grad(d_loss), kp.value_and_grad(g_loss)
    print(f"target N({TARGET_MEAN}, {TARGET_STD}^2); G: {zdim} -> {args.hidden} -> {args.hidden} -> 1, "
          f"D: {2 if mbstd else 1} -> {args.hidden} -> {args.hidden} -> 1 ({'with' if mbstd else 'without'} "
          f"minibatch std); {args.steps} steps of {n}")
    history = {"d_loss": [], "g_loss": []}
    every = max(1, args.steps // 10)
    sums = [0.0, 0.0]
    for s in range(1, args.steps + 1):
        if s == int(0.7 * args.steps) + 1:
            for o in opt_g + opt_d:
                o.lr = args.lr / 5
        real = (TARGET_MEAN + TARGET_STD * rng.standard_normal((n, 1))).astype(np.float32)
        fake = mlp(wg, rng.standard_normal((n, zdim)).astype(np.float32))  # plain arrays: D's step leaves G alone
        ld, dw = d_step(wd, real, fake)
        kp.optim.update(wd, dw, opt_d)
        lg, dg = g_step(wg, wd, rng.standard_normal((n, zdim)).astype(np.float32))
        kp.optim.update(wg, dg, opt_g)
        sums[0] += float(ld)
        sums[1] += float(lg)
        if s % every == 0 or s == args.steps:
            k = every if s % every == 0 else s % every
            history["d_loss"].append(sums[0] / k)
            history["g_loss"].append(sums[1] / k)
            sums = [0.0, 0.0]
            print(knet_line("step", s, "d_loss", history["d_loss"][-1], "g_loss", history["g_loss"][-1]), flush=True)

    samples = np.asarray(mlp(wg, rng.standard_normal((20000, zdim)).astype(np.float32))).ravel()
    mean, std = float(samples.mean()), float(samples.std())
    mean_err, std_err = mean - TARGET_MEAN, std - TARGET_STD
    ok = abs(mean_err) < TOLERANCE and abs(std_err) < TOLERANCE
    print(f"samples: mean {mean:.3f} (target {TARGET_MEAN}, error {mean_err:+.3f}), std {std:.3f} "
          f"(target {TARGET_STD}, error {std_err:+.3f}): {'within' if ok else 'OUTSIDE'} the tolerance {TOLERANCE}")
    print("(D's loss near 2 log 2 = 1.386 and G's near log 2 = 0.693 mean D can no longer tell them apart)")
    result = {"mean": mean, "std": std, "mean_error": mean_err, "std_error": std_err, "tolerance": TOLERANCE,
              "matched": ok, "d_loss": history["d_loss"], "g_loss": history["g_loss"], "log_every": every}
    result["checkpoint"] = save_checkpoint({"generator": wg, "discriminator": wd}, args.out)
    result["plot"] = save_curve(history, args.out, title="toy GAN: losses", enabled=not args.no_plot,
                                xlabel=f"x {every} steps")
    result["samples_plot"] = None
    if not args.no_plot:
        def pdf(x):
            return np.exp(-0.5 * ((x - TARGET_MEAN) / TARGET_STD) ** 2) / (TARGET_STD * np.sqrt(2 * np.pi))

        real = TARGET_MEAN + TARGET_STD * rng.standard_normal(len(samples))
        result["samples_plot"] = saved(kp.plot.sample_histogram(
            {"generated": samples, "real": real}, out_path(args, "samples.png"), pdf=pdf,
            title=f"G's samples: mean {mean:.2f}, std {std:.2f} (target {TARGET_MEAN}, {TARGET_STD})"))
    return result


if __name__ == "__main__":
    raise SystemExit(run_script(main))
