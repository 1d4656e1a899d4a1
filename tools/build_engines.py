#!/usr/bin/env python3
"""Build TensorRT engines for a model package: a thin wrapper over ``btnet-edge build``.

    python tools/build_engines.py PKG --target desktop-fp16 [--out DIR]
    python tools/build_engines.py PKG --target jetson-orin-fp16 --dry-run --json plan.json [--trt-version 10.3]

Every option is ``btnet-edge build``'s; see ``python tools/build_engines.py -h``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from btnet_edge.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["build", *sys.argv[1:]]))
