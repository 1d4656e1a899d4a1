"""btnet-edge run: recognize faces in images, folders, videos or a camera; JSON and annotated output.

Video and camera frames go through a Tracker (pipeline/track.py) with the stream detection
schedule (pipeline/stream.py): faces get track ids and the track's identity, and a face is
reported once its track has two detections; the summary says how long a new face may wait.
With no ``--json`` file a short summary is printed instead of the results.
Work survives bad inputs: every readable input is processed, each unreadable one is
reported (stderr and the JSON's ``errors``) and the exit status is non-zero at the
end; on Ctrl-C or a failure the results so far are still written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import BtnetError, ConfigError, InputImageError
from .options import (
    add_runtime_options,
    gallery_model_id,
    gallery_target,
    positive_int,
    recognizer_from_args,
    write_json,
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("run", help="recognize faces in images, videos or a camera",
                              description="Detect, dispatch by size, embed and (with --gallery) identify faces.")
    p.add_argument("package", type=Path, help="model package folder")
    p.add_argument("inputs", nargs="+", help="images, folders, video files, or a camera index (0)")
    p.add_argument("--gallery", type=gallery_target,
                   help="gallery to identify against: a file, or postgresql://user@host/db (opened read-only)")
    p.add_argument("--json", type=Path, help="write results as JSON here ('-' for stdout)")
    p.add_argument("--jsonl", type=Path, help="stream results as JSON lines here, one per frame, flushed as it goes "
                                              "('-' for stdout); a new file (or --force)")
    p.add_argument("--draw", type=Path, help="write annotated images (and videos) into this folder (not one "
                                             "holding an input)")
    p.add_argument("--force", action="store_true", help="with --draw or --jsonl: replace the outputs of an earlier run")
    p.add_argument("--max-frames", type=positive_int, help="frames per video (cameras default to 100)")
    p.add_argument("--stride", type=positive_int, default=1, help="use every Nth video frame")
    p.add_argument("--on-error", choices=("continue", "stop"), default="continue",
                   help="an unreadable input: report it and go on (default), or stop there")
    p.add_argument("--no-track", action="store_true", help="video and camera frames each on their own: no track "
                                                           "ids, no track identities")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_runtime_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from ..gallery import Gallery
    from ..pipeline.draw import draw_faces
    from ..pipeline.sources import count_frames, expand_inputs, iter_frames
    from ..pipeline.stream import video_tracker
    from ..safe_io import check_file_target, refuse_inputs_as_target
    from .drawn import DrawnOutputs
    from .run_output import JsonLines, RunSummary

    if args.json is not None and str(args.json) != "-":
        check_file_target(args.json, "--json")
        refuse_inputs_as_target(args.json, [*args.inputs, args.package], "--json")
    if args.jsonl is not None and str(args.jsonl) != "-":  # checked before the models load; opened below
        check_file_target(args.jsonl, "--jsonl", force=args.force)
        refuse_inputs_as_target(args.jsonl, [*args.inputs, args.package], "--jsonl")
    if args.jsonl is not None and args.json is not None and "-" == str(args.json) == str(args.jsonl):
        raise ConfigError("--json - and --jsonl - would mix on stdout; send one of them to a file")
    drawn = DrawnOutputs(args.draw, args.inputs, args.force) if args.draw else None
    gallery = None
    if args.gallery is not None:
        from ..package.loader import read_manifest

        manifest = read_manifest(args.package)
        gallery = Gallery(args.gallery, embedding_size=manifest.embedding_size, create=False, readonly=True,
                          model_id=gallery_model_id(manifest))
    recognizer = recognizer_from_args(args, gallery=gallery)
    results: list[dict] = []
    errors: list[dict] = []
    document: dict = {"images": results, "errors": errors}
    summary = RunSummary()
    lines = None
    try:
        lines = JsonLines(args.jsonl, [*args.inputs, args.package], args.force) if args.jsonl is not None else None
        items = []
        for item in args.inputs:
            try:
                items.extend(expand_inputs([item]))
            except InputImageError as exc:
                _failed(errors, item, exc, args.on_error, lines)
        total = _count(items, args, count_frames)
        bar = tqdm(total=total, unit="frame", disable=args.quiet, desc="run")
        for item in items:
            tracker = None  # one per video or camera: tracks never cross sources
            try:
                for frame in iter_frames([item], args.max_frames, args.stride):
                    if frame.index is not None and not args.no_track:  # video: the stream schedule, tracks
                        tracker = tracker or video_tracker(recognizer, frame_step=args.stride)
                        faces = tracker.get(frame.image)
                        summary.stream(frame.source, tracker.stream, frame.image.shape[:2], frame.fps)
                    else:
                        faces = recognizer.get(frame.image)
                    entry = {"path": frame.source, "faces": [f.to_json() for f in faces]}
                    if frame.index is not None:
                        entry["frame"] = frame.index
                    results.append(entry)
                    summary.add(frame.source, faces)
                    if lines is not None:
                        lines.write(entry)
                    if drawn is not None:
                        drawn.write(frame.source, frame.index, draw_faces(frame.image, faces), frame.fps)
                    bar.update()
            except InputImageError as exc:  # unreadable, missing, or over the pixel limit
                _failed(errors, item, exc, args.on_error, lines)
        bar.close()
    except KeyboardInterrupt:
        document["stopped"] = "interrupted (Ctrl-C)"
        raise
    except BtnetError as exc:
        document["stopped"] = str(exc)
        raise
    finally:
        try:
            if drawn is not None:
                drawn.close()
        finally:
            recognizer.close()
            if gallery is not None:
                gallery.close()
            if lines is not None:
                lines.close()
            write_json(document, args.json)
            to_stdout = "-" in (str(args.json), str(args.jsonl))
            print(summary.format(), file=sys.stderr if to_stdout else sys.stdout, flush=True)
    if errors:
        where = "the JSON's errors" if args.json not in (None, Path("-")) else "the errors above"
        raise InputImageError(f"{len(errors)} input(s) could not be read (see {where}); the results of the "
                              "others were written")
    return 0


def _failed(errors: list[dict], item: str, exc: BtnetError, on_error: str, lines=None) -> None:
    errors.append({"path": item, "error": str(exc)})
    if lines is not None:
        lines.write(errors[-1])
    print(f"btnet-edge run: skipped {item}: {exc}", file=sys.stderr, flush=True)
    if on_error == "stop":
        raise InputImageError(f"stopped at {item} (--on-error stop); results so far were written")


def _count(items: list[str], args: argparse.Namespace, count_frames) -> int | None:
    try:
        return count_frames(items, args.max_frames, args.stride)
    except BtnetError:
        return None
