"""Linear regression on the Boston housing data (kp.grad, full-batch gradient descent).

The program itself is knetpy/examples/housing.py, inside the package, so that an installed knetpy runs it
too: this file and ``knetpy train housing`` are the same program with the same options.

    python examples/housing.py --help
    python examples/housing.py --quick       # a small version in seconds
"""

import sys
from pathlib import Path

from knetpy.examples import housing
from knetpy.examples._common import run_script

if __name__ == "__main__":
    sys.exit(run_script(housing.main, prog=f"python examples/{Path(__file__).name}"))
