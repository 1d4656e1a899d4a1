"""Gallery administration over the face API (admin keys only): enroll a person from a photo, remove, list.

Each enrollment is one photo and one gallery transaction; the source recorded with the
embedding names the API key that sent it (``api:<key name>``), so an enrollment can be
traced to its sender. Removal and listing go to the same gallery every front-end reads,
so with a PostgreSQL gallery the next search of any front-end sees the change.
"""

from __future__ import annotations

from typing import Any

from ..errors import InputImageError
from ..gallery.enrollment import EnrollResult, pick_face, write_identity
from ..gallery.records import normalise_name
from .frontend import FrontEnd, HttpError, decode_image


def _gallery(frontend: FrontEnd):
    gallery = frontend._recognizer().gallery
    if gallery is None:
        raise HttpError(409, "this server has no gallery: start it with --gallery people.db (or a postgresql:// URL)")
    return gallery


def enroll_photo(frontend: FrontEnd, name: str, body: bytes, pick: str | None, sender: str) -> dict[str, Any]:
    """Enroll the face of one posted photo as ``name``; 400 for a photo without one clear face."""
    try:
        canonical = normalise_name(name)
    except Exception as exc:
        raise HttpError(400, str(exc)) from None
    config = frontend.config
    frame = decode_image(body, config.max_request_bytes, config.max_image_mpx * 1e6)
    recognizer = frontend._recognizer()
    try:
        face = pick_face(recognizer.get(frame), pick, source="the posted photo")
    except InputImageError as exc:
        raise HttpError(400, f"{exc}; nothing was enrolled") from None
    result = EnrollResult(canonical, used=[f"api:{sender}"], resolutions=[face.resolution],
                          embeddings=[face.normed_embedding])
    write_identity(_gallery(frontend), result)
    total = next((i.count for i in _gallery(frontend).identities() if i.name == result.name), 0)
    return {**result.to_json(), "embeddings": total}


def remove_identity(frontend: FrontEnd, name: str) -> dict[str, Any]:
    if not _gallery(frontend).remove(name):
        raise HttpError(404, f"{name!r} is not enrolled; GET /v1/identities lists the names")
    return {"removed": normalise_name(name)}


def list_identities(frontend: FrontEnd) -> dict[str, Any]:
    gallery = _gallery(frontend)
    return {"identities": [{"name": i.name, "embeddings": i.count, "resolutions": list(i.resolutions)}
                           for i in gallery.identities()]}
