"""btnet-edge eval-track: right and wrong names per face size on a synthetic walking clip, per frame vs per track."""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import add_runtime_options, positive_int, recognizer_from_args, write_json


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval-track", help="track identities on a synthetic clip of people walking away and approaching",
        description="Make a 720p clip from photos (people/<name>/: the first photo with a large face walks, "
                    "faces 96 -> 8 px or 8 -> 96 px; the other photos are enrolled), run the Recognizer and a "
                    "Tracker on it, and report per face-size bucket the share of right and wrong names from each "
                    "frame's own match and from the track's aggregated identity, and track ids per person.")
    p.add_argument("package", type=Path, help="model package folder")
    p.add_argument("--people", type=Path, required=True, help="folder of <name>/ subfolders with two or more photos")
    p.add_argument("--frames", type=positive_int, default=80, help="clip length in frames (default 80)")
    p.add_argument("--seed", type=int, default=0, help="seed of the clip (default 0)")
    p.add_argument("--no-embeddings", action="store_true",
                   help="associate by position and size only (to compare with the default, which adds embeddings)")
    p.add_argument("--keep-best", type=positive_int, default=8,
                   help="observations in a track's aggregate: the heaviest N (default 8; a large N averages all)")
    p.add_argument("--save-clip", type=Path, help="also write the clip as an MP4 video here (a new file)")
    p.add_argument("--json", type=Path, help="write the report as JSON here ('-' for stdout)")
    p.add_argument("--plot", type=Path, help="write a PNG of right names per size bucket, per frame vs track")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_runtime_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..evaluation.pairs import environment
    from ..evaluation.track_eval import evaluate_tracking, format_table
    from ..safe_io import check_file_target

    for target, what in ((args.json, "--json"), (args.plot, "--plot")):
        if target is not None and str(target) != "-":
            check_file_target(target, what)
    writer = None
    if args.save_clip is not None:
        from .drawn import ClipWriter

        writer = ClipWriter(args.save_clip)
    try:
        with recognizer_from_args(args) as recognizer:
            result = evaluate_tracking(recognizer, args.people, args.frames, args.seed,
                                       {"use_embeddings": not args.no_embeddings, "keep_best": args.keep_best},
                                       progress=not args.quiet,
                                       on_frame=None if writer is None else lambda frame, _faces: writer.write(
                                           frame.image))
            env = environment(recognizer, people=str(args.people), frames=args.frames, seed=args.seed,
                              associate_with_embeddings=not args.no_embeddings, keep_best=args.keep_best)
    finally:
        if writer is not None:
            writer.close()
    print(format_table(result))
    write_json({**result, "env": env}, args.json)
    if args.plot is not None:
        from ..evaluation.plots import plot_track_buckets

        plot_track_buckets(result, args.plot)
    return 0
