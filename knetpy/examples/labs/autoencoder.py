"""Autoencoders on MNIST-format images: dense, convolutional, denoising and contractive.

An autoencoder squeezes an image through a small code and rebuilds it; trained on the reconstruction
error alone (``bce_with_logits`` against the image, summed over its pixels), the code has to keep what
matters. Four of them:

- dense: 784 -> 128 -> 32 -> 128 -> 784 (a 32-number code);
- convolutional: two stride-2 ``Conv2D`` layers down to a 7x7x8 map (392 numbers, half the pixels),
  two stride-2 ``Conv2DTranspose`` layers back up;
- denoising (Vincent et al., 2008): the dense one, fed images with Gaussian noise (a fresh draw per
  batch, ``kp.generative.corrupt``) and asked for the clean image. It removes noise: its output is closer
  to the clean test image than the noisy input is (the identity), and on Fashion-MNIST closer than
  what the plain autoencoder makes of the noisy input;
- contractive (Rifai et al., 2011): a smaller dense one (784 -> 64 -> 16 -> 64 -> 784) trained with the
  penalty lambda * ||dh/dx||_F^2 on its code h (``kp.generative.contractive_penalty``: one ``kp.grad`` per
  code unit, recorded so that the loss's gradient with respect to the weights goes through it). Its codes
  move less when the input moves: a several times smaller Jacobian norm than the same autoencoder
  trained without the penalty, for a slightly larger reconstruction error.

The mean squared error of the reconstructions on test images is printed after each epoch (epoch 0:
before training) and drops. Fashion-MNIST is used when its files are on this machine, else scikit-learn's
digits (it says so). Pictures in --out: reconstructions.png (rows: test images, dense, convolutional)
and denoising.png (rows: clean, noisy, denoised).
"""

from __future__ import annotations

import numpy as np

import knetpy as kp

from .._common import add_sized_option, knet_line, make_parser, one_blas_thread, parse, positive, run_script
from ._generative import (
    add_data_options,
    batches,
    evaluate,
    load_images,
    out_path,
    saved,
    step,
)

NAME = "autoencoder"
L = kp.layers


def build_parser(prog=None):
    parser = make_parser(NAME, __doc__, prog or f"knetpy lab {NAME}")
    add_data_options(parser, train=(20000, 2000), test=(2000, 500))
    add_sized_option(parser, "--epochs", 10, 3, help="passes over the training images, for each autoencoder")
    parser.add_argument("--code", type=positive(int), default=32, help="code size of the dense ones (default: %(default)s)")
    parser.add_argument("--noise", type=positive(float), default=0.4,
                        help="std of the denoising autoencoder's Gaussian noise (default: %(default)s)")
    parser.add_argument("--contractive", type=positive(float), default=1.0,
                        help="lambda, the weight of the contractive penalty (default: %(default)s)")
    parser.add_argument("--contractive-code", type=positive(int), default=16,
                        help="code size of the contractive one: each step takes one gradient per unit "
                             "(default: %(default)s)")
    parser.add_argument("--batch-size", type=positive(int), default=100, help="images per step (default: %(default)s)")
    parser.add_argument("--lr", type=positive(float), default=2e-3, help="Adam learning rate (default: %(default)s)")
    return parser


def dense_autoencoder(n_pixels, code, hidden=128):
    """``(autoencoder, encoder)``: the encoder's code is linear, the decoder outputs pixel logits."""
    encoder = kp.Sequential([L.Dense(hidden, activation="relu", input_shape=(n_pixels,)), L.Dense(code)])
    decoder = kp.Sequential([L.Dense(hidden, activation="relu", input_shape=(code,)), L.Dense(n_pixels)])
    return kp.Sequential([encoder, decoder]), encoder


def conv_autoencoder(image_shape):
    return kp.Sequential([
        L.Conv2D(16, 3, strides=2, padding="same", activation="relu", input_shape=image_shape),  # 28 -> 14
        L.Conv2D(8, 3, strides=2, padding="same", activation="relu"),  # 14 -> 7: 392 numbers, half the pixels
        L.Conv2DTranspose(16, 4, strides=2, padding="same", activation="relu"),  # 7 -> 14 (4: no checkerboard)
        L.Conv2DTranspose(1, 4, strides=2, padding="same"),                      # 14 -> 28
    ])


def reconstruct(model, x):
    """Pixels in [0, 1] (the models output logits)."""
    with kp.no_grad():
        return kp.sigm(model(x)).value


def _mse(model, x, target):
    """Mean squared error between the reconstructions of ``x`` and ``target``, per pixel."""
    total = 0.0
    for i in range(0, len(x), 500):
        total += float(np.sum((reconstruct(model, x[i:i + 500]) - target[i:i + 500]) ** 2))
    return total / target.size


def train(model, name, xtrn, xtst, args, *, noise=None, penalty=None):
    """Train ``model`` to rebuild its input; the test MSE before and after each epoch.

    ``noise(x)`` corrupts each training batch (the target stays clean); ``penalty(x)`` is added to the loss.
    """
    history = [_mse(model, xtst, xtst)]  # (also builds every layer, so the optimizer sees all the parameters)
    opt = kp.optim.Adam(model.params, lr=args.lr)
    print(f"-- {name}: {model.count_params()} parameters")
    print(knet_line("epoch", 0, "tst_mse", history[0]), flush=True)
    for epoch in range(1, args.epochs + 1):
        total = 0.0
        for idx in batches(len(xtrn), args.batch_size):
            x = xtrn[idx]
            loss = kp.losses.bce_with_logits(model(x if noise is None else noise(x)), x, reduction="sum")
            loss = loss * (1.0 / len(x))  # per image, so lambda weighs the penalty against one image's error
            if penalty is not None:
                loss = loss + penalty(x)
            total += step(loss, opt) * len(idx)
        history.append(_mse(model, xtst, xtst))
        print(knet_line("epoch", epoch, "loss", total / len(xtrn), "tst_mse", history[-1]), flush=True)
    return history


def jacobian_norm(encode, x):
    """Mean ||dh/dx||_F^2 over the images ``x``: how much the codes move when the input moves."""
    with kp.no_grad():
        return evaluate(lambda xb: kp.generative.contractive_penalty(encode, xb), x, batch_size=250)


def main(argv=None, prog=None):
    """Train the four autoencoders; returns their test errors, the denoising and the Jacobian comparison."""
    args = parse(build_parser(prog), argv)
    with one_blas_thread():
        return run(args)


def run(args):
    kp.set_seed(args.seed)
    name, xtrn, _, xtst, _ = load_images(args.dataset, args.train, args.test, args.seed)
    shape = xtrn.shape[1:]
    print(f"{name}: {len(xtrn)} training and {len(xtst)} test images of {shape[1]}x{shape[2]}")
    ftrn, ftst = xtrn.reshape(len(xtrn), -1), xtst.reshape(len(xtst), -1)
    n_pixels = ftrn.shape[1]
    result = {"dataset": name}

    dense, _ = dense_autoencoder(n_pixels, args.code)
    result["dense"] = {"test_mse": train(dense, "dense", ftrn, ftst, args)}
    conv = conv_autoencoder(shape)
    result["conv"] = {"test_mse": train(conv, "convolutional", xtrn, xtst, args)}

    def noisy(x):
        return kp.generative.corrupt(x, "gaussian", args.noise)

    denoiser, _ = dense_autoencoder(n_pixels, args.code)
    history = train(denoiser, f"denoising (Gaussian noise, std {args.noise})", ftrn, ftst, args, noise=noisy)
    xnoisy = noisy(ftst)
    den = {"test_mse": history, "noisy_mse": float(np.mean((xnoisy - ftst) ** 2)),
           "denoised_mse": _mse(denoiser, xnoisy, ftst), "plain_on_noisy_mse": _mse(dense, xnoisy, ftst)}
    print(f"on noisy test images, the distance to the clean ones (MSE): noisy input {den['noisy_mse']:.4f}, "
          f"plain autoencoder {den['plain_on_noisy_mse']:.4f}, denoising autoencoder {den['denoised_mse']:.4f}")
    result["denoising"] = den

    code, lam = args.contractive_code, args.contractive
    contract = {"lambda": lam}
    for label, weight in (("plain", 0.0), ("contractive", lam)):
        model, encoder = dense_autoencoder(n_pixels, code, hidden=64)
        penalty = (lambda x, e=encoder, w=weight: kp.generative.contractive_penalty(e, x) * w) if weight else None
        hist = train(model, f"{label} (code of {code}, lambda {weight})", ftrn, ftst, args, penalty=penalty)
        contract[f"mse_{label}"] = hist[-1]
        contract[f"jacobian_{label}"] = jacobian_norm(encoder, ftst)
    print(f"mean ||dh/dx||_F^2 on test images: {contract['jacobian_plain']:.3f} without the penalty, "
          f"{contract['jacobian_contractive']:.3f} with it (test MSE {contract['mse_plain']:.4f} and "
          f"{contract['mse_contractive']:.4f})")
    result["contractive"] = contract

    result["pictures"] = {}
    if not args.no_plot:
        k = 8
        rows = [xtst[:k], reconstruct(dense, ftst[:k]).reshape((k,) + shape), reconstruct(conv, xtst[:k])]
        result["pictures"]["reconstructions"] = saved(kp.plot.image_grid(
            np.concatenate(rows), out_path(args, "reconstructions.png"), ncols=k,
            title="rows: test images; dense; convolutional reconstructions"))
        rows = [ftst[:k], xnoisy[:k], reconstruct(denoiser, xnoisy[:k])]
        result["pictures"]["denoising"] = saved(kp.plot.image_grid(
            np.concatenate(rows).reshape((3 * k,) + shape), out_path(args, "denoising.png"), ncols=k,
            title="rows: clean; noisy; denoised"))
    return result


if __name__ == "__main__":
    raise SystemExit(run_script(main))
