"""Character-level LSTM language model; --generate N writes text with a saved model.

The program itself is knetpy/examples/charlm.py, inside the package, so that an installed knetpy runs it
too: this file and ``knetpy train charlm`` are the same program with the same options.

    python examples/charlm.py --help
    python examples/charlm.py --quick       # a small version in seconds
"""

import sys
from pathlib import Path

from knetpy.examples import charlm
from knetpy.examples._common import run_script

if __name__ == "__main__":
    sys.exit(run_script(charlm.main, prog=f"python examples/{Path(__file__).name}"))
