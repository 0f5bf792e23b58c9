"""A small DCGAN (Radford et al., 2016) on Fashion-MNIST: transposed convolutions turn noise into images.

The generator maps z ~ N(0, I) through a dense layer to a 128-channel map of a quarter of the image's
side, then two stride-2 ``Conv2DTranspose`` layers (batch norm and relu between) double it twice, to
an image in [-1, 1] (tanh). The discriminator is its mirror: two stride-2 ``Conv2D`` layers with leaky
relu (batch norm on the second), then one logit. They are trained in turn, the PyTorch way
(``loss.backward()``, ``opt.step()``), with Adam at lr 2e-4 and beta1 = 0.5 as in the paper: D on
``bce(D(x), 1) + bce(D(G(z)), 0)``, G on the non-saturating ``bce(D(G(z)), 1)``.

After each epoch it prints the mean losses and D's accuracy on real and generated images, and saves
the images G makes from a fixed batch of noise (samples_epochN.png, and samples.png for the last), so
the grids show the same 64 codes turning into clothes. It also measures how far the mean generated
image is from the mean training image (MSE), before training and after each epoch. Fashion-MNIST is
used when its files are on this machine, else scikit-learn's digits (it says so). ``--quick`` trains on
2,000 images for one epoch in seconds; the full run (all 60,000 images, 5 epochs) takes a long while
on a CPU.
"""

from __future__ import annotations

import numpy as np

import knetpy as kp

from .._common import (
    add_sized_option,
    knet_line,
    make_parser,
    one_blas_thread,
    parse,
    positive,
    run_script,
    save_curve,
)
from ._generative import add_data_options, batches, load_images, out_path, saved

NAME = "dcgan"
L = kp.layers
LEAKY = {"name": "leaky_relu", "alpha": 0.2}


def build_parser(prog=None):
    parser = make_parser(NAME, __doc__, prog or f"knetpy lab {NAME}")
    add_data_options(parser, train=(60000, 2000))
    add_sized_option(parser, "--epochs", 5, 1, help="passes over the training images")
    parser.add_argument("--noise-dim", type=positive(int), default=64, help="size of z (default: %(default)s)")
    parser.add_argument("--batch-size", type=positive(int), default=64, help="images per step (default: %(default)s)")
    parser.add_argument("--lr", type=positive(float), default=2e-4, help="Adam learning rate (default: %(default)s)")
    return parser


def generator(zdim, image_shape):
    channels, side = image_shape[0], image_shape[1] // 4
    return kp.Sequential([
        L.Dense(128 * side * side, input_shape=(zdim,)), L.Reshape((128, side, side)), L.BatchNorm(),
        L.Activation("relu"),
        L.Conv2DTranspose(64, 4, strides=2, padding="same"), L.BatchNorm(), L.Activation("relu"),  # side * 2
        L.Conv2DTranspose(channels, 4, strides=2, padding="same", activation="tanh"),              # side * 4
    ])


def discriminator(image_shape):
    return kp.Sequential([
        L.Conv2D(32, 4, strides=2, padding="same", activation=LEAKY, input_shape=image_shape),
        L.Conv2D(64, 4, strides=2, padding="same"), L.BatchNorm(), L.Activation(LEAKY),
        L.Flatten(), L.Dense(1),
    ])


def generate(g, z):
    """G's images for the codes ``z`` in eval mode (running batch-norm statistics), in [-1, 1]."""
    g.eval()
    with kp.no_grad():
        out = g(z).value
    g.train()
    return out


def main(argv=None, prog=None):
    """Train the DCGAN; returns the per-epoch losses, accuracies, mean-image distances and sample grids."""
    args = parse(build_parser(prog), argv)
    with one_blas_thread():
        return run(args)


def run(args):
    kp.set_seed(args.seed)
    rng = kp.backend.rng()
    name, xtrn, _, _, _ = load_images(args.dataset, args.train, 0, args.seed)
    if xtrn.shape[2] % 4 or xtrn.shape[3] % 4:
        raise ValueError(f"dcgan: image sides must be multiples of 4, got {xtrn.shape[2:]}")
    x = xtrn * 2.0 - 1.0  # [-1, 1], the range of G's tanh
    shape = x.shape[1:]
    print(f"{name}: {len(x)} training images of {shape[1]}x{shape[2]}")
    zdim, n = args.noise_dim, args.batch_size
    g, d = generator(zdim, shape), discriminator(shape)
    print(f"generator: {g.count_params()} parameters; discriminator: {d.count_params()} parameters")
    adam = dict(lr=args.lr, betas=(0.5, 0.999))
    opt_g, opt_d = kp.optim.Adam(g.params, **adam), kp.optim.Adam(d.params, **adam)
    fixed = rng.standard_normal((64, zdim)).astype(np.float32)
    data_mean = x.mean(axis=0)

    def mean_image_mse():
        return float(np.mean((generate(g, fixed).mean(axis=0) - data_mean) ** 2))

    history = {"d_loss": [], "g_loss": [], "d_real_acc": [], "d_fake_acc": [], "mean_image_mse": [mean_image_mse()]}
    print(knet_line("epoch", 0, "mean_image_mse", history["mean_image_mse"][0]), flush=True)
    grids = []
    for epoch in range(1, args.epochs + 1):
        sums, steps = np.zeros(4), 0
        for idx in batches(len(x), n):
            real = x[idx]
            z = rng.standard_normal((len(idx), zdim)).astype(np.float32)
            with kp.no_grad():
                fake = g(z)  # no graph into G: D's step leaves G alone
            real_logits, fake_logits = d(real), d(fake.value)
            ones, zeros = np.ones((len(idx), 1), np.float32), np.zeros((len(idx), 1), np.float32)
            d_loss = kp.losses.bce_with_logits(real_logits, ones) + kp.losses.bce_with_logits(fake_logits, zeros)
            d_loss.backward()
            opt_d.step()
            opt_d.zero_grad()
            g_loss = kp.losses.bce_with_logits(d(g(z)), ones)
            g_loss.backward()
            opt_g.step()
            opt_g.zero_grad()
            d.zero_grad()  # G's loss also reached D's parameters: those gradients are not D's to use
            sums += [float(d_loss.value), float(g_loss.value),
                     float(np.mean(real_logits.value > 0)), float(np.mean(fake_logits.value < 0))]
            steps += 1
        for key, value in zip(("d_loss", "g_loss", "d_real_acc", "d_fake_acc"), sums / steps):
            history[key].append(float(value))
        history["mean_image_mse"].append(mean_image_mse())
        print(knet_line("epoch", epoch, "d_loss", history["d_loss"][-1], "g_loss", history["g_loss"][-1],
                        "d_real_acc", history["d_real_acc"][-1], "d_fake_acc", history["d_fake_acc"][-1],
                        "mean_image_mse", history["mean_image_mse"][-1]), flush=True)
        if not args.no_plot:
            grids.append(saved(kp.plot.image_grid(generate(g, fixed), out_path(args, f"samples_epoch{epoch}.png"),
                                                  ncols=8, title=f"DCGAN samples after epoch {epoch} (fixed z)")))
    result = dict(history, dataset=name, grids=grids, samples=None)
    if not args.no_plot:
        result["samples"] = saved(kp.plot.image_grid(generate(g, fixed), out_path(args, "samples.png"), ncols=8,
                                                     title=f"DCGAN samples after {args.epochs} epochs"))
        real_grid = kp.plot.image_grid(x[:64], out_path(args, "real.png"), ncols=8, title=f"{name} training images")
        result["real"] = saved(real_grid)
    kp.save(out_path(args, "generator.ckpt"), g)
    result["plot"] = save_curve({"d_loss": history["d_loss"], "g_loss": history["g_loss"]}, args.out,
                                title="DCGAN: losses", enabled=not args.no_plot)
    return result


if __name__ == "__main__":
    raise SystemExit(run_script(main))
