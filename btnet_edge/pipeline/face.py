"""The Face record returned by the Recognizer: insightface's attribute names, but frozen and typed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .face_access import InsightfaceAccess


@dataclass(frozen=True, eq=False)
class Face(InsightfaceAccess):
    """One recognized face.

    ``bbox`` (x1, y1, x2, y2), ``kps`` (5, 2) and ``det_score`` as insightface; ``embedding``
    is the raw trunk output and ``normed_embedding`` its unit-length version; ``resolution``
    is the branch used (7, 14, 28 or 112) and ``face_size`` the size in px that chose it.
    ``identity`` and ``identity_score`` are set when a gallery is attached. ``route``: how the
    face was embedded: "branch" (its resolution's branch), "upsample" (aligned at 112 for the
    trunk because that branch is untrained, see ``Recognizer(branches=...)``) or "trunk" (112 px).
    The ``track_*`` and ``candidate*`` fields are set by a :class:`~btnet_edge.pipeline.track.Tracker`
    (video and camera input): the track's id and identity, and the best gallery match whatever its score.
    Reads like insightface's dict work too (``face["embedding"]``, ``face.get(...)``, ``"kps" in face``).
    """

    bbox: np.ndarray
    kps: np.ndarray
    det_score: float
    face_size: float
    resolution: int
    embedding: np.ndarray | None = None
    identity: str | None = None
    identity_score: float | None = None
    route: str = "branch"
    track_id: int | None = None
    track_identity: str | None = None
    track_score: float | None = None
    candidate: str | None = None
    candidate_score: float | None = None

    @property
    def normed_embedding(self) -> np.ndarray | None:
        if self.embedding is None:
            return None
        return self.embedding / max(float(np.linalg.norm(self.embedding)), 1e-12)

    @property
    def embedding_norm(self) -> float | None:
        return None if self.embedding is None else float(np.linalg.norm(self.embedding))

    def to_json(self) -> dict:
        """Still images keep the original keys; tracked faces (video, camera) add the track's and the candidate's."""
        out = {
            "bbox": [round(float(v), 2) for v in self.bbox],
            "kps": [[round(float(x), 2), round(float(y), 2)] for x, y in np.asarray(self.kps).reshape(-1, 2)],
            "det_score": round(float(self.det_score), 4),
            "face_size": round(float(self.face_size), 2),
            "resolution": int(self.resolution),
            "route": self.route,
            "identity": self.identity,
            "score": _rounded(self.identity_score),
        }
        if self.track_id is not None:
            out.update({"track_id": int(self.track_id), "track_identity": self.track_identity,
                        "track_score": _rounded(self.track_score), "candidate": self.candidate,
                        "candidate_score": _rounded(self.candidate_score)})
        return out


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)
