"""btnet-edge bench-gallery: exact search against the approximate index on a gallery of millions of embeddings."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from .options import positive_int


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench-gallery", help="query time, recall@1, memory and build time of exact and approximate gallery search",
        description="Enroll N random unit embeddings into a gallery (or reuse --db), then measure for each --index: "
                    "build time (first load), memory, p50/p99 time of 1-probe queries, recall@1 against exact search "
                    "and the reload after one more enrolment by another connection. Prints a table; --json writes "
                    "the figures.")
    p.add_argument("--embeddings", type=positive_int, default=1_000_000, help="gallery size (default 1000000)")
    p.add_argument("--dim", type=positive_int, default=512, help="embedding size (default 512, as IResNet)")
    p.add_argument("--per-identity", type=positive_int, default=10, help="embeddings per person (default 10)")
    p.add_argument("--index", choices=("exact", "ann", "both"), default="both",
                   help="which search to measure (recall@1 needs exact in the same run: both)")
    p.add_argument("--dtype", choices=("float32", "float16"), default="float32", help="matrix dtype")
    p.add_argument("--queries", type=positive_int, default=100, help="timed 1-probe queries (default 100)")
    p.add_argument("--probes", type=positive_int, default=300, help="probes whose top-1 gives recall@1 (default 300)")
    p.add_argument("--db", type=Path, help="gallery file to create (kept) or reuse; default: a temp file, removed")
    p.add_argument("--json", type=Path, help="write the figures as JSON here")
    p.add_argument("--libraries", action="store_true",
                   help="instead: FAISS against usearch (HNSW graphs on --hnsw-embeddings rows, sign-code scans on "
                        "--embeddings rows) on random vectors, as the approximate index was chosen (needs usearch)")
    p.add_argument("--hnsw-embeddings", type=positive_int, default=100_000,
                   help="rows of the HNSW builds of --libraries (default 100000: each build takes minutes)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..bench.gallery_scale import add_recall, fill_gallery, format_table, measure, probe_targets
    from ..safe_io import atomic_write_text, check_file_target

    if args.json is not None:
        check_file_target(args.json, "--json")
    if args.libraries:
        return _libraries(args)
    indexes = ["exact", "ann"] if args.index == "both" else [args.index]
    with tempfile.TemporaryDirectory(prefix="btnet-bench-gallery-") as scratch:
        path = args.db or Path(scratch) / "gallery.db"
        if not path.exists():
            fill_gallery(path, args.embeddings, args.dim, args.per_identity, progress=not args.quiet)
        with probe_targets(path, args.probes, args.dim) as probes:
            results = [measure(path, index, probes, args.queries, args.dtype) for index in indexes]
        add_recall(results, probes)
    print(format_table(results))
    if args.json is not None:
        document = {"results": [{k: v for k, v in r.items() if k != "top1"} for r in results],
                    "settings": {k: str(v) for k, v in vars(args).items() if k != "run"},
                    "note": "absolute times depend on the machine and its load; compare rows of one run"}
        atomic_write_text(args.json, json.dumps(document, indent=2) + "\n", "--json")
    return 0


def _libraries(args: argparse.Namespace) -> int:
    from ..bench.ann_libraries import compare, format_table
    from ..safe_io import atomic_write_text

    results = compare(args.hnsw_embeddings, args.embeddings, args.dim)
    print(format_table(results))
    if args.json is not None:
        note = "random unit vectors; one machine shared with other jobs: compare rows of one run"
        atomic_write_text(args.json, json.dumps({"results": results, "note": note}, indent=2) + "\n", "--json")
    return 0
