"""Python client of the face API: ``FaceClient(url).get(frame)`` returns Face objects, like ``Recognizer.get``.

Standard library HTTP only (no Ray, no requests), so a camera box needs nothing but
numpy and OpenCV. Every call has a timeout: a dead or stuck server is an error, never a hang.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import cv2
import numpy as np

from ..errors import ServeError
from ..pipeline.face import Face
from ..pipeline.image import check_bgr_image
from .protocol import DEFAULT_HOST, DEFAULT_PORT, FACES_PATH, HEALTH_PATH, IDENTITIES_PATH, STATS_PATH, face_from_wire

DEFAULT_TIMEOUT_S = 30.0
JPEG_QUALITY = 95


class FaceClient:
    """Talks to ``btnet-edge serve``. ``timeout_s`` bounds each request (connect and answer); ``api_key`` is sent
    as ``Authorization: Bearer`` (use https:// through a TLS proxy when it crosses a network)."""

    def __init__(self, url: str = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}", timeout_s: float = DEFAULT_TIMEOUT_S,
                 encoding: str = ".jpg", api_key: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.encoding = encoding
        self._api_key = api_key

    def __repr__(self) -> str:  # never the key
        return f"FaceClient({self.url!r}, api_key={'set' if self._api_key else None})"

    def get(self, image: np.ndarray) -> list[Face]:
        """Faces of one BGR uint8 frame (encoded as ``encoding`` for the wire)."""
        return self.get_encoded(self._encode(image))

    def get_encoded(self, data: bytes) -> list[Face]:
        """Faces of an already encoded image (the bytes of a JPEG/PNG file)."""
        answer = self._call("POST", FACES_PATH, data)
        return [face_from_wire(f) for f in answer["faces"]]

    def health(self) -> dict[str, Any]:
        return self._call("GET", HEALTH_PATH)

    def stats(self) -> dict[str, Any]:
        """Embedder counters: graph runs and faces per branch run (the cross-request batching)."""
        return self._call("GET", STATS_PATH)

    def enroll(self, name: str, image: np.ndarray | bytes, pick: str | None = None) -> dict[str, Any]:
        """Admin keys: enroll the face of one photo (BGR frame or encoded bytes) as ``name``."""
        data = image if isinstance(image, (bytes, bytearray)) else self._encode(image)
        query = "?pick=largest" if pick == "largest" else ""
        return self._call("POST", f"{IDENTITIES_PATH}/{urllib.parse.quote(name, safe='')}{query}", bytes(data))

    def remove(self, name: str) -> dict[str, Any]:
        """Admin keys: remove ``name`` and its embeddings."""
        return self._call("DELETE", f"{IDENTITIES_PATH}/{urllib.parse.quote(name, safe='')}")

    def identities(self) -> list[dict[str, Any]]:
        """Admin keys: every enrolled identity with its embedding count and resolutions."""
        return self._call("GET", IDENTITIES_PATH)["identities"]

    def _encode(self, image: np.ndarray) -> bytes:
        frame = check_bgr_image(image)
        params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if self.encoding == ".jpg" else []
        ok, data = cv2.imencode(self.encoding, frame, params)
        if not ok:
            raise ServeError(f"OpenCV cannot encode the frame as {self.encoding}; pass encoding='.png' or '.jpg'")
        return data.tobytes()

    def _call(self, method: str, path: str, body: bytes | None = None) -> dict[str, Any]:
        headers = {"Content-Type": "application/octet-stream"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            message = _message(exc)
            if exc.code >= 500 and "retry" not in message:  # e.g. the proxy's answer for a replica that died
                message += "; the server or one of its replicas failed: retry"
            raise ServeError(f"{self.url}{path}: HTTP {exc.code}: {message}") from None
        except (socket.timeout, TimeoutError):
            raise ServeError(f"{self.url}{path}: no answer within {self.timeout_s:g} s; the server is overloaded or "
                             "a replica is restarting: retry, or raise timeout_s") from None
        except (urllib.error.URLError, ConnectionError, OSError) as exc:
            raise ServeError(f"{self.url}{path}: cannot reach the server ({exc}); start it with "
                             "`btnet-edge serve PKG` or check the URL") from None
        except json.JSONDecodeError as exc:
            raise ServeError(f"{self.url}{path}: the answer is not JSON ({exc}); "
                             "is this a btnet-edge server?") from None


def _message(exc: urllib.error.HTTPError) -> str:
    try:
        return json.loads(exc.read()).get("error", "")
    except (ValueError, AttributeError, OSError):
        return exc.reason or ""
