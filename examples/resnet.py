"""ResNet-20-style network on CIFAR-10-format images (kp.models.resnet20, fit).

The program itself is knetpy/examples/resnet.py, inside the package, so that an installed knetpy runs it
too: this file and ``knetpy train resnet`` are the same program with the same options.

    python examples/resnet.py --help
    python examples/resnet.py --quick       # a small version in seconds
"""

import sys
from pathlib import Path

from knetpy.examples import resnet
from knetpy.examples._common import run_script

if __name__ == "__main__":
    sys.exit(run_script(resnet.main, prog=f"python examples/{Path(__file__).name}"))
