"""btnet-edge eval-ident: open-set 1:N identification for every dispatch policy (QMUL-SurvFace's metrics)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import add_eval_runtime_options, recognizer_from_args, write_json


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval-ident", help="open-set 1:N identification per dispatch policy",
        description="Gallery and probes are folders of identity subfolders; probes whose identity has no gallery "
                    "folder are the unmated set. Each image's main face is detected and its size picks the branch. "
                    "Reports TPIR20 at FPIR 0.3/0.2/0.1 and AUC (and rank-1 TPIR) for every indicator x rounding.")
    p.add_argument("package", type=Path, help="model package folder")
    p.add_argument("--gallery-dir", type=Path, required=True, help="gallery: one subfolder of images per identity")
    p.add_argument("--probes-dir", type=Path, required=True, help="probes: one subfolder of images per identity")
    p.add_argument("--probe-face-px", type=float,
                   help="shrink each probe photo so its face's long side is about this many px (surveillance-like "
                        "probes from ordinary photos); default: as they are")
    p.add_argument("--json", type=Path, help="write the results as JSON here ('-' for stdout)")
    add_eval_runtime_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..evaluation.ident import collect_faces, evaluate_ident, format_table
    from ..evaluation.pairs import environment

    if args.probe_face_px is not None and args.probe_face_px < 2:
        raise ConfigError(f"--probe-face-px should be at least 2, found {args.probe_face_px}")
    with recognizer_from_args(args) as recognizer:
        gallery = collect_faces(recognizer, args.gallery_dir, progress=not args.quiet)
        probes = collect_faces(recognizer, args.probes_dir, face_px=args.probe_face_px, progress=not args.quiet)
        result = evaluate_ident(recognizer, gallery, probes)
        env = environment(recognizer, gallery_dir=str(args.gallery_dir), probes_dir=str(args.probes_dir),
                          probe_face_px=args.probe_face_px, **result["counts"])
    print(format_table(result["rows"]))
    write_json({"rows": result["rows"], "env": env}, args.json)
    return 0
