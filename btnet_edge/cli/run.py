"""btnet-edge run: recognize faces in images, folders, videos or a camera; JSON and annotated output."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2

from .options import add_runtime_options, gallery_model_id, recognizer_from_args


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("run", help="recognize faces in images, videos or a camera",
                              description="Detect, dispatch by size, embed and (with --gallery) identify faces.")
    p.add_argument("package", type=Path, help="model package folder")
    p.add_argument("inputs", nargs="+", help="images, folders, video files, or a camera index (0)")
    p.add_argument("--gallery", type=Path, help="gallery database to identify against")
    p.add_argument("--json", type=Path, help="write results as JSON here ('-' for stdout)")
    p.add_argument("--draw", type=Path, help="write annotated images (and videos) into this folder")
    p.add_argument("--max-frames", type=int, help="frames per video (cameras default to 100)")
    p.add_argument("--stride", type=int, default=1, help="use every Nth video frame")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_runtime_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from ..pipeline.draw import draw_faces
    from ..pipeline.gallery import Gallery
    from ..pipeline.sources import count_frames, iter_frames

    gallery = None
    if args.gallery is not None:
        from ..package.loader import read_manifest

        manifest = read_manifest(args.package)
        gallery = Gallery(args.gallery, embedding_size=manifest.embedding_size, create=False,
                          model_id=gallery_model_id(manifest))
    recognizer = recognizer_from_args(args, gallery=gallery)
    results: list[dict] = []
    writers: dict[str, cv2.VideoWriter] = {}
    if args.draw:
        args.draw.mkdir(parents=True, exist_ok=True)
    total = count_frames(args.inputs, args.max_frames, args.stride)
    try:
        for frame in tqdm(iter_frames(args.inputs, args.max_frames, args.stride), total=total, unit="frame",
                          disable=args.quiet, desc="run"):
            faces = recognizer.get(frame.image)
            entry = {"path": frame.source, "faces": [f.to_json() for f in faces]}
            if frame.index is not None:
                entry["frame"] = frame.index
            results.append(entry)
            if args.draw:
                _write_drawn(args.draw, frame, draw_faces(frame.image, faces), writers)
    finally:
        for writer in writers.values():
            writer.release()
        recognizer.close()
        if gallery is not None:
            gallery.close()
    document = {"images": results}
    text = json.dumps(document, indent=2)
    if args.json is None or str(args.json) == "-":
        print(text)
    else:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0


def _write_drawn(folder: Path, frame, drawn, writers: dict) -> None:
    name = Path(frame.source).name if not frame.source.isdigit() else f"camera{frame.source}.mp4"
    if frame.index is None:
        cv2.imwrite(str(folder / name), drawn)
        return
    target = folder / (Path(name).stem + ".annotated.mp4")
    if str(target) not in writers:
        h, w = drawn.shape[:2]
        writers[str(target)] = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (w, h))
    writers[str(target)].write(drawn)
