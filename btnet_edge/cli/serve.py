"""btnet-edge serve: the face API on Ray Serve (one machine or a Ray cluster), or its Serve config file."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import time
from pathlib import Path

from .options import add_detector_options, gallery_setting, gallery_target

log = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from ..serve.config import ServeConfig
    from ..serve.protocol import DEFAULT_HOST, DEFAULT_PORT

    d = ServeConfig(package="")
    p = subparsers.add_parser("serve", help="serve the face API over HTTP on Ray Serve (batches faces across requests)",
                              description="POST encoded images to /v1/faces; faces of concurrent requests are batched "
                                          "per resolution before the branches and the trunk. Needs btnet-edge[serve].")
    p.add_argument("package", type=Path, help="model package folder")
    p.add_argument("--gallery", type=gallery_target,
                   help="gallery to identify against: a SQLite file (every front-end on this machine reads it) or "
                        "postgresql://user@host/db (one gallery for every node); enroll with `btnet-edge enroll` or, "
                        "with an admin key, POST /v1/identities/NAME")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help="address to bind (default loopback); another address needs --api-keys or --insecure-no-auth")
    p.add_argument("--api-keys", type=Path, metavar="KEYS",
                   help="API key file (`btnet-edge keys new NAME --file KEYS`): every request needs "
                        "'Authorization: Bearer KEY'; admin keys may enroll, remove and list identities")
    p.add_argument("--insecure-no-auth", action="store_true",
                   help="bind a non-loopback --host without API keys (only behind a gateway that authenticates)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--address", help="join a running Ray cluster (e.g. 'auto' after `ray start --head`)")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray instance started when --address is not given")
    p.add_argument("--frontends", type=int, default=d.frontends, help="front-end replicas (decode, detect, align)")
    p.add_argument("--frontend-threads", type=int, default=d.frontend_threads, help="concurrent requests per front-end")
    p.add_argument("--embedders", type=int, default=d.embedders, help="embedder replicas (branches + trunk, batched)")
    p.add_argument("--max-batch-requests", type=int, default=d.max_batch_requests,
                   help="requests merged into one embedder batch")
    p.add_argument("--batch-wait-ms", type=float, default=d.batch_wait_ms, help="wait to fill an embedder batch")
    p.add_argument("--max-request-mb", type=float, default=d.max_request_mb, help="encoded image size limit (413)")
    p.add_argument("--max-image-mpx", type=float, default=d.max_image_mpx, help="decoded image size limit (413)")
    p.add_argument("--embed-timeout-s", type=float, default=d.embed_timeout_s,
                   help="front-end wait for the embedder before answering 504")
    p.add_argument("--replica-cpus", type=float, default=d.replica_cpus, help="Ray CPUs reserved per replica")
    p.add_argument("--threads", type=int, default=d.threads, help="ONNX Runtime threads per session")
    p.add_argument("--backend", choices=("auto", "onnxruntime", "torch", "tensorrt"), default=d.backend,
                   help="what runs the graphs: auto = ONNX Runtime (default); tensorrt needs --engines")
    p.add_argument("--device", default=d.device, help="cpu (default) or cuda (ONNX Runtime CUDA provider)")
    p.add_argument("--engines", type=Path, help="engine folder written by btnet-edge build (backend tensorrt)")
    p.add_argument("--replica-gpus", type=float, default=d.replica_gpus,
                   help="Ray GPUs per replica (needed on a GPU backend: Ray hides GPUs from replicas without)")
    p.add_argument("--write-config", type=Path,
                   help="write a Ray Serve config file for `serve run`/`serve deploy` and exit (no Ray needed)")
    add_detector_options(p)
    p.set_defaults(run=run)


def config_from_args(args: argparse.Namespace):
    from ..package.loader import read_manifest
    from ..serve.config import ServeConfig

    read_manifest(args.package)  # a wrong folder fails here, with the package's own message
    return ServeConfig(
        package=str(args.package.resolve()), gallery=gallery_setting(args.gallery),
        api_keys=str(args.api_keys.resolve()) if args.api_keys else None, insecure_no_auth=args.insecure_no_auth,
        host=args.host, port=args.port, frontends=args.frontends, frontend_threads=args.frontend_threads,
        embedders=args.embedders, max_batch_requests=args.max_batch_requests, batch_wait_ms=args.batch_wait_ms,
        max_request_mb=args.max_request_mb, max_image_mpx=args.max_image_mpx, embed_timeout_s=args.embed_timeout_s,
        replica_cpus=args.replica_cpus, threads=args.threads, detector=args.detector, detector_kind=args.detector_kind,
        det_threshold=args.det_threshold, max_side=args.max_side, backend=args.backend, device=args.device,
        engines=str(args.engines.resolve()) if args.engines else None, replica_gpus=args.replica_gpus)


def serve_config_file(config) -> dict:
    """A Ray Serve config (JSON is valid YAML) that deploys the same application."""
    from ..serve.app import APP_NAME

    settings = {k: v for k, v in config.to_dict().items() if v is not None and k not in ("host", "port")}
    return {"proxy_location": "EveryNode",
            "http_options": {"host": config.host, "port": config.port, "request_timeout_s": config.request_timeout_s},
            "applications": [{"name": APP_NAME, "route_prefix": "/", "import_path": "btnet_edge.serve.app:app_builder",
                              "args": settings}]}


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if args.write_config:
        from .options import write_json

        write_json(serve_config_file(config), args.write_config)
        log.info("wrote %s: run it with `serve run %s` (or `serve deploy` on a running cluster)",
                 args.write_config, args.write_config)
        return 0
    from ..serve import app
    from ..serve.config import is_loopback

    if not is_loopback(config.host) and not config.api_keys:
        log.warning("binding %s without API keys (--insecure-no-auth): anyone who reaches it can identify faces",
                    config.host)
    previous = signal.getsignal(signal.SIGTERM)
    # start outside the try: a start that fails (preflight) must not stop a Ray session it did not make
    url = app.start(config, address=args.address, num_cpus=args.num_cpus)
    try:
        # after ray.init, which installs a handler of its own that aborts the process: systemd, docker stop and
        # kill get the same clean stop as Ctrl-C (Serve, then every Ray process this command started)
        signal.signal(signal.SIGTERM, _stop_on_sigterm)
        print(json.dumps({"url": url, "faces": f"POST {url}/v1/faces", "health": f"GET {url}/v1/health"}), flush=True)
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        log.info("stopping the face server")
    finally:
        app.stop()  # Serve, then the Ray processes this command started (dashboard and runtime-env agents too)
        signal.signal(signal.SIGTERM, previous)
    return 0


def _stop_on_sigterm(signum, frame) -> None:
    raise KeyboardInterrupt
