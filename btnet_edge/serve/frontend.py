"""Per-request work of the face server: check and decode the image, detect, align; embedding is remote.

:class:`FrontEnd` runs a Recognizer whose runner is a :class:`RemoteRunner`: detection,
dispatch, alignment, preprocessing and gallery search happen here, per request, and the
preprocessed faces go to the batching embedder. Each worker thread has its own Recognizer
(own detector session and own SQLite connection to the gallery). No Ray here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any, Callable

import cv2
import numpy as np

from ..errors import BtnetError, InputImageError
from ..package.loader import ModelPackage, load_package
from ..pipeline.image_header import image_size
from ..pipeline.recognizer import Recognizer
from .config import ServeConfig
from .protocol import face_to_wire

log = logging.getLogger(__name__)

EmbedCall = Callable[[dict[int, np.ndarray]], Mapping[int, np.ndarray]]


class HttpError(BtnetError):
    """A request the server answers with ``status`` and a message saying what to do."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


class RemoteRunner:
    """The front-end Recognizer's runner (:class:`~btnet_edge.pipeline.runner.Runner`): ``embed`` calls the embedder.

    ``takes_uint8``: what the remote side takes, preprocessed float32 (the embedder, Triton) or
    the aligned uint8 crops.
    """

    def __init__(self, call: EmbedCall, takes_uint8: bool = False) -> None:
        self._call = call
        self.takes_uint8 = takes_uint8
        self.branch_s = 0.0  # the Recognizer reads these stage timers; remote time is not split per stage
        self.trunk_s = 0.0

    def embed(self, groups: Mapping[int, np.ndarray]) -> dict[int, np.ndarray]:
        dtype = np.uint8 if self.takes_uint8 else np.float32
        answer = self._call({int(r): np.ascontiguousarray(b, dtype) for r, b in groups.items()})
        return {r: answer[r] for r in groups}

    def close(self) -> None:
        """The embedder belongs to the server, not to this Recognizer."""


def decode_image(body: bytes, max_bytes: int, max_pixels: float) -> np.ndarray:
    """BGR uint8 frame from the encoded bytes of a request, or HttpError 400/413 saying what to send."""
    if not body:
        raise HttpError(400, "empty body: POST the bytes of an encoded image (JPEG, PNG, ...)")
    if len(body) > max_bytes:
        raise HttpError(413, f"request of {len(body)} bytes is over the limit of {max_bytes} bytes; "
                             "send a smaller or more compressed image, or start the server with a larger "
                             "--max-request-mb")
    size = image_size(body)  # from the header: a decompression bomb is refused before it is decoded
    if size is None:
        raise HttpError(400, f"the {len(body)} bytes are not an image whose size can be read from its header; POST "
                             "the bytes of a JPEG/PNG/BMP/WebP file")
    if size[0] * size[1] > max_pixels:
        raise HttpError(413, f"image of {size[0]}x{size[1]} px (declared by its header) is over the limit of "
                             f"{max_pixels / 1e6:g} Mpx; send a smaller frame or raise --max-image-mpx")
    frame = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    if frame is None or frame.size == 0:
        raise HttpError(400, f"the {len(body)} bytes are not an image OpenCV can decode; POST the bytes of a "
                             "JPEG/PNG/BMP/WebP file")
    if frame.shape[0] * frame.shape[1] > max_pixels:
        raise HttpError(413, f"image of {frame.shape[1]}x{frame.shape[0]} px is over the limit of "
                             f"{max_pixels / 1e6:g} Mpx; send a smaller frame or raise --max-image-mpx")
    return frame


class FrontEnd:
    """Decodes, detects and aligns one request at a time per thread; ``embed`` is the batching embedder."""

    def __init__(self, config: ServeConfig, embed: EmbedCall, package: ModelPackage | None = None) -> None:
        self.config = config
        self.package = package or load_package(config.package)
        self._embed = embed
        self._takes_uint8 = config.embedder_takes_uint8  # device-resident engines take the uint8 crops
        self._local = threading.local()
        self._made: list[Recognizer] = []
        self._lock = threading.Lock()

    def process(self, body: bytes) -> dict[str, Any]:
        """JSON answer for one encoded image."""
        frame = decode_image(body, self.config.max_request_bytes, self.config.max_image_mpx * 1e6)
        try:
            faces = self._recognizer().get(frame)
        except InputImageError as exc:
            raise HttpError(400, str(exc)) from None
        return {"width": int(frame.shape[1]), "height": int(frame.shape[0]),
                "faces": [face_to_wire(f) for f in faces]}

    def _recognizer(self) -> Recognizer:
        rec = getattr(self._local, "recognizer", None)
        if rec is None:
            rec = self._local.recognizer = self._make_recognizer()
        return rec

    def _make_recognizer(self) -> Recognizer:
        from ..gallery import Gallery
        from ..package.manifest import model_id

        c = self.config
        gallery = None
        if c.gallery:  # one connection per thread; written only through admin keys (read-only without keys)
            manifest = self.package.manifest
            gallery = Gallery(c.gallery, embedding_size=manifest.embedding_size, create=False,
                              readonly=not c.api_keys, model_id=model_id(manifest))
        # graphs run in the embedder: this Recognizer detects and aligns, and never loads them
        rec = Recognizer.from_config(c.recognizer_config(), package=self.package,
                                     runner=RemoteRunner(self._embed, self._takes_uint8), gallery=gallery)
        with self._lock:
            self._made.append(rec)
        return rec

    def close(self) -> None:
        with self._lock:
            for rec in self._made:
                rec.close()
                if rec.gallery is not None:
                    rec.gallery.close()
            self._made.clear()
