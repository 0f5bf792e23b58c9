"""The course labs, one module each, run by ``knetpy lab NAME``.

Each module has ``main(argv=None, prog=None)`` like the examples in :mod:`knetpy.examples`: it parses
its options (``--help``; ``--quick`` runs in seconds; ``--out`` is where its pictures and checkpoints
go), prints what it measures and returns its outcome as a dict, which the lab's test checks.
The building blocks a lab uses live in the library (``kp.losses``, ``kp.cluster``, ``kp.data``, ...);
the module only puts them together.
"""

from __future__ import annotations

from .. import lookup

#: Lab name -> what it teaches. Kept in course order.
LABS = {
    "knn": "k-nearest neighbours: L1/L2 distances without loops, k chosen by 5-fold cross-validation",
    "linear": "linear classifiers: multiclass SVM and softmax losses by SGD, weights as class templates",
    "perceptron": "the perceptron rule: converges on linearly separable data, never on XOR",
    "clustering": "k-means with k-means++ against a Gaussian mixture fitted by EM (full covariances)",
    "features": "hand-made image features (HoG, colour histograms) against raw pixels, by a linear classifier",
    "autoencoder": "autoencoders: dense, convolutional, denoising and contractive; reconstructions shown",
    "vae": "a variational autoencoder (reparameterisation, ELBO), latent 2 and 20: samples, interpolations",
    "gan": "a toy GAN learns N(4, 1.25^2): generator and discriminator losses, samples against the target",
    "dcgan": "a small DCGAN on Fashion-MNIST (transposed convolutions, batch norm): sample grids per epoch",
    "siamese": "a siamese net with the contrastive loss: same-digit pairs close, different far",
    "mcdropout": "MC dropout: predictive mean and std, wider away from the training data",
    "transfer": "transfer learning: freeze or fine-tune a pretrained body with per-group rates",
    "augment": "data augmentation: crop, flip, affine, jitter, cutout, mixup, seeded Compose",
    "sequences": "a vanilla RNN against an LSTM on temporal order and echo; truncated BPTT; gradient clipping",
    "transformer": "attention: a transformer encoder learns to sort digits (multi-head attention, positions)",
}


def get(name):
    """The module of lab ``name``; an unknown name raises ValueError suggesting the closest."""
    return lookup(__name__, LABS, "lab", name)


def run(name, argv=(), prog=None):
    """Run lab ``name`` with command-line arguments ``argv``; its outcome."""
    return get(name).main(list(argv), prog=prog)
