"""Multi-layer perceptron on MNIST-format images (Sequential, compile, fit).

The program itself is knetpy/examples/mlp.py, inside the package, so that an installed knetpy runs it
too: this file and ``knetpy train mlp`` are the same program with the same options.

    python examples/mlp.py --help
    python examples/mlp.py --quick       # a small version in seconds
"""

import sys
from pathlib import Path

from knetpy.examples import mlp
from knetpy.examples._common import run_script

if __name__ == "__main__":
    sys.exit(run_script(mlp.main, prog=f"python examples/{Path(__file__).name}"))
