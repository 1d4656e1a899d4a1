"""The wire format of the face API, shared by the server and the client (no Ray needed).

A request is one encoded image (JPEG, PNG, ... as OpenCV decodes) in the body of
``POST /v1/faces``. The answer is JSON: ``{"faces": [face, ...]}`` where each face has
the Recognizer's fields and its raw embedding as base64 little-endian float32, so the
client rebuilds the exact :class:`Face` the server computed.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from ..errors import ServeError
from ..pipeline.face import Face

FACES_PATH = "/v1/faces"
HEALTH_PATH = "/v1/health"
STATS_PATH = "/v1/stats"
IDENTITIES_PATH = "/v1/identities"  # admin keys: GET lists, POST /v1/identities/NAME enrolls a photo, DELETE removes
DEFAULT_PORT = 8000
DEFAULT_HOST = "127.0.0.1"  # loopback: exposing the API to a network is an explicit choice (--host)
_FLOAT = np.dtype("<f4")


def face_to_wire(face: Face) -> dict[str, Any]:
    """One Face as JSON-ready data, embedding bit-exact."""
    embedding = None if face.embedding is None else base64.b64encode(
        np.ascontiguousarray(face.embedding, _FLOAT).tobytes()).decode("ascii")
    return {"bbox": [float(v) for v in face.bbox], "kps": np.asarray(face.kps, float).tolist(),
            "det_score": float(face.det_score), "face_size": float(face.face_size), "resolution": int(face.resolution),
            "embedding": embedding, "identity": face.identity,
            "identity_score": None if face.identity_score is None else float(face.identity_score)}


def face_from_wire(data: dict[str, Any]) -> Face:
    """The Face a server sent; a malformed entry is a ServeError (wrong server or version)."""
    try:
        embedding = None if data["embedding"] is None else np.frombuffer(
            base64.b64decode(data["embedding"]), _FLOAT).astype(np.float32)
        return Face(bbox=np.asarray(data["bbox"], np.float32), kps=np.asarray(data["kps"], np.float32),
                    det_score=float(data["det_score"]), face_size=float(data["face_size"]),
                    resolution=int(data["resolution"]), embedding=embedding, identity=data.get("identity"),
                    identity_score=data.get("identity_score"))
    except (KeyError, TypeError, ValueError) as exc:
        raise ServeError(f"the server sent a face this client cannot read ({exc!r}); is it a btnet-edge server "
                         "of the same version?") from None
