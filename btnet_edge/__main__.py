"""python -m btnet_edge: the same as the btnet-edge command."""

import sys

from .cli.main import main

if __name__ == "__main__":
    sys.exit(main())
