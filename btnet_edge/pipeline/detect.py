"""Face detection: boxes, five landmarks and scores, at the frame's own resolution.

Tiny faces (8-20 px) are the reason this SDK exists, so a frame is never shrunk
to a fixed network size: it is detected as it is, shrunk only when its long side
exceeds ``max_side``, and optionally cut into overlapping tiles. Each model
family is a small decoder in :mod:`btnet_edge.pipeline.detectors`; this module
holds what they share (input checks, resizing, tiling, NMS) and the factory.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np

from ..errors import ConfigError
from .detectors._nms import nms
from .image import check_bgr_image

log = logging.getLogger(__name__)

DEFAULT_DETECTOR = "retinaface"
DETECTOR_KINDS = ("retinaface", "scrfd", "yunet")
TILE_CONTAINMENT = 0.7  # a tile's box this much inside a better box is the same face seen at another scale
_TILE_EDGE_MARGIN_PX = 2.0
_MAX_CANDIDATES = 5000  # before NMS: bounds its cost on pathological frames
_OPTIONS = {  # per family: the keyword options its class takes besides FaceDetector's
    "retinaface": (),
    "scrfd": ("strides", "anchors_per_location"),
    "yunet": ("input_size",),
}
_COMMON_OPTIONS = ("score_threshold", "nms_threshold", "max_side", "tile", "tile_overlap", "min_side")
MAX_UPSCALE = 4.0


@dataclass(frozen=True, eq=False)
class Detection:
    """One face: ``bbox`` x1,y1,x2,y2 (4,) and ``kps`` (5, 2) float32 in frame pixels, read-only.

    Landmark order: left eye, right eye, nose, left mouth corner, right mouth corner
    (as seen in the image), the order the ArcFace alignment template uses. Boxes are not
    clipped to the frame, so a face cut by the border keeps its true geometry.
    """

    bbox: np.ndarray
    kps: np.ndarray
    score: float

    @property
    def width(self) -> float:
        return float(self.bbox[2] - self.bbox[0])

    @property
    def height(self) -> float:
        return float(self.bbox[3] - self.bbox[1])


class Candidates(NamedTuple):
    """Decoder output before NMS: boxes (N, 4), kps (N, 5, 2), scores (N,), float32, input pixels."""

    boxes: np.ndarray
    kps: np.ndarray
    scores: np.ndarray

    @staticmethod
    def empty() -> "Candidates":
        return Candidates(np.zeros((0, 4), np.float32), np.zeros((0, 5, 2), np.float32), np.zeros(0, np.float32))

    def take(self, index: np.ndarray) -> "Candidates":
        return Candidates(self.boxes[index], self.kps[index], self.scores[index])

    def scaled(self, factor: float, dx: float = 0.0, dy: float = 0.0) -> "Candidates":
        """Coordinates times ``factor`` then shifted by (dx, dy)."""
        shift = np.array([dx, dy], np.float32)
        boxes = self.boxes * np.float32(factor) + np.tile(shift, 2)
        return Candidates(boxes, self.kps * np.float32(factor) + shift, self.scores)

    @staticmethod
    def concat(parts: list["Candidates"]) -> "Candidates":
        if not parts:
            return Candidates.empty()
        return Candidates(*(np.concatenate(arrays) for arrays in zip(*parts)))


class FaceDetector(ABC):
    """Shared front end; subclasses implement ``_candidates`` for one frame or tile.

    ``score_threshold`` None uses the model's own default; ``max_side`` None never
    shrinks; ``tile`` (e.g. 640) detects in overlapping tiles of that size plus one
    whole-frame pass at tile size for faces larger than ``tile_overlap`` (default tile/4).
    ``min_side``: frames whose long side is below it are enlarged to it (at most 4x) for
    detection only, so 7-12 px faces in small frames reach the detector's smallest anchors
    (16 px at stride 8 for RetinaFace); recognition still reads the frame's own pixels.
    """

    name = "base"
    default_score_threshold = 0.5

    def __init__(self, score_threshold: float | None = None, nms_threshold: float = 0.4,
                 max_side: int | None = 1920, tile: int | None = None, tile_overlap: int | None = None,
                 min_side: int | None = 640) -> None:
        self.score_threshold = self.default_score_threshold if score_threshold is None else float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.max_side = max_side
        self.min_side = min_side
        self.tile = tile
        self.tile_overlap = (tile // 4 if tile else 0) if tile_overlap is None else int(tile_overlap)
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ConfigError(f"score_threshold={self.score_threshold} is outside 0..1; try {self.default_score_threshold}")
        if not 0.0 < self.nms_threshold <= 1.0:
            raise ConfigError(f"nms_threshold={self.nms_threshold} is outside (0, 1]; 0.4 is the usual value")
        if max_side is not None and (not isinstance(max_side, int) or max_side < 32):
            raise ConfigError(f"max_side={max_side!r} must be an int >= 32 (pixels), or None to never shrink frames")
        if min_side is not None and (not isinstance(min_side, int) or min_side < 32):
            raise ConfigError(f"min_side={min_side!r} must be an int >= 32 (pixels), or None to never enlarge frames")
        if tile is not None:
            if not isinstance(tile, int) or tile < 64:
                raise ConfigError(f"tile={tile!r} must be an int >= 64 (pixels, e.g. 640), or None for no tiling")
            if not 0 <= self.tile_overlap < tile // 2:
                raise ConfigError(f"tile_overlap={self.tile_overlap} must be in 0..{tile // 2 - 1} for tile={tile}")

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in a BGR uint8 frame, best score first, in the frame's pixel coordinates."""
        img = check_bgr_image(image)
        height, width = img.shape[:2]
        scale = 1.0
        if self.max_side is not None and max(height, width) > self.max_side:
            scale = self.max_side / max(height, width)
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
            log.debug("%s: frame %dx%d shrunk to %dx%d (max_side=%d)", self.name, width, height, *size, self.max_side)
        elif self.min_side is not None and max(height, width) < self.min_side:
            scale = min(self.min_side / max(height, width), MAX_UPSCALE)
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            img = cv2.resize(img, size, interpolation=cv2.INTER_LINEAR)
        tiled = self.tile is not None and max(img.shape[:2]) > self.tile
        found = self._tiled(img) if tiled else self._candidates(img)
        if len(found.scores) > _MAX_CANDIDATES:
            found = found.take(np.argsort(-found.scores, kind="stable")[:_MAX_CANDIDATES])
        keep = nms(found.boxes, found.scores, self.nms_threshold, TILE_CONTAINMENT if tiled else None)
        found = found.take(keep).scaled(1.0 / scale)
        return [_detection(b, k, s) for b, k, s in zip(found.boxes, found.kps, found.scores)]

    def _tiled(self, img: np.ndarray) -> Candidates:
        """Whole frame at tile size for big faces, then tiles at full resolution; each face kept from one tile only."""
        height, width = img.shape[:2]
        tile, overlap = self.tile, self.tile_overlap
        small = tile / max(height, width)
        size = (max(1, round(width * small)), max(1, round(height * small)))
        whole = self._candidates(cv2.resize(img, size, interpolation=cv2.INTER_AREA)).scaled(1.0 / small)
        # Tiles see every face smaller than the overlap whole and sharper; keep the coarse pass for the rest.
        sides = np.maximum(whole.boxes[:, 2] - whole.boxes[:, 0], whole.boxes[:, 3] - whole.boxes[:, 1])
        parts = [whole.take(sides >= overlap / 2)]
        ys, xs = _tile_spans(height, tile, overlap), _tile_spans(width, tile, overlap)
        for y0, y1, core_y0, core_y1 in ys:
            for x0, x1, core_x0, core_x1 in xs:
                found = self._candidates(np.ascontiguousarray(img[y0:y1, x0:x1])).scaled(1.0, x0, y0)
                b = found.boxes
                cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
                # Centre in this tile's core: each point of the frame lies in exactly one core.
                keep = (cx >= core_x0) & (cx < core_x1) & (cy >= core_y0) & (cy < core_y1)
                # Not cut by an inner tile edge: the whole-frame pass owns faces that big.
                m = _TILE_EDGE_MARGIN_PX
                keep &= (x0 == 0) | (b[:, 0] > x0 + m)
                keep &= (y0 == 0) | (b[:, 1] > y0 + m)
                keep &= (x1 == width) | (b[:, 2] < x1 - m)
                keep &= (y1 == height) | (b[:, 3] < y1 - m)
                parts.append(found.take(keep))
        log.debug("%s: %d tiles of %d px (overlap %d)", self.name, len(ys) * len(xs), tile, overlap)
        return Candidates.concat(parts)

    @abstractmethod
    def _candidates(self, img: np.ndarray) -> Candidates:
        """Decoded faces scoring at least ``score_threshold`` in ``img`` (contiguous BGR uint8), before NMS."""

    def close(self) -> None:
        """Release the model; the default holds nothing."""

    def __enter__(self) -> "FaceDetector":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _tile_spans(length: int, tile: int, overlap: int) -> list[tuple[int, int, float, float]]:
    """(start, end, core_start, core_end) per tile along one axis; cores split overlaps at their middle."""
    if length <= tile:
        return [(0, length, -np.inf, np.inf)]
    step = tile - overlap
    starts = list(range(0, length - tile, step)) + [length - tile]
    ends = [s + tile for s in starts]
    spans = []
    for i, (start, end) in enumerate(zip(starts, ends)):
        core_start = (start + ends[i - 1]) / 2 if i > 0 else -np.inf
        core_end = (starts[i + 1] + end) / 2 if i + 1 < len(starts) else np.inf
        spans.append((start, end, core_start, core_end))
    return spans


def _detection(box: np.ndarray, kps: np.ndarray, score: float) -> Detection:
    box = np.array(box, dtype=np.float32)
    kps = np.array(kps, dtype=np.float32).reshape(5, 2)
    box.setflags(write=False)
    kps.setflags(write=False)
    return Detection(bbox=box, kps=kps, score=float(score))


def create_detector(spec: str | Path | None = None, *, kind: str | None = None, device: str = "cpu",
                    threads: int = 0, **options: Any) -> FaceDetector:
    """Build a detector from a declared choice, never from the graph's shapes.

    ``spec`` None or "retinaface": the bundled RetinaFace-MobileNet0.25. A path to an
    ``.onnx`` file: its family comes from ``kind`` ("retinaface", "scrfd", "yunet"), or
    else from the file name containing one of those words. ``options``: those of
    :class:`FaceDetector` (score_threshold, nms_threshold, max_side, tile, tile_overlap),
    plus ``input_size`` for YuNet and ``strides``/``anchors_per_location`` for SCRFD.
    """
    if kind is not None and kind not in DETECTOR_KINDS:
        raise ConfigError(f"unknown detector kind={kind!r}; use one of {', '.join(DETECTOR_KINDS)}")
    model: Path | None = None
    if spec is None or str(spec) in DETECTOR_KINDS:
        kind = kind or (DEFAULT_DETECTOR if spec is None else str(spec))
        if kind != DEFAULT_DETECTOR:
            raise ConfigError(f"{kind} has no bundled weights; pass its .onnx file: "
                              f"create_detector('path/to/model.onnx', kind={kind!r})")
    elif str(spec).lower().endswith(".onnx"):
        model = Path(spec)
        if not model.is_file():
            raise ConfigError(f"detector model not found: {model}")
        if kind is None:
            named = [k for k in DETECTOR_KINDS if k in model.name.lower()]
            if len(named) != 1:
                raise ConfigError(
                    f"cannot tell which detector family {model.name} is from its name; declare it: "
                    "--detector-kind scrfd|yunet|retinaface (kind= in create_detector)"
                )
            kind = named[0]
    else:
        raise ConfigError(
            f"detector spec {str(spec)!r} is neither 'retinaface' nor a path to an .onnx file; "
            "leave --detector out for the default, or give an SCRFD/YuNet .onnx file (create_detector in the API)"
        )
    unknown = sorted(set(options) - set(_COMMON_OPTIONS) - set(_OPTIONS[kind]))
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown} for the {kind} detector; "
                          f"it takes {', '.join(_COMMON_OPTIONS + _OPTIONS[kind])}")
    log.debug("detector: %s (%s)", kind, model or "bundled weights")
    if kind == "retinaface":
        from .detectors.retinaface import RetinaFaceDetector
        return RetinaFaceDetector(model, device=device, threads=threads, **options)
    if kind == "scrfd":
        from .detectors.scrfd import ScrfdDetector
        return ScrfdDetector(model, device=device, threads=threads, **options)
    from .detectors.yunet import YuNetDetector
    return YuNetDetector(model, device=device, threads=threads, **options)
