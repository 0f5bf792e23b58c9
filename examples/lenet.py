"""LeNet convolutional network on MNIST-format images (Conv2D, MaxPool2D, fit).

The program itself is knetpy/examples/lenet.py, inside the package, so that an installed knetpy runs it
too: this file and ``knetpy train lenet`` are the same program with the same options.

    python examples/lenet.py --help
    python examples/lenet.py --quick       # a small version in seconds
"""

import sys
from pathlib import Path

from knetpy.examples import lenet
from knetpy.examples._common import run_script

if __name__ == "__main__":
    sys.exit(run_script(lenet.main, prog=f"python examples/{Path(__file__).name}"))
