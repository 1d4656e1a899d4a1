"""btnet-edge bench-serve: load-test the face server on loopback against one in-process Recognizer."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import cv2
import numpy as np

from .._deps import require
from .options import gallery_setting, gallery_target, parse_resolutions

log = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench-serve", help="load-test the face server (N clients x M frames, loopback)",
                              description="Starts the face server on 127.0.0.1, sends N concurrent clients x M "
                                          "frames, compares every answer with an in-process Recognizer, reports "
                                          "throughput, p50/p99 and faces per branch run; --kill-replica kills an "
                                          "embedder replica mid-load. Needs btnet-edge[serve].")
    p.add_argument("package", type=Path, help="model package folder")
    p.add_argument("--images", nargs="+", required=True, help="image files or folders (frames of the cameras)")
    p.add_argument("--scales", default="100,30,15",
                   help="percent sizes of every image (small ones put faces on the small branches)")
    p.add_argument("--clients", type=int, default=8, help="concurrent camera clients")
    p.add_argument("--frames", type=int, default=8, help="frames per client")
    p.add_argument("--embedders", type=int, default=1)
    p.add_argument("--frontends", type=int, default=1)
    p.add_argument("--frontend-threads", type=int, default=4)
    p.add_argument("--batch-wait-ms", type=float, default=10.0)
    p.add_argument("--gallery", type=gallery_target,
                   help="gallery the server and the reference identify against: a SQLite file or postgresql://...")
    p.add_argument("--url", help="load-test this running server instead of starting one (its package and "
                                 "gallery must be the ones given here; --kill-replica joins its Ray cluster)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray instance (default: all)")
    p.add_argument("--timeout-s", type=float, default=30.0, help="client timeout per request")
    p.add_argument("--kill-replica", nargs="?", const="embedder", choices=("embedder", "frontend"),
                   help="second round: kill a replica of this deployment mid-load (default: the embedder)")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from ..bench.report import write_json
    from ..bench.serve_load import encode_frames, latency_summary, run_load, summarize
    from ..errors import ConfigError
    from ..pipeline.image import read_image
    from ..pipeline.recognizer import Recognizer
    from ..pipeline.sources import IMAGE_SUFFIXES, expand_inputs
    from ..serve import app
    from ..serve.client import FaceClient
    from ..serve.config import ServeConfig

    if args.clients < 1 or args.frames < 1:
        raise ConfigError("--clients and --frames should be at least 1")
    files = [f for f in expand_inputs(args.images) if Path(f).suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise ConfigError(f"no images among {args.images}; pass image files or folders of images")
    scales = [p / 100.0 for p in parse_resolutions(args.scales)]
    frames = encode_frames([read_image(f) for f in files], scales)
    decoded = [cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR) for b in frames]  # what the server sees
    total = args.clients * args.frames
    order = [(c * args.frames + i) % len(frames) for c in range(args.clients) for i in range(args.frames)]

    gallery = _open_gallery(args)
    try:
        with Recognizer(args.package, gallery=gallery) as rec:  # the reference answers and the in-process baseline
            reference = [rec.get(img) for img in decoded]
            t0 = time.perf_counter()
            latencies = []
            for index in tqdm(order, desc="in-process", unit="frame", disable=args.quiet):
                t = time.perf_counter()
                rec.get(decoded[index])
                latencies.append(time.perf_counter() - t)
            baseline = latency_summary(latencies, total, time.perf_counter() - t0)
    finally:
        if gallery is not None:
            gallery.close()

    config = ServeConfig(package=str(args.package.resolve()), port=args.port, embedders=args.embedders,
                         frontends=args.frontends, frontend_threads=args.frontend_threads,
                         batch_wait_ms=args.batch_wait_ms, max_batch_requests=max(args.clients, 1),
                         gallery=gallery_setting(args.gallery))
    url = args.url or app.start(config, num_cpus=args.num_cpus)
    rounds = {}
    try:
        client = FaceClient(url, timeout_s=args.timeout_s)
        for data in frames:  # warm-up: every session loaded before timing
            client.get_encoded(data)
        before = client.stats()
        with tqdm(total=total, desc="served", unit="frame", disable=args.quiet) as bar:
            loaded = run_load(client.get_encoded, frames, reference, args.clients, args.frames, progress=bar)
        rounds["load"] = {**summarize(loaded), "batching": _delta(before, client.stats())}
        if args.kill_replica:
            with tqdm(total=total, desc="served, replica killed", unit="frame", disable=args.quiet) as bar:
                killed = run_load(client.get_encoded, frames, reference, args.clients, args.frames,
                                  kill=lambda: _kill_replica(args.kill_replica), progress=bar)
            rounds["kill"] = summarize(killed)
    finally:
        if not args.url:
            app.stop()

    document = {"package": str(args.package), "clients": args.clients, "frames_per_client": args.frames,
                "unique_frames": len(frames), "scales": scales,
                "server": {"url": url} if args.url else config.to_dict(),
                "in_process": baseline, "killed": args.kill_replica, **rounds}
    print(_report(document))
    if args.json:
        write_json(document, args.json)
    bad = sum(r.get("wrong", 0) + r.get("lost", 0) for r in rounds.values())
    return 1 if bad else 0


def _open_gallery(args: argparse.Namespace):
    if args.gallery is None:
        return None
    from ..gallery import Gallery
    from ..package.loader import read_manifest
    from .options import gallery_model_id

    manifest = read_manifest(args.package)
    return Gallery(args.gallery, embedding_size=manifest.embedding_size, create=False,
                   model_id=gallery_model_id(manifest))


def _kill_replica(which: str) -> None:
    """Kill one replica (Ray restarts it), joining the server's Ray cluster when started elsewhere."""
    from ..serve import app

    ray = require("ray", extra="serve")
    if not ray.is_initialized():
        ray.init(address="auto", log_to_driver=False)
    for actor in app.replica_actors({"embedder": "Embedder", "frontend": "FrontEnd"}[which])[:1]:
        ray.kill(actor, no_restart=False)
        log.info("killed a %s replica", which)


def _delta(before: dict, after: dict) -> dict:
    graphs = {}
    for name, stats in after["graphs"].items():
        runs = stats["runs"] - before["graphs"][name]["runs"]
        faces = stats["faces"] - before["graphs"][name]["faces"]
        graphs[name] = {"runs": runs, "faces": faces, "faces_per_run": round(faces / runs, 2) if runs else 0.0}
    requests = after["requests"] - before["requests"]
    batches = after["batches"] - before["batches"]
    return {"requests": requests, "batches": batches,
            "requests_per_batch": round(requests / batches, 2) if batches else 0.0, "graphs": graphs}


def _report(doc: dict) -> str:
    from ..bench.report import _table

    header = ("path", "frames", "frames/s", "p50 ms", "p99 ms", "ok", "wrong", "errors", "lost")
    lines = [("in-process Recognizer", str(doc["in_process"]["frames"]), f"{doc['in_process']['frames_per_s']:.1f}",
              f"{doc['in_process']['p50_ms']:.1f}", f"{doc['in_process']['p99_ms']:.1f}", "-", "-", "-", "-")]
    for name, label in (("load", f"served, {doc['clients']} clients"),
                        ("kill", f"served, {doc.get('killed')} replica killed")):
        r = doc.get(name)
        if r:
            lines.append((label, str(r["sent"]), f"{r['frames_per_s']:.1f}", _ms(r["p50_ms"]), _ms(r["p99_ms"]),
                          str(r["ok"]), str(r["wrong"]), str(r["errors"]), str(r["lost"])))
    out = [_table(header, lines)]
    batching = doc["load"]["batching"]
    out.append(f"\nembedder: {batching['requests']} requests in {batching['batches']} batches "
               f"({batching['requests_per_batch']} requests per batch)")
    out.append(_table(("graph", "runs", "faces", "faces/run"),
                      [(n, str(g["runs"]), str(g["faces"]), f"{g['faces_per_run']:.2f}")
                       for n, g in batching["graphs"].items()]))
    if "kill" in doc and "kill" in doc["kill"]:
        k = doc["kill"]["kill"]
        out.append(f"\n{doc['killed']} replica killed at {k['at_s']} s: {k['errors_after_kill']} requests got an error "
                   f"(slowest error after {k['slowest_error_ms']} ms), back to correct answers after "
                   f"{k['recovered_after_s']} s; messages: {doc['kill']['error_messages']}")
    return "\n".join(out)


def _ms(value) -> str:
    return "-" if value is None else f"{value:.1f}"
