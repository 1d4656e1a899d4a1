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
    p.add_argument("--gallery-dir", type=Path, help="gallery: one subfolder of images per identity")
    p.add_argument("--probes-dir", type=Path, help="probes: one subfolder of images per identity")
    p.add_argument("--survface", type=Path,
                   help="QMUL-SurvFace root: its Face_Identification_Test_Set (gallery, mated_probe, unmated_probe "
                        "and the *_img_ID_pairs.mat files; needs scipy); the images are the faces")
    p.add_argument("--tinyface", type=Path,
                   help="TinyFace root: its Testing_Set (Gallery_Match, Gallery_Distractor, Probe); every probe has a "
                        "mate, so rank-1/5/10/20 rates are reported instead of TPIR at FPIR")
    p.add_argument("--probe-face-px", type=float,
                   help="shrink each probe photo so its face's long side is about this many px (surveillance-like "
                        "probes from ordinary photos); default: as they are")
    p.add_argument("--json", type=Path, help="write the results as JSON here ('-' for stdout)")
    add_eval_runtime_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..evaluation.ident import collect_faces, evaluate_ident, format_table, survface_sets, tinyface_sets
    from ..evaluation.pairs import environment

    if args.probe_face_px is not None and args.probe_face_px < 2:
        raise ConfigError(f"--probe-face-px should be at least 2, found {args.probe_face_px}")
    folders = args.gallery_dir is not None or args.probes_dir is not None
    chosen = [name for name, on in (("--gallery-dir/--probes-dir", folders), ("--survface", args.survface),
                                    ("--tinyface", args.tinyface)) if on]
    if len(chosen) != 1 or (folders and (args.gallery_dir is None or args.probes_dir is None)):
        raise ConfigError("give --gallery-dir and --probes-dir (identity folders of photos), or --survface DIR, or "
                          f"--tinyface DIR; found {', '.join(chosen) or 'none'}")
    if args.probe_face_px is not None and not folders:
        raise ConfigError("--probe-face-px shrinks photos; QMUL-SurvFace and TinyFace probes are small already")
    if args.survface is not None:
        gallery, probes = survface_sets(args.survface)
    elif args.tinyface is not None:
        gallery, probes = tinyface_sets(args.tinyface)
    with recognizer_from_args(args) as recognizer:
        if folders:
            gallery = collect_faces(recognizer, args.gallery_dir, progress=not args.quiet)
            probes = collect_faces(recognizer, args.probes_dir, face_px=args.probe_face_px, progress=not args.quiet)
        result = evaluate_ident(recognizer, gallery, probes, closed_set=args.tinyface is not None)
        env = environment(recognizer, gallery_dir=str(args.gallery_dir), probes_dir=str(args.probes_dir),
                          survface=str(args.survface) if args.survface else None,
                          tinyface=str(args.tinyface) if args.tinyface else None,
                          probe_face_px=args.probe_face_px, **result["counts"])
    print(format_table(result["rows"]))
    write_json({"rows": result["rows"], "env": env}, args.json)
    return 0
