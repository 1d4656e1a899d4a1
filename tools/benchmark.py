#!/usr/bin/env python3
"""Benchmark a model package: a thin wrapper over ``btnet-edge bench``.

    python tools/benchmark.py PKG                                   # 7/14/28/112 px, batch 1 and 16
    python tools/benchmark.py PKG --batch 16 --json bench.json --plot bench.png
    python tools/benchmark.py PKG --frames scenes/ video.mp4        # time per stage on real frames

Every option is ``btnet-edge bench``'s; see ``python tools/benchmark.py -h``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from btnet_edge.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
