"""A variational autoencoder (Kingma & Welling, 2014) on MNIST-format images, with 2 and 20 latent units.

The encoder maps an image x to the mean mu and log-variance logvar of a Gaussian q(z|x); a code is
drawn with the reparameterisation trick, z = mu + exp(logvar / 2) * eps (``kp.generative.reparameterize``),
so the gradient reaches the encoder; the decoder maps z to the logits of Bernoulli pixels p(x|z). Training
maximises the evidence lower bound per image

    ELBO = E_q[log p(x|z)] - KL(q(z|x) || N(0, I))

(``kp.losses.bce_with_logits`` summed over the pixels, and ``kp.losses.kl_normal``), reported in nats per
image on the training batches and on test images after each epoch (epoch 0: before training).
Fashion-MNIST is used when its files are on this machine, else scikit-learn's digits (it says so).

Pictures per latent size L in --out: samples_zL.png (decoded z ~ N(0, I)), interpolation_zL.png (each row
decodes the straight line between the codes of two test images), reconstructions_zL.png; for L = 2
also latent_scatter_z2.png (test codes coloured by class) and manifold_z2.png (the decoder over a grid
of z). A 2-D code is a picture of the data but a tight bottleneck: on Fashion-MNIST L = 20 reaches the
higher ELBO (on the 8x8 digits the two end about level).
"""

from __future__ import annotations

from statistics import NormalDist

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
from ._generative import (
    add_data_options,
    batches,
    class_names,
    evaluate,
    load_images,
    out_path,
    saved,
    step,
)

NAME = "vae"


def build_parser(prog=None):
    parser = make_parser(NAME, __doc__, prog or f"knetpy lab {NAME}")
    add_data_options(parser, train=(60000, 2000), test=(10000, 500))
    add_sized_option(parser, "--epochs", 20, 4, help="passes over the training images")
    parser.add_argument("--latent", type=positive(int), nargs="+", default=[2, 20],
                        help="latent sizes, one VAE each (default: 2 20)")
    parser.add_argument("--hidden", type=positive(int), default=256, help="hidden units (default: %(default)s)")
    parser.add_argument("--batch-size", type=positive(int), default=100, help="images per step (default: %(default)s)")
    parser.add_argument("--lr", type=positive(float), default=2e-3, help="Adam learning rate (default: %(default)s)")
    return parser


class VAE(kp.Model):
    """Dense encoder (to mu and logvar) and decoder (to pixel logits)."""

    def __init__(self, n_pixels, latent, hidden):
        super().__init__()
        self.latent = latent
        self.encoder = kp.Sequential([kp.layers.Dense(hidden, activation="relu", input_shape=(n_pixels,)),
                                      kp.layers.Dense(2 * latent)])
        self.decoder = kp.Sequential([kp.layers.Dense(hidden, activation="relu", input_shape=(latent,)),
                                      kp.layers.Dense(n_pixels)])

    def encode(self, x):
        h = self.encoder(x)
        return h[:, :self.latent], h[:, self.latent:]

    def forward(self, x):
        mu, logvar = self.encode(x)
        return self.decoder(kp.generative.reparameterize(mu, logvar)), mu, logvar


def negative_elbo(model, x):
    """-ELBO per image (mean over the batch), and its two parts: reconstruction and KL."""
    logits, mu, logvar = model(x)
    recon = kp.losses.bce_with_logits(logits, x, reduction="sum") * (1.0 / len(x))
    kl = kp.losses.kl_normal(mu, logvar)
    return recon + kl, recon, kl


def decode(model, z, shape):
    with kp.no_grad():
        return kp.sigm(model.decoder(z.astype(np.float32))).value.reshape((len(z),) + shape)


def train_one(latent, args, data, shape):
    """Train the VAE with ``latent`` units; per-epoch ELBOs and the model."""
    xtrn, xtst = data
    model = VAE(xtrn.shape[1], latent, args.hidden)
    opt = kp.optim.Adam(model.params, lr=args.lr)

    def test_elbo():
        return -evaluate(lambda xb: negative_elbo(model, xb)[0].value, xtst)

    history = {"elbo": [], "test_elbo": [test_elbo()], "recon": [], "kl": []}
    print(f"-- latent {latent}: {model.count_params()} parameters")
    print(knet_line("epoch", 0, "tst_elbo", history["test_elbo"][0]), flush=True)
    for epoch in range(1, args.epochs + 1):
        _epoch(model, opt, xtrn, args, history)
        history["test_elbo"].append(test_elbo())
        print(knet_line("epoch", epoch, "elbo", history["elbo"][-1], "recon", history["recon"][-1],
                        "kl", history["kl"][-1], "tst_elbo", history["test_elbo"][-1]), flush=True)
    return model, history


def _epoch(model, opt, xtrn, args, history):
    """One pass over the training images; the mean ELBO and its parts appended to ``history``."""
    sums = np.zeros(3)
    for idx in batches(len(xtrn), args.batch_size):
        loss, recon, kl = negative_elbo(model, xtrn[idx])
        sums += [step(loss, opt) * len(idx), float(recon.value) * len(idx), float(kl.value) * len(idx)]
    history["elbo"].append(-sums[0] / len(xtrn))
    history["recon"].append(sums[1] / len(xtrn))
    history["kl"].append(sums[2] / len(xtrn))


def pictures(model, latent, args, xtst, ytst, shape, names):
    """The sample, interpolation, reconstruction (and for 2-D codes scatter and manifold) grids."""
    out = {}
    if args.no_plot:
        return out
    grid = kp.plot.image_grid
    z = kp.backend.rng().standard_normal((64, latent))
    out["samples"] = saved(grid(decode(model, z, shape), out_path(args, f"samples_z{latent}.png"), ncols=8,
                                title=f"VAE samples, z ~ N(0, I), latent {latent}"))
    with kp.no_grad():
        mu = model.encode(xtst[:500])[0].value
    steps, pairs = 8, 4
    line = np.concatenate([kp.generative.interpolate(mu[2 * i], mu[2 * i + 1], steps) for i in range(pairs)])
    out["interpolation"] = saved(grid(decode(model, line, shape), out_path(args, f"interpolation_z{latent}.png"),
                                      ncols=steps, title="decoded along straight lines between two test images' codes"))
    with kp.no_grad():
        recon = kp.sigm(model(xtst[:16])[0]).value.reshape((16,) + shape)
    pairs_ = np.stack([xtst[:16].reshape((16,) + shape), recon], axis=1).reshape((32,) + shape)
    out["reconstructions"] = saved(grid(pairs_, out_path(args, f"reconstructions_z{latent}.png"), ncols=8,
                                        title="test images (odd tiles) and their reconstructions (even tiles)"))
    if latent == 2:
        out["scatter"] = saved(kp.plot.latent_scatter(mu, ytst[:500], out_path(args, "latent_scatter_z2.png"),
                                                      class_names=names, title="test codes (mu) by class"))
        q = [NormalDist().inv_cdf(p) for p in np.linspace(0.05, 0.95, 10)]  # equal prior mass per tile
        zz = np.array([[a, b] for b in q[::-1] for a in q])
        out["manifold"] = saved(grid(decode(model, zz, shape), out_path(args, "manifold_z2.png"), ncols=10,
                                     max_images=100, title="the decoder over a grid of z (normal quantiles 5%..95%)"))
    return out


def main(argv=None, prog=None):
    """Train one VAE per latent size; returns their ELBOs per epoch and the pictures."""
    args = parse(build_parser(prog), argv)
    with one_blas_thread():
        return run(args)


def run(args):
    kp.set_seed(args.seed)
    name, xtrn, _, xtst, ytst = load_images(args.dataset, args.train, args.test, args.seed)
    shape = xtrn.shape[2:]
    print(f"{name}: {len(xtrn)} training and {len(xtst)} test images of {shape[0]}x{shape[1]}")
    flat = (xtrn.reshape(len(xtrn), -1), xtst.reshape(len(xtst), -1))
    result = {"dataset": name, "latents": {}}
    curves = {}
    for latent in args.latent:
        model, history = train_one(latent, args, flat, shape)
        history["pictures"] = pictures(model, latent, args, flat[1], ytst, shape, class_names(name))
        result["latents"][latent] = history
        curves[f"train loss (-ELBO), latent {latent}"] = [-v for v in history["elbo"]]
        curves[f"test loss (-ELBO), latent {latent}"] = [-v for v in history["test_elbo"][1:]]
        kp.save(out_path(args, f"vae_z{latent}.ckpt"), model)
    summary = ", ".join(f"latent {k}: {v['test_elbo'][0]:.1f} -> {v['test_elbo'][-1]:.1f}"
                        for k, v in result["latents"].items())
    print(f"test ELBO (nats per image), before -> after training: {summary}")
    result["plot"] = save_curve(curves, args.out, title="VAE: -ELBO per image (nats)", enabled=not args.no_plot)
    return result


if __name__ == "__main__":
    raise SystemExit(run_script(main))
