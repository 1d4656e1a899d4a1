"""What Ray's HTTP proxy answers when a front-end replica dies mid-request: 503 JSON, not a bare text 500.

Ray Serve's proxy turns a dead replica into an empty 500 (uvicorn writes "Internal
Server Error" as text/plain). This ASGI middleware, loaded into the proxy through Ray's
``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH`` hook, answers such a request with 503 and
the same ``{"error": ...}`` JSON as every other failure, with ``Retry-After``; answers
the application itself sent (its own 500s included) pass through unchanged.
"""

from __future__ import annotations

import json
import logging

log = logging.getLogger(__name__)

CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
CALLBACK = "btnet_edge.serve.proxy_errors:proxy_middlewares"
REPLICA_FAILED = ("the front-end replica handling this request failed (it died or was restarted); Ray restarts it: "
                  "retry in a few seconds")


class ReplicaFailureAsJson:
    """Pure ASGI middleware: when the app returns without starting a response, answer 503 JSON."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message) -> None:
            nonlocal started
            if message.get("type") == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:  # the proxy itself failed: same answer, logged
            log.exception("proxy failed on %s", scope.get("path"))
            if started:
                raise
        if not started:
            body = json.dumps({"error": REPLICA_FAILED}).encode()
            await send({"type": "http.response.start", "status": 503,
                        "headers": [(b"content-type", b"application/json"), (b"retry-after", b"1"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})


def proxy_middlewares() -> list:
    """The hook Ray's proxy calls (it wants Starlette ``Middleware`` objects)."""
    from starlette.middleware import Middleware

    return [Middleware(ReplicaFailureAsJson)]
