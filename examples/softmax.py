"""Softmax classifier on MNIST-format images (kp.grad, minibatch SGD).

The program itself is knetpy/examples/softmax.py, inside the package, so that an installed knetpy runs it
too: this file and ``knetpy train softmax`` are the same program with the same options.

    python examples/softmax.py --help
    python examples/softmax.py --quick       # a small version in seconds
"""

import sys
from pathlib import Path

from knetpy.examples import softmax
from knetpy.examples._common import run_script

if __name__ == "__main__":
    sys.exit(run_script(softmax.main, prog=f"python examples/{Path(__file__).name}"))
