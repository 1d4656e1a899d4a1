"""The Ray Serve application: a front-end deployment (HTTP ingress) and a batching embedder deployment.

Front-end replicas decode, detect and align each request; the embedder merges the
faces of many requests with ``@serve.batch`` so each branch and the trunk run once for
all of them. ``app_builder`` is the import path for Ray Serve config files
(``serve run`` / ``serve deploy``); ``start``/``stop`` run it from Python or the CLI.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .._deps import require
from ..errors import GalleryError, ServeError
from .auth import KeyChecker, bearer_token
from .config import ServeConfig, is_loopback
from .protocol import FACES_PATH, HEALTH_PATH, IDENTITIES_PATH, STATS_PATH

log = logging.getLogger(__name__)

APP_NAME = "btnet"
HEALTH_CHECK_PERIOD_S = 2.0
HEALTH_CHECK_TIMEOUT_S = 10.0


def _serve():
    require("ray", extra="serve")
    return require("ray.serve", extra="serve")


def build_app(config: ServeConfig):
    """The bound application (front-end -> embedder) for ``serve.run``."""
    serve = _serve()
    wait_s = config.batch_wait_ms / 1000.0

    class Embedder:
        """Holds the package's graphs; one batch of requests at a time."""

        def __init__(self, settings: dict) -> None:
            from ..package.loader import load_package
            from .embedder import BatchEmbedder

            cfg = ServeConfig.from_dict(settings)
            _replica_grpc_on_loopback()
            self.core = BatchEmbedder(load_package(cfg.package), cfg.recognizer_config())

        @serve.batch(max_batch_size=config.max_batch_requests, batch_wait_timeout_s=wait_s)
        async def embed(self, requests: list[dict]) -> list[dict]:
            return await asyncio.to_thread(self.core.embed_many, requests)

        def stats(self) -> dict:
            return self.core.stats()

        def __del__(self) -> None:  # Serve calls it when the replica shuts down
            if hasattr(self, "core"):  # absent when __init__ failed
                self.core.close()

    class FrontEndDeployment:
        """HTTP ingress: limits, errors as 4xx/5xx JSON, and the per-request pipeline in worker threads."""

        def __init__(self, embedder, settings: dict) -> None:
            from .frontend import FrontEnd

            self.config = ServeConfig.from_dict(settings)
            _replica_grpc_on_loopback()
            self.embedder = embedder
            self.pool = ThreadPoolExecutor(self.config.frontend_threads, thread_name_prefix="btnet-frontend")
            self.core = FrontEnd(self.config, self._embed)
            self.keys = KeyChecker(self.config.api_keys) if self.config.api_keys else None

        def __del__(self) -> None:  # Serve calls it when the replica shuts down
            if hasattr(self, "core"):  # absent when __init__ failed
                self.pool.shutdown(wait=False, cancel_futures=True)
                self.core.close()

        def _embed(self, groups: dict) -> dict:
            """Blocking call from a worker thread; failures of the embedder become 503/504, never a hang."""
            from ray.exceptions import RayError, RayTaskError
            from ray.serve.exceptions import RayServeException

            from .frontend import HttpError

            try:
                return self.embedder.embed.remote(groups).result(timeout_s=self.config.embed_timeout_s)
            except TimeoutError:
                raise HttpError(504, f"the embedder did not answer within {self.config.embed_timeout_s:g} s "
                                     "(overloaded or restarting); retry") from None
            except RayTaskError as exc:  # the embedder raised: its message, not "replica failed"
                cause = getattr(exc, "cause", None) or exc
                raise HttpError(500, f"the embedder failed on this request: {type(cause).__name__}: {cause}") from None
            except (RayError, RayServeException) as exc:  # died, unavailable, back-pressure
                raise HttpError(503, f"the embedder replica failed ({type(exc).__name__}); Ray restarts it: "
                                     "retry in a few seconds") from None

        async def __call__(self, request) -> Any:
            from starlette.responses import JSONResponse

            from .frontend import HttpError

            path = request.url.path.rstrip("/") or "/"
            try:
                if path == HEALTH_PATH:
                    return JSONResponse({"status": "ok", "package": self.core.package.manifest.name,
                                         "resolutions": self.core.package.manifest.resolutions})
                admin = path == IDENTITIES_PATH or path.startswith(IDENTITIES_PATH + "/")
                caller = self._authorize(request.headers.get("authorization"), admin)
                loop = asyncio.get_running_loop()
                if admin:
                    return JSONResponse(await self._admin(request, path, caller, loop))
                if path == STATS_PATH:
                    stats = await asyncio.wait_for(self.embedder.stats.remote(), self.config.embed_timeout_s)
                    return JSONResponse(stats)
                if path != FACES_PATH:
                    raise HttpError(404, f"no endpoint {path}; POST images to {FACES_PATH}, GET {HEALTH_PATH}, "
                                         f"{STATS_PATH} or (admin keys) {IDENTITIES_PATH}")
                if request.method != "POST":
                    raise HttpError(405, f"{FACES_PATH} takes POST with the bytes of an encoded image")
                body = await _read_limited(request, self.config.max_request_bytes)
                return JSONResponse(await loop.run_in_executor(self.pool, self.core.process, body))
            except HttpError as exc:
                return JSONResponse({"error": str(exc)}, status_code=exc.status, headers=exc.headers)
            except asyncio.TimeoutError:
                return JSONResponse({"error": "the embedder did not answer in time; retry"}, status_code=504)
            except GalleryError as exc:  # e.g. the PostgreSQL server is down: the client may retry
                return JSONResponse({"error": f"the gallery is unavailable: {exc}"}, status_code=503,
                                    headers={"Retry-After": "2"})
            except Exception as exc:  # the client gets a message, the log keeps the traceback
                log.exception("request failed")
                return JSONResponse({"error": f"server error: {type(exc).__name__}: {exc}"}, status_code=500)

        def _authorize(self, header: str | None, admin: bool) -> str:
            """The caller's key name ("anonymous" without --api-keys), or 401/403 saying what to send."""
            return authorize(self.keys, header, admin)

        async def _admin(self, request, path: str, caller: str, loop) -> dict:
            import urllib.parse

            from . import admin
            from .frontend import HttpError

            name = urllib.parse.unquote(path[len(IDENTITIES_PATH) + 1:]) if path != IDENTITIES_PATH else None
            if name is None:
                if request.method != "GET":
                    raise HttpError(405, f"GET {IDENTITIES_PATH} lists; POST/DELETE {IDENTITIES_PATH}/NAME "
                                         "enroll a photo or remove")
                return await loop.run_in_executor(self.pool, admin.list_identities, self.core)
            if request.method == "POST":
                body = await _read_limited(request, self.config.max_request_bytes)
                pick = request.query_params.get("pick")
                if pick not in (None, "largest"):
                    raise HttpError(400, f"pick={pick!r}: use pick=largest, or leave it out to refuse group photos")
                return await loop.run_in_executor(self.pool, admin.enroll_photo, self.core, name, body, pick, caller)
            if request.method == "DELETE":
                return await loop.run_in_executor(self.pool, admin.remove_identity, self.core, name)
            raise HttpError(405, f"{IDENTITIES_PATH}/NAME takes POST (a photo to enroll) or DELETE")

    common = {"health_check_period_s": HEALTH_CHECK_PERIOD_S, "health_check_timeout_s": HEALTH_CHECK_TIMEOUT_S,
              "ray_actor_options": {"num_cpus": config.replica_cpus, "num_gpus": config.replica_gpus}}
    embedder = serve.deployment(Embedder, name="Embedder", num_replicas=config.embedders,
                                max_ongoing_requests=4 * config.max_batch_requests, **common)
    frontend = serve.deployment(FrontEndDeployment, name="FrontEnd", num_replicas=config.frontends,
                                max_ongoing_requests=4 * config.frontend_threads, **common)
    settings = config.to_dict()
    return frontend.bind(embedder.bind(settings), settings)


async def _read_limited(request, limit: int) -> bytes:
    from .frontend import HttpError

    declared = request.headers.get("content-length")
    too_big = (f"over the limit of {limit} bytes; send a smaller image or start the server with a larger "
               "--max-request-mb")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HttpError(413, f"request of {declared} bytes is {too_big}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HttpError(413, f"request body is {too_big}")
        chunks.append(chunk)
    return b"".join(chunks)


def authorize(keys: KeyChecker | None, header: str | None, admin: bool) -> str:
    """The caller's key name, or HttpError 401 (no or unknown key) / 403 (not an admin key for admin routes)."""
    from .frontend import HttpError

    if keys is None:
        return "anonymous"
    challenge = {"WWW-Authenticate": 'Bearer realm="btnet-edge"'}
    token = bearer_token(header)
    if token is None:
        raise HttpError(401, "this server needs an API key: send the header 'Authorization: Bearer KEY' (keys come "
                             "from `btnet-edge keys new NAME --file KEYS` on the server)", challenge)
    key = keys.role_of(token)
    if key is None:
        raise HttpError(401, "the API key is not valid (mistyped, or revoked); ask the server's operator for a key",
                        challenge)
    if admin and key.role != "admin":
        raise HttpError(403, f"key {key.name!r} may identify faces but not change or list the gallery; use an "
                             "admin key (`btnet-edge keys new NAME --admin`)")
    return key.name


def app_builder(args: Mapping[str, Any]):
    """Entry point for Ray Serve config files: ``import_path: btnet_edge.serve.app:app_builder``."""
    return build_app(ServeConfig.from_dict(dict(args)))


def preflight(config: ServeConfig) -> None:
    """Fail here, with the package's or gallery's own message, rather than as a replica that keeps dying."""
    from ..gallery import Gallery
    from ..package.loader import load_package
    from ..package.manifest import model_id

    manifest = load_package(config.package).manifest  # sha256 of every file checked
    if config.gallery:
        Gallery(config.gallery, embedding_size=manifest.embedding_size, create=False, readonly=True,
                model_id=model_id(manifest)).close()
    if config.api_keys:
        KeyChecker(config.api_keys)  # a missing or malformed key file fails here, not in every replica
    if config.detector and not Path(config.detector).is_file():
        raise ServeError(f"detector {config.detector} does not exist; pass an SCRFD/YuNet ONNX file or leave "
                         "--detector out for the bundled RetinaFace")


def start(config: ServeConfig, address: str | None = None, num_cpus: int | None = None) -> str:
    """Start (or join, with ``address``) Ray, bind HTTP to ``config.host``, deploy; return the base URL."""
    ray = require("ray", extra="serve")
    serve = _serve()
    preflight(config)
    from .proxy_errors import CALLBACK, CALLBACK_ENV

    os.environ.setdefault(CALLBACK_ENV, CALLBACK)  # read by Ray's proxy process, which inherits our environment
    if not ray.is_initialized():
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if not address and is_loopback(config.host):
            _ray_on_loopback()
        if address:
            options["address"] = address
        elif num_cpus:
            options["num_cpus"] = num_cpus
        ray.init(**options)
    serve.start(http_options={"host": config.host, "port": config.port,
                              "request_timeout_s": config.request_timeout_s})
    try:
        serve.run(build_app(config), name=APP_NAME, route_prefix="/", blocking=False)
    except Exception as exc:  # a replica that cannot start (bad package, gallery) fails the deployment
        stop()
        raise ServeError(f"the face server did not start: {exc}") from None
    log.info("serving %s at %s", config.package, config.url)
    return config.url


def _ray_on_loopback() -> None:
    """Ray's own servers (GCS, raylet, agents, workers) on 127.0.0.1 only, as the API is.

    Ray's single-machine mode (the default on macOS and Windows, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0)
    uses the loopback address as the node address; Ray reads the variable when it is imported, so
    the processes it starts get it from the environment and this process from the constant."""
    import ray._private.ray_constants as ray_constants

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False


def _replica_grpc_on_loopback() -> None:
    """In a replica on a loopback-only node, bind Serve's inter-deployment gRPC server to 127.0.0.1 too.

    Ray Serve 2.60 binds it to ``[::]:0`` whatever the node address (``ray/serve/_private/replica.py``,
    ``_on_initialized``, after the deployment's ``__init__``): on a single machine served on loopback
    (``_ray_on_loopback``) that is the one Ray port left on every interface. Only there is the call
    redirected; on a cluster node, replicas of other nodes must reach it, so it is left alone."""
    import ray
    from ray.serve._private import replica

    if ray.util.get_node_ip_address() != "127.0.0.1" or getattr(replica, "_btnet_loopback", False):
        return
    bind = replica.add_port_to_grpc_server

    def on_loopback(server, address: str):
        return bind(server, address.replace("[::]", "127.0.0.1", 1))

    replica.add_port_to_grpc_server = on_loopback
    replica._btnet_loopback = True


def stop() -> None:
    """Shut Serve and the Ray session this process started."""
    ray = require("ray", extra="serve")
    serve = _serve()
    if ray.is_initialized():
        serve.shutdown()
        ray.shutdown()


def replica_actors(deployment: str = "Embedder") -> list:
    """Handles of the live replicas of ``deployment`` (the load test kills one to show what clients see)."""
    ray = require("ray", extra="serve")
    prefix = f"SERVE_REPLICA::{APP_NAME}#{deployment}#"
    named = ray.util.list_named_actors(all_namespaces=True)
    return [ray.get_actor(a["name"], namespace=a["namespace"]) for a in named if a["name"].startswith(prefix)]
