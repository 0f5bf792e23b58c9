"""DQN on CartPole-v1 (replay buffer, target network, epsilon-greedy, Huber loss; needs gymnasium).

The program itself is knetpy/examples/dqn.py, inside the package, so that an installed knetpy runs it
too: this file and ``knetpy train dqn`` are the same program with the same options.

    python examples/dqn.py --help
    python examples/dqn.py --quick       # a small version in seconds
"""

import sys
from pathlib import Path

from knetpy.examples import dqn
from knetpy.examples._common import run_script

if __name__ == "__main__":
    sys.exit(run_script(dqn.main, prog=f"python examples/{Path(__file__).name}"))
