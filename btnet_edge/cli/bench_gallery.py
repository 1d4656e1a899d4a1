"""btnet-edge bench-gallery: memory and time per query of a gallery of millions of embeddings."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from .options import positive_int


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench-gallery", help="memory and time per query of a large gallery (float32 and float16)",
        description="Enroll N random unit embeddings into a gallery (or reuse --db), then measure for each matrix "
                    "dtype: memory, first load, time per 1-probe query, the reload after one more enrolment by "
                    "another connection (only new rows are read) and a full reload. Prints a table; --json "
                    "writes the figures.")
    p.add_argument("--embeddings", type=positive_int, default=1_000_000, help="gallery size (default 1000000)")
    p.add_argument("--dim", type=positive_int, default=512, help="embedding size (default 512, as IResNet)")
    p.add_argument("--per-identity", type=positive_int, default=10, help="embeddings per person (default 10)")
    p.add_argument("--dtype", choices=("float32", "float16", "both"), default="both", help="matrix dtype(s)")
    p.add_argument("--queries", type=positive_int, default=20, help="timed 1-probe queries (default 20)")
    p.add_argument("--db", type=Path, help="gallery file to create (kept) or reuse; default: a temp file, removed")
    p.add_argument("--json", type=Path, help="write the figures as JSON here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..bench.gallery_scale import compare, fill_gallery, format_table, measure, probe_targets
    from ..safe_io import atomic_write_text, check_file_target

    if args.json is not None:
        check_file_target(args.json, "--json")
    with tempfile.TemporaryDirectory(prefix="btnet-bench-gallery-") as scratch:
        path = args.db or Path(scratch) / "gallery.db"
        if not path.exists():
            fill_gallery(path, args.embeddings, args.dim, args.per_identity, progress=not args.quiet)
        dtypes = ["float32", "float16"] if args.dtype == "both" else [args.dtype]
        with probe_targets(path, max(args.queries, 32), args.dim) as probes:
            results = [measure(path, dtype, probes, args.queries) for dtype in dtypes]
    agreement = compare(results)
    print(format_table(results))
    if agreement:
        print(f"float16 vs float32: top-1 agreement {agreement['top1_agreement']:.3f}, largest score difference "
              f"{agreement['max_score_difference']:.5f}")
    if args.json is not None:
        document = {"results": [{k: v for k, v in r.items() if k != "top1"} for r in results],
                    "float16_vs_float32": agreement, "settings": {k: str(v) for k, v in vars(args).items()
                                                                 if k not in ("run",)}}
        atomic_write_text(args.json, json.dumps(document, indent=2) + "\n", "--json")
    return 0
