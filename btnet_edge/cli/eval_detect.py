"""btnet-edge eval-detect: detection recall and precision per face size, on WIDER FACE or generated frames."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ConfigError
from .options import add_backend_options, add_detector_options, detector_from_args, write_json

_DEFAULT_SYNTH_SIZES = "8,10,12,14,16,20,24,28,40,64"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval-detect", help="detection recall/precision per face-size bucket",
        description="Run the detector with its detection plan over annotated images and report recall (per "
                    "ground-truth size bucket <10, 10-16, 16-24, 24-40, 40+ px), precision (per detection size), "
                    "false boxes and time per image and per pass. Ground truth: a WIDER FACE bbx_gt file "
                    "(--annotations, --images), or frames generated from photos with faces pasted at known sizes "
                    "(--synth).")
    source = p.add_argument_group("ground truth")
    source.add_argument("--annotations", type=Path, help="WIDER FACE-format file, e.g. wider_face_val_bbx_gt.txt")
    source.add_argument("--images", type=Path, help="folder the annotation paths are relative to (WIDER_val/images)")
    source.add_argument("--synth", nargs="+", metavar="PHOTOS",
                        help="generate frames instead: faces cut from these photos or folders (searched "
                             "recursively), pasted at known sizes on plain backgrounds")
    source.add_argument("--clip", nargs="+", metavar="PHOTOS",
                        help="video instead: a generated clip of people (faces cut from these photos) entering at "
                             "different times and walking across --background at 10-30 px; reports recall per size "
                             "for faces present 10+ frames, frames to first detection and false boxes per frame for "
                             "the stream schedule, the still plan on every frame and one coarse pass")
    source.add_argument("--background", type=Path, help="with --clip: the real photo the people walk across")
    source.add_argument("--clip-frames", type=int, default=150, help="with --clip: frames (default 150)")
    source.add_argument("--people", type=int, default=8, help="with --clip: people crossing (default 8)")
    source.add_argument("--modes", default="stream,coarse-only",
                        help="with --clip: comma-separated, of stream (the default on video), still (the full "
                             "still-image plan on every frame) and coarse-only (default stream,coarse-only)")
    source.add_argument("--count", type=int, default=20, help="generated frames (default 20)")
    source.add_argument("--seed", type=int, default=0, help="seed of the generated frames (default 0)")
    source.add_argument("--frame-size", default="1280x720", help="generated frame size WxH (default 1280x720)")
    source.add_argument("--face-sizes", default=_DEFAULT_SYNTH_SIZES,
                        help="face sizes pasted, long side in px (default 8,10,12,14,16,20,24,28,40,64; with "
                             "--clip: one per person, cycling, default 10,12,14,16,20,24,28,30)")
    source.add_argument("--save", type=Path,
                        help="also write the generated frames and their WIDER-format annotations into this new folder "
                             "(with --clip: the clip as this new .avi file, 30 frames/s, for bench --frames)")
    p.add_argument("--iou", type=float, default=0.5, help="IoU for a hit (default 0.5, as WIDER FACE)")
    p.add_argument("--json", type=Path, help="write the report as JSON here ('-' for stdout)")
    p.add_argument("--plot", type=Path, help="write a PNG of recall and precision per size bucket")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_backend_options(p)
    add_detector_options(p)
    p.set_defaults(run=run)


def _parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--frame-size takes WxH like 1280x720, found {text!r}") from None
    if width < 64 or height < 64:
        raise ConfigError(f"--frame-size should be at least 64x64, found {text!r}")
    return width, height


def _parse_sizes(text: str) -> list[float]:
    try:
        sizes = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--face-sizes takes numbers like 8,10,14,20, found {text!r}") from None
    if not sizes or min(sizes) < 2:
        raise ConfigError(f"--face-sizes should be px values of at least 2, found {text!r}")
    return sizes


def run(args: argparse.Namespace) -> int:
    from ..evaluation.detection import evaluate_detection, format_table, plot_buckets, read_wider

    if not 0.0 < args.iou <= 1.0:
        raise ConfigError(f"--iou should be in (0, 1], found {args.iou}")
    if sum(x is not None for x in (args.annotations, args.synth, args.clip)) != 1:
        raise ConfigError("give one of --annotations FILE --images DIR (WIDER FACE format), --synth PHOTOS or "
                          "--clip PHOTOS --background PHOTO")
    if args.clip is not None:
        return _run_clip(args)
    if args.plot is not None:
        from .._deps import require

        require("matplotlib", extra="plot")
    detector = detector_from_args(args)
    with detector:
        if args.annotations is not None:
            if args.images is None:
                raise ConfigError("--annotations needs --images, the folder its image paths are relative to")
            truths = read_wider(args.annotations, args.images)
            items = ((_read(t.path), t) for t in truths)
            described = {"annotations": str(args.annotations), "images": str(args.images)}
            total = len(truths)
        else:
            items, described = _synth_items(args)
            total = args.count
        result = evaluate_detection(detector, items, total=total, iou_threshold=args.iou, progress=not args.quiet)
    plan = detector.plan
    result["env"] = {"detector": detector.name, "score_threshold": detector.score_threshold,
                     "plan": {"det_size": plan.det_size, "min_face_px": plan.min_face_px, "upscale": plan.upscale,
                              "tile": plan.tile, "max_side": plan.max_side}, **described}
    print(format_table(result))
    write_json(result, args.json)
    if args.plot is not None:
        plot_buckets(result, args.plot, title=f"{detector.name}, min_face_px={plan.min_face_px}, "
                                              f"det_size={plan.det_size}")
    return 0


def _read(path: Path):
    from ..pipeline.image import read_image

    return read_image(path)


def _synth_items(args: argparse.Namespace):
    import cv2
    import numpy as np

    from ..evaluation.detection import GroundTruth, write_wider
    from ..evaluation.synth_frames import collect_source_faces, synth_frames

    if args.count < 1:
        raise ConfigError(f"--count should be at least 1, found {args.count}")
    size, sizes = _parse_size(args.frame_size), _parse_sizes(args.face_sizes)
    if args.save is not None and args.save.exists():
        raise ConfigError(f"--save {args.save} already exists; name a new folder (nothing is overwritten)")
    faces = collect_source_faces(args.synth)
    if not faces:
        raise ConfigError(f"no face of at least 48 px found in {' '.join(args.synth)}; give photos with clear faces")
    described = {"synth": list(args.synth), "count": args.count, "seed": args.seed, "frame_size": list(size),
                 "face_sizes_px": sizes, "source_faces": len(faces),
                 "source_photos": len({f.source for f in faces})}

    def generate():
        saved = []
        staging = None
        if args.save is not None:
            staging = args.save.with_name(args.save.name + ".partial")
            staging.mkdir(parents=True, exist_ok=True)
        for index, frame in enumerate(synth_frames(faces, args.count, seed=args.seed, face_sizes_px=sizes,
                                                   frame_size=size)):
            name = f"frame_{index:04d}.png"
            boxes = np.concatenate([frame.boxes, frame.ignore])  # neighbours pasted along: neither hit nor false
            ignored = np.arange(len(boxes)) >= len(frame.boxes)
            if staging is not None:
                cv2.imwrite(str(staging / name), frame.image)
                saved.append((name, boxes, ignored))
            yield frame.image, GroundTruth(Path(name), boxes, ignored)
        if staging is not None:
            write_wider(saved, staging / "annotations.txt")
            staging.rename(args.save)

    return generate(), described


CLIP_MODES = ("stream", "still", "coarse-only")


def _run_clip(args: argparse.Namespace) -> int:
    """Video: the generated walking clip under each mode (evaluation/stream_eval.py)."""
    from dataclasses import replace

    import numpy as np

    from ..evaluation.stream_clip import background_frame, plan_walkers, stream_clip
    from ..evaluation.stream_eval import evaluate_stream, format_stream_table, stream_mode
    from ..evaluation.synth_frames import collect_source_faces
    from ..pipeline.stream import StreamDetector

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(modes) - set(CLIP_MODES))
    if unknown or not modes:
        raise ConfigError(f"--modes takes a comma-separated list of {', '.join(CLIP_MODES)}; found {args.modes!r}")
    if args.background is None:
        raise ConfigError("--clip needs --background PHOTO, the real scene the people walk across")
    if args.clip_frames < 10 or args.people < 1:
        raise ConfigError(f"--clip-frames should be at least 10 and --people at least 1, found {args.clip_frames} "
                          f"and {args.people}")
    size = _parse_size(args.frame_size)
    if args.save is not None and (args.save.exists() or args.save.suffix.lower() != ".avi"):
        raise ConfigError(f"--save {args.save}: with --clip name a new .avi file (nothing is overwritten)")
    background = background_frame(_read(args.background), size)
    faces = collect_source_faces(args.clip)
    if not faces:
        raise ConfigError(f"no face of at least 48 px found in {' '.join(args.clip)}; give photos with clear faces")
    sizes = _parse_sizes(args.face_sizes) if args.face_sizes != _DEFAULT_SYNTH_SIZES else None
    walkers = plan_walkers(faces, args.people, args.clip_frames, size, seed=args.seed,
                           **({"face_sizes_px": sizes} if sizes else {}))
    detector = detector_from_args(args)
    coarse = detector_from_args(args) if "coarse-only" in modes else None
    if coarse is not None:
        coarse.plan = replace(coarse.plan, min_face_px=None)
    with detector:
        ignore = np.array([d.bbox for d in detector.detect(background)], np.float32).reshape(-1, 4)
        runs = {}
        for mode in modes:
            if mode == "coarse-only":
                runs[mode] = stream_mode(coarse, stream=False)
            else:
                runs[mode] = stream_mode(detector, stream=mode == "stream")
        frames = stream_clip(background, walkers, args.clip_frames, ignore, seed=args.seed)
        if args.save is not None:
            frames = _saved_clip(frames, args.save, size)
        result = evaluate_stream(frames, runs, {k: w.size_px for k, w in enumerate(walkers)}, total=args.clip_frames,
                                 iou_threshold=args.iou, progress=not args.quiet)
        schedule = StreamDetector(detector).describe(size[1], size[0])
    if coarse is not None:
        coarse.close()
    plan = detector.plan
    result["env"] = {"detector": detector.name, "score_threshold": detector.score_threshold,
                     "plan": {f: getattr(plan, f) for f in ("det_size", "min_face_px", "upscale", "tile", "max_side",
                                                             "second_look", "face_cues", "stream_budget")},
                     "clip": list(args.clip), "background": str(args.background), "frames": args.clip_frames,
                     "people": args.people, "seed": args.seed, "frame_size": list(size),
                     "face_sizes_px": [w.size_px for w in walkers], "background_faces_ignored": len(ignore),
                     "stream_schedule": schedule}
    print(format_stream_table(result))
    print(f"stream schedule: {schedule}")
    write_json(result, args.json)
    return 0


def _saved_clip(frames, target: Path, size: tuple[int, int], fps: float = 30.0):
    """The frames, also written to ``target`` (MJPG .avi, under a temporary name renamed at the end)."""
    import cv2

    staging = target.with_name(target.stem + ".partial.avi")
    writer = cv2.VideoWriter(str(staging), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    if not writer.isOpened():
        raise ConfigError(f"cannot write {staging}: OpenCV has no MJPG writer here")
    try:
        for frame in frames:
            writer.write(frame.image)
            yield frame
    finally:
        writer.release()
    staging.rename(target)
