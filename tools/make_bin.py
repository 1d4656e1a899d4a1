#!/usr/bin/env python3
"""Write an insightface-style verification .bin from a folder of identity subfolders (tests and benchmarks).

Each image's main face is detected and aligned at 112, JPEG-encoded, and every same and
different pair among them is listed (seeded order): the file is ``pickle((images, issame))``
of bytes and bools, the layout of insightface's lfw.bin. This is the one pickle the project
writes, and only to make test input in that foreign format; btnet-edge reads it back with
a restricted unpickler.

    python tools/make_bin.py ../shared/fixtures/images/people /tmp/people.bin
"""

from __future__ import annotations

import argparse
import pickle
import random
import sys
from itertools import combinations
from pathlib import Path


def aligned_people(root: str | Path) -> list[tuple[str, object]]:
    """(identity, 112 px aligned face) for each image of root/<identity>/ with a face."""
    from btnet_edge.evaluation.pairs import identity_folders
    from btnet_edge.pipeline.align import align_face
    from btnet_edge.pipeline.detect import create_detector
    from btnet_edge.pipeline.image import read_image

    out = []
    detector = create_detector()
    try:
        for name, files in identity_folders(root).items():
            for path in files:
                detections = detector.detect(read_image(path))
                if detections:
                    best = max(detections, key=lambda d: d.width * d.height)
                    out.append((name, align_face(read_image(path), best.kps, 112)))
    finally:
        detector.close()
    return out


def make_bin(root: str | Path, out: str | Path, seed: int = 0, quality: int = 95) -> tuple[list[bytes], list[bool]]:
    """Write ``out``; returns (images, issame) as written."""
    import cv2

    faces = aligned_people(root)
    pairs = list(combinations(range(len(faces)), 2))
    random.Random(seed).shuffle(pairs)
    encoded = [cv2.imencode(".jpg", face, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes() for _, face in faces]
    images, issame = [], []
    for a, b in pairs:
        images += [encoded[a], encoded[b]]
        issame.append(faces[a][0] == faces[b][0])
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_bytes(pickle.dumps((images, issame), protocol=4))
    return images, issame


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="folder with one subfolder of images per identity")
    parser.add_argument("out", help=".bin file to write")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    images, issame = make_bin(args.root, args.out, args.seed)
    print(f"{args.out}: {len(issame)} pairs, {sum(issame)} same, {len(images)} images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
