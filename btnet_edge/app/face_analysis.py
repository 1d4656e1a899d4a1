"""insightface's ``FaceAnalysis`` calls over a btnet-edge package: ``prepare``, ``get``, ``draw_on``.

Code written as ``app = FaceAnalysis(...); app.prepare(ctx_id=0, det_size=(640, 640));
faces = app.get(img)`` runs unchanged, except that ``name`` is a package folder (made by
``btnet-edge export --trunk w600k_r50.onnx``) rather than a model-pack name. What
differs is declared, not hidden: see docs/insightface-migration.md.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from ..errors import BackendError, ConfigError
from ..package.loader import load_package
from ..pipeline.face import Face
from ..pipeline.face_access import NOT_COMPUTED

if TYPE_CHECKING:
    from ..pipeline.recognizer import Recognizer

log = logging.getLogger(__name__)

SUPPORTED_MODULES = ("detection", "recognition")
BOX_BGR = (0, 0, 255)  # insightface draws boxes red and the 5 points in colour
KPS_BGR = ((0, 0, 255), (0, 255, 0), (255, 0, 0), (0, 255, 255), (255, 0, 255))


def _device(ctx_id: int, providers: Sequence[str] | None) -> str:
    """insightface's ctx_id (< 0: CPU, 0: first GPU) and providers -> our device."""
    from ..backends.ort import ort_providers

    wants_cuda = ctx_id >= 0 if providers is None else "CUDAExecutionProvider" in providers
    if not wants_cuda:
        return "cpu"
    if ctx_id > 0:
        raise ConfigError(f"ctx_id={ctx_id}: btnet-edge runs on the default CUDA device; set "
                          f"CUDA_VISIBLE_DEVICES={ctx_id} and pass ctx_id=0")
    try:
        ort_providers("cuda")
    except BackendError as exc:
        if providers is not None:  # asked for by name: an error, not a silent CPU run
            raise
        log.warning("ctx_id=0 asks for a GPU, but %s; running on the CPU (pass ctx_id=-1 to say so)", exc)
        return "cpu"
    return "cuda"


class FaceAnalysis:
    """``FaceAnalysis(package)`` then ``prepare(ctx_id, det_thresh, det_size)``, ``get(img)``, ``draw_on(img, faces)``.

    ``name``: a package folder (or a folder name under ``root``). ``allowed_modules``:
    insightface's module names; btnet-edge has detection and recognition only, and
    asking for another is an error. ``detector``: None for the bundled RetinaFace, or
    an SCRFD/YuNet ONNX path with its ``detector_kind`` (insightface's ``det_10g.onnx``:
    ``detector_kind="scrfd"``).
    ``gallery``: an optional :class:`~btnet_edge.Gallery` that fills ``face.identity``.
    """

    def __init__(self, name: str | Path, root: str | Path | None = None, allowed_modules: Sequence[str] | None = None,
                 providers: Sequence[str] | None = None, *, detector: str | Path | None = None,
                 detector_kind: str | None = None, backend: str = "auto", gallery=None) -> None:
        folder = Path(root).expanduser() / name if root is not None else Path(name)
        extra = sorted(set(allowed_modules or SUPPORTED_MODULES) - set(SUPPORTED_MODULES))
        if extra:
            raise ConfigError(f"allowed_modules {extra}: btnet-edge has no such models (it runs "
                              f"{', '.join(SUPPORTED_MODULES)}); drop them, or run insightface for those attributes")
        self.package = load_package(folder)  # verified now, as insightface loads its models in __init__
        self.providers = list(providers) if providers is not None else None
        self.detector_spec, self.detector_kind = detector, detector_kind
        self.backend, self.gallery = backend, gallery
        self.recognizer: Recognizer | None = None
        self.det_size: tuple[int, int] | None = None
        self.models = {"detection": str(detector or "retinaface"), "recognition": self.package.manifest.name}

    def prepare(self, ctx_id: int = 0, det_thresh: float = 0.5, det_size: tuple[int, int] | None = (640, 640)) -> None:
        """Load the sessions. ``det_size`` (w, h): one detection pass with the frame's long side scaled to
        ``max(det_size)``, as insightface does (the same faces); None uses btnet-edge's default detection
        plan, which adds an enlarged pass for faces down to 10 px (pipeline/detect_plan.py)."""
        from ..pipeline.config import RecognizerConfig
        from ..pipeline.detect_plan import DetectPlan
        from ..pipeline.recognizer import Recognizer

        if det_size is not None and (len(det_size) != 2 or min(det_size) < 32):
            raise ConfigError(f"det_size={det_size!r} should be (width, height) in pixels, each >= 32, or None")
        if not 0.0 < det_thresh < 1.0:
            raise ConfigError(f"det_thresh={det_thresh!r} should be between 0 and 1")
        if self.recognizer is not None:
            self.recognizer.close()
        device = _device(ctx_id, self.providers)
        plan = None if det_size is None else DetectPlan(det_size=int(max(det_size)), min_face_px=0)
        config = RecognizerConfig(package=str(self.package.folder), backend=self.backend, device=device,
                                  detector=None if self.detector_spec is None else str(self.detector_spec),
                                  detector_kind=self.detector_kind, det_threshold=det_thresh, det_plan=plan)
        self.recognizer = Recognizer.from_config(config, package=self.package, gallery=self.gallery)
        self.det_size = None if det_size is None else (int(det_size[0]), int(det_size[1]))

    def get(self, img: np.ndarray, max_num: int = 0) -> list[Face]:
        """Faces of a BGR uint8 image; ``max_num`` > 0 keeps the largest, most central ones (insightface's rule)."""
        if self.recognizer is None:
            raise ConfigError("call app.prepare(ctx_id=..., det_size=...) before app.get(); it loads the models")
        faces = self.recognizer.get(img)
        if max_num > 0 and len(faces) > max_num:
            faces = [faces[i] for i in sorted(keep_main_faces(faces, img.shape[:2], max_num))]
        return faces

    def draw_on(self, img: np.ndarray, faces: Sequence[Face]) -> np.ndarray:
        """A copy of ``img`` with each face's box and 5 points, and its identity when a gallery named it."""
        canvas = img.copy()
        for face in faces:
            x1, y1, x2, y2 = (int(v) for v in np.asarray(face.bbox).round())
            cv2.rectangle(canvas, (x1, y1), (x2, y2), BOX_BGR, 2)
            for (x, y), color in zip(np.asarray(face.kps).round().astype(int), KPS_BGR):
                cv2.circle(canvas, (int(x), int(y)), 1, color, 2)
            if face.identity:
                cv2.putText(canvas, f"{face.identity} {face.identity_score:.2f}", (x1 - 1, y1 - 4),
                            cv2.FONT_HERSHEY_COMPLEX, 0.7, (0, 255, 0), 1)
        return canvas

    def close(self) -> None:
        if self.recognizer is not None:
            self.recognizer.close()
            self.recognizer = None

    def __enter__(self) -> FaceAnalysis:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def keep_main_faces(faces: Sequence[Face], image_hw: tuple[int, int], max_num: int) -> list[int]:
    """Indices of the ``max_num`` faces with the largest area minus twice the squared distance to the centre.

    insightface's ``metric='default'`` in ``RetinaFace.detect`` / ``SCRFD.detect``.
    """
    boxes = np.stack([np.asarray(f.bbox, np.float64) for f in faces])
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    centre_y, centre_x = image_hw[0] // 2, image_hw[1] // 2
    offset = ((boxes[:, 0] + boxes[:, 2]) / 2 - centre_x) ** 2 + ((boxes[:, 1] + boxes[:, 3]) / 2 - centre_y) ** 2
    return list(np.argsort(area - 2.0 * offset)[::-1][:max_num])


__all__ = ["NOT_COMPUTED", "FaceAnalysis", "keep_main_faces"]
