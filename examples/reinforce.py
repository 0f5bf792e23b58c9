"""REINFORCE with a learned baseline on CartPole-v1 (policy gradient through kp.grad; needs gymnasium).

The program itself is knetpy/examples/reinforce.py, inside the package, so that an installed knetpy runs it
too: this file and ``knetpy train reinforce`` are the same program with the same options.

    python examples/reinforce.py --help
    python examples/reinforce.py --quick       # a small version in seconds
"""

import sys
from pathlib import Path

from knetpy.examples import reinforce
from knetpy.examples._common import run_script

if __name__ == "__main__":
    sys.exit(run_script(reinforce.main, prog=f"python examples/{Path(__file__).name}"))
