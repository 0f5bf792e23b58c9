"""Complete training programs, one per module, run by ``knetpy train NAME`` or ``python examples/NAME.py``.

Each module has ``main(argv=None)``, which parses command-line options (``--help`` lists them), trains,
prints its progress the way Knet's tutorials do, saves a checkpoint and a learning-curve PNG, and
returns its metrics as a dict. ``--quick`` runs a small version in seconds.
"""

from __future__ import annotations

import difflib
import importlib

#: Example name -> what it trains.
EXAMPLES = {
    "housing": "linear regression on the Boston housing data (kp.grad, full batch)",
    "softmax": "softmax classifier on MNIST-format images (kp.grad, minibatches)",
    "mlp": "multi-layer perceptron on MNIST-format images (Sequential, fit)",
    "lenet": "LeNet convolutional network on MNIST-format images (Conv2D, MaxPool2D, fit)",
    "charlm": "character-level LSTM language model on a text; --generate N samples from it",
    "spirals": "linear model against an MLP on the 3-class spirals, with decision boundaries",
    "resnet": "ResNet-20-style network (kp.models) on CIFAR-10, or a synthetic CIFAR-format set when it is missing",
    "reinforce": "REINFORCE with a learned baseline on CartPole-v1 (policy gradient, kp.grad; needs gymnasium)",
    "dqn": "DQN on CartPole-v1: replay buffer, target network, epsilon-greedy, Huber loss (needs gymnasium)",
}


def lookup(package, registry, kind, name):
    """The module ``package.name`` of a program listed in ``registry``; an unknown name raises
    ValueError naming the ``kind`` of program and suggesting the closest name."""
    if name not in registry:
        close = difflib.get_close_matches(str(name), list(registry), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown {kind} {name!r}{hint} ({kind}s: {', '.join(registry)})")
    return importlib.import_module(f"{package}.{name}")


def get(name):
    """The module of example ``name``; an unknown name raises ValueError suggesting the closest."""
    return lookup(__name__, EXAMPLES, "example", name)


def run(name, argv=(), prog=None):
    """Run example ``name`` with command-line arguments ``argv``; its metrics."""
    return get(name).main(list(argv), prog=prog)
