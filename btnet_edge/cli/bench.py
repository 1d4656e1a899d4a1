"""btnet-edge bench: latency per resolution against the upsample-to-112 baseline, and whole frames."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import ConfigError
from .options import add_runtime_options, parse_resolutions


def parse_batches(text: str) -> list[int]:
    """'1,16' -> [1, 16] with a clear error."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--batch takes comma-separated positive integers like 1,16; found {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise ConfigError(f"--batch takes comma-separated positive integers like 1,16; found {text!r}")
    return values


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench", help="latency per resolution vs upsampling to 112; time per stage on frames",
        description="For each resolution and batch size, time the BTNet path (branch + trunk, or the fused graph) "
                    "and the baseline (faces upsampled to 112 px, full trunk) on the same backend and threads, "
                    "interleaved. By default both start from preprocessed tensors: network cost, as the paper "
                    "compares; --from-crops times from r px uint8 crops, resize and preprocessing included. "
                    "Latency does not depend on the weights: a random-weight package times the same.")
    p.add_argument("package", type=Path, help="model package folder")
    p.add_argument("--resolutions", help="comma-separated, e.g. 7,14,28,112 (default: all of the package's)")
    p.add_argument("--batch", default="1,16", help="batch sizes, comma-separated (default 1,16)")
    p.add_argument("--mode", choices=("shared", "fused", "both"), default="both",
                   help="shared: branch graph + package trunk; fused: per-resolution graphs (export --fused); "
                        "both (default; fused rows skipped when the package has no fused graphs)")
    p.add_argument("--json", type=Path, help="write the report as JSON here ('-' for stdout)")
    p.add_argument("--plot", type=Path, help="write a PNG of latency per resolution (needs matplotlib)")
    timing = p.add_argument_group("timing")
    timing.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    timing.add_argument("--repeats", type=int, default=5, help="timed rounds at least (default 5)")
    timing.add_argument("--min-time-s", type=float, default=1.0,
                        help="keep repeating until each case has this many seconds of samples (default 1.0)")
    timing.add_argument("--max-repeats", type=int, default=50,
                        help="stop here even if the median is still moving (default 50)")
    timing.add_argument("--max-block-s", type=float, default=30.0,
                        help="no rounds beyond --repeats once a resolution x batch block has run this long "
                             "(default 30)")
    timing.add_argument("--from-crops", action="store_true",
                        help="time from r px uint8 crops: preprocessing, and the baseline's resize, included")
    frames = p.add_argument_group("frames")
    frames.add_argument("--frames", nargs="+", metavar="IMAGE_OR_VIDEO",
                        help="also run Recognizer.get on these images, folders or videos: time per stage")
    frames.add_argument("--max-frames", type=int, default=100, help="frames per video (default 100)")
    frames.add_argument("--mixed-faces", type=int, default=2,
                        help="faces per resolution in the synthetic mixed frame (default 2)")
    frames.add_argument("--no-mixed", action="store_true", help="skip the synthetic mixed-resolution frame")
    frames.add_argument("--no-compare", action="store_true",
                        help="time only the default: no coarse-only (--min-face 0) run, no insightface run")
    frames.add_argument("--peer-detector", type=Path, metavar="SCRFD_ONNX",
                        help="also time insightface's own detector (this SCRFD file, det_size 640; needs the peer "
                             "extra) with the same recognizer on the same frames")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_runtime_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..bench.env import describe_environment, physical_cores
    from ..bench.frames import add_ratios, bench_frames, bench_mixed
    from ..bench.peer import bench_peer
    from ..bench.per_resolution import bench_resolutions, check_request
    from ..bench.report import format_env, format_frames, format_rows, plot_rows, write_json
    from ..bench.timing import TimingPlan
    from ..package.loader import load_package
    from ..pipeline.runner import backend_factory

    plan = TimingPlan(warmup=args.warmup, repeats=args.repeats, min_time_s=args.min_time_s,
                      max_repeats=max(args.max_repeats, args.repeats), max_block_s=args.max_block_s)
    if args.mixed_faces < 1:
        raise ConfigError(f"--mixed-faces should be at least 1, found {args.mixed_faces}")
    package = load_package(args.package)
    manifest = package.manifest
    # The same explicit thread count for every path: 0 would let each session pick its own.
    args.threads = args.threads or physical_cores()
    resolutions = parse_resolutions(args.resolutions) if args.resolutions else sorted(manifest.resolutions)
    batches = parse_batches(args.batch)
    asked = ["shared", "fused"] if args.mode == "both" else [args.mode]
    modes = check_request(package, resolutions, batches, asked)
    make_backend = backend_factory(package, args.backend, args.device, args.threads, fp16=args.fp16,
                                   engines=args.engines)
    settings = {"warmup": plan.warmup, "repeats": plan.repeats, "min_time_s": plan.min_time_s,
                "max_repeats": plan.max_repeats, "max_block_s": plan.max_block_s,
                "timed_from": "crops" if args.from_crops else "tensors",
                "resolutions": resolutions, "batches": batches, "modes": modes}
    env = describe_environment(manifest, args.backend, args.device, args.threads, settings)
    rows = bench_resolutions(package, make_backend, resolutions, batches, modes, plan, args.from_crops,
                             progress=not args.quiet)
    frames: list[dict] = []
    if "fused" in modes and not args.no_mixed:
        mixed = bench_mixed(package, make_backend, plan, args.mixed_faces, from_crops=args.from_crops)
        if mixed is not None:
            frames.append(mixed)
    if args.frames:
        from .options import recognizer_from_args

        with recognizer_from_args(args) as recognizer:
            staged = bench_frames(recognizer, args.frames, repeats=plan.repeats, max_frames=args.max_frames,
                                  progress=not args.quiet)
        if not args.no_compare:
            compared = {}
            if recognizer.detector.plan.min_face_px:  # the same frames with one coarse pass: what the default costs
                coarse_args = argparse.Namespace(**{**vars(args), "min_face": 0.0})
                with recognizer_from_args(coarse_args) as coarse:
                    compared["coarse_only"] = bench_frames(coarse, args.frames, repeats=plan.repeats,
                                                           max_frames=args.max_frames, progress=not args.quiet)
            peer = bench_peer(lambda: recognizer_from_args(args), args.peer_detector, args.frames, plan.repeats,
                              args.max_frames)
            if peer is not None:
                compared["insightface"] = peer
            add_ratios(staged, compared)
        frames[:0] = staged
    document = {"env": env, "rows": [row.to_json() for row in rows], "frames": frames}
    to_stdout = args.json is not None and str(args.json) == "-"
    if not to_stdout:
        print(format_env(env))
        print(format_rows(rows))
        if frames:
            print(format_frames(frames))
    if args.json is not None:
        if to_stdout:
            print(json.dumps(document, indent=2))
        else:
            write_json(document, args.json)
    if args.plot is not None:
        plot_rows(rows, args.plot, title=format_env(env))
    return 0
