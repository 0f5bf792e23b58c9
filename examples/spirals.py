"""Linear model against an MLP on the 3-class spirals, with their decision boundaries.

The program itself is knetpy/examples/spirals.py, inside the package, so that an installed knetpy runs it
too: this file and ``knetpy train spirals`` are the same program with the same options.

    python examples/spirals.py --help
    python examples/spirals.py --quick       # a small version in seconds
"""

import sys
from pathlib import Path

from knetpy.examples import spirals
from knetpy.examples._common import run_script

if __name__ == "__main__":
    sys.exit(run_script(spirals.main, prog=f"python examples/{Path(__file__).name}"))
