"""Face detection: boxes, five landmarks and scores, from 7 px faces to full-frame close-ups.

Tiny faces (8-20 px) are the reason this SDK exists, so a frame is not only shrunk
to a network size (that pass finds the large faces) but also enlarged, in tiles, for
the small ones: :mod:`btnet_edge.pipeline.detect_plan` holds those scales. Each model
family is a small decoder in :mod:`btnet_edge.pipeline.detectors` that sees one image
at one scale; this module holds what they share (input checks, the plan, NMS) and
the factory.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..errors import ConfigError
from .detect_plan import PLAN_OPTIONS, DetectPlan, fit_passes, fragments, run_pass
from .detect_verify import SURE_SCORE, face_cues, second_look
from .detectors._nms import box_iou, nms
from .image import check_bgr_image

log = logging.getLogger(__name__)

DEFAULT_DETECTOR = "retinaface"
DETECTOR_KINDS = ("retinaface", "scrfd", "yunet")
TILE_CONTAINMENT = 0.7  # a box this much inside a better one is the same face seen at another scale or tile
VERIFY_COARSE_IOU = 0.3  # an enlarged-pass box overlapping a coarse-pass box this much needs no second look
_MAX_CANDIDATES = 5000  # before NMS: bounds its cost on pathological frames
_OPTIONS = {  # per family: the keyword options its class takes besides FaceDetector's
    "retinaface": (),
    "scrfd": ("strides", "anchors_per_location"),
    "yunet": ("input_size",),
}
_COMMON_OPTIONS = ("score_threshold", "nms_threshold", "plan")


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
    def empty() -> Candidates:
        return Candidates(np.zeros((0, 4), np.float32), np.zeros((0, 5, 2), np.float32), np.zeros(0, np.float32))

    def take(self, index: np.ndarray) -> Candidates:
        return Candidates(self.boxes[index], self.kps[index], self.scores[index])

    def scaled(self, factor: float, dx: float = 0.0, dy: float = 0.0) -> Candidates:
        """Coordinates times ``factor`` then shifted by (dx, dy)."""
        shift = np.array([dx, dy], np.float32)
        boxes = self.boxes * np.float32(factor) + np.tile(shift, 2)
        return Candidates(boxes, self.kps * np.float32(factor) + shift, self.scores)

    @staticmethod
    def concat(parts: list[Candidates]) -> Candidates:
        if not parts:
            return Candidates.empty()
        return Candidates(*(np.concatenate(arrays) for arrays in zip(*parts)))


class FaceDetector(ABC):
    """Shared front end; subclasses implement ``_candidates`` for one image at one scale.

    ``score_threshold`` None uses the model's own default. ``plan`` (a :class:`DetectPlan`)
    decides the scales and tiles: by default a coarse pass at ``det_size`` 640 for large
    faces and an enlarged, tiled pass for faces down to ``min_face_px`` 10 px.
    ``pass_seconds`` accumulates the time spent per pass, for benchmarks.
    """

    name = "base"
    default_score_threshold = 0.5

    def __init__(self, score_threshold: float | None = None, nms_threshold: float = 0.4,
                 plan: DetectPlan | None = None) -> None:
        self.score_threshold = self.default_score_threshold if score_threshold is None else float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.plan = plan or DetectPlan()
        self.pass_seconds: dict[str, float] = defaultdict(float)
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ConfigError(f"score_threshold={self.score_threshold} is outside 0..1; "
                              f"try {self.default_score_threshold}")
        if not 0.0 < self.nms_threshold <= 1.0:
            raise ConfigError(f"nms_threshold={self.nms_threshold} is outside (0, 1]; 0.4 is the usual value")

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in a BGR uint8 frame, best score first, in the frame's pixel coordinates."""
        img = check_bgr_image(image)
        passes = self.plan.passes(*img.shape[:2])
        limits = self.input_limits()
        if limits is not None:  # an engine's profile: tile or shrink passes to its max (min is padded to)
            passes = fit_passes(passes, img.shape[0], img.shape[1], limits[1])
        coarse: list[Candidates] = []
        enlarged: list[Candidates] = []
        for step in passes:
            start = time.perf_counter()
            (enlarged if step.name == "enlarged" else coarse).append(run_pass(self._candidates, img, step))
            self.pass_seconds[step.name] += time.perf_counter() - start
        merged = len(passes) > 1 or any(step.tile for step in passes)
        return self.merge(img, Candidates.concat(coarse), Candidates.concat(enlarged), merged)

    def merge(self, img: np.ndarray, coarse: Candidates, enlarged: Candidates, merged: bool = True,
              trusted: np.ndarray | None = None) -> list[Detection]:
        """One list of faces from the passes' candidates: NMS, fragments, then the checks of enlarged-only boxes.

        Shared by :meth:`detect` and the stream schedule (pipeline/stream.py), so stills and video
        frames keep the same rules. ``trusted``: boxes (N, 4) already checked (a video's tracks):
        enlarged-pass boxes on them need no new check, as those on a coarse-pass box.
        """
        found = Candidates.concat([coarse, enlarged])
        from_enlarged = np.arange(len(found.scores)) >= len(coarse.scores)
        if len(found.scores) > _MAX_CANDIDATES:
            order = np.argsort(-found.scores, kind="stable")[:_MAX_CANDIDATES]
            found, from_enlarged = found.take(order), from_enlarged[order]
        keep = nms(found.boxes, found.scores, self.nms_threshold, TILE_CONTAINMENT if merged else None)
        found, from_enlarged = found.take(keep), from_enlarged[keep]
        if merged:
            keep = ~fragments(found.boxes)
            found, from_enlarged = found.take(keep), from_enlarged[keep]
        seen = coarse.boxes if trusted is None or not len(trusted) else np.concatenate([coarse.boxes, trusted])
        found = self._verify(img, found, from_enlarged, seen)
        return [_detection(b, k, s) for b, k, s in zip(found.boxes, found.kps, found.scores)]

    def input_limits(self) -> tuple[tuple[int, int], tuple[int, int]] | None:
        """((min_h, min_w), (max_h, max_w)) of the input the detector takes (an engine's profile), None if any."""
        return None

    def _verify(self, img: np.ndarray, found: Candidates, from_enlarged: np.ndarray,
                coarse_boxes: np.ndarray) -> Candidates:
        """``found`` less the enlarged-only boxes that fail the landmark or second-look checks (detect_verify.py)."""
        doubtful = from_enlarged.copy()
        for i in np.flatnonzero(doubtful):
            if len(coarse_boxes) and (box_iou(found.boxes[i], coarse_boxes) >= VERIFY_COARSE_IOU).any():
                doubtful[i] = False  # the coarse pass saw it too
        if not doubtful.any() or not (self.plan.face_cues or self.plan.second_look):
            return found
        start = time.perf_counter()
        keep = np.ones(len(found.scores), bool)
        index = np.flatnonzero(doubtful)
        if self.plan.face_cues:
            keep[index] = face_cues(img, found.boxes[index], found.kps[index])
            index = index[keep[index]]
        index = index[found.scores[index] < SURE_SCORE]
        if self.plan.second_look and index.size:
            keep[index] = second_look(self._candidates_batch, img, found.boxes[index], found.kps[index])
        self.pass_seconds["verify"] += time.perf_counter() - start
        return found.take(keep)

    def _candidates_batch(self, images: list[np.ndarray]) -> list[Candidates]:
        """``_candidates`` of several images of one shape; families whose graph takes a batch run it once."""
        return [self._candidates(np.ascontiguousarray(image)) for image in images]

    @abstractmethod
    def _candidates(self, img: np.ndarray) -> Candidates:
        """Decoded faces scoring at least ``score_threshold`` in ``img`` (contiguous BGR uint8), before NMS."""

    def close(self) -> None:  # noqa: B027 - an optional hook: detectors without a session have nothing to close
        """Release the model; the default holds nothing."""

    def __enter__(self) -> FaceDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _detection(box: np.ndarray, kps: np.ndarray, score: float) -> Detection:
    box = np.array(box, dtype=np.float32)
    kps = np.array(kps, dtype=np.float32).reshape(5, 2)
    box.setflags(write=False)
    kps.setflags(write=False)
    return Detection(bbox=box, kps=kps, score=float(score))


def fold_plan_options(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with the DetectPlan fields given one by one (det_size, ..., max_side) folded into ``plan``."""
    options = dict(options)
    plan_fields = {k: options.pop(k) for k in PLAN_OPTIONS if k in options}
    if plan_fields:
        options["plan"] = replace(options.get("plan") or DetectPlan(), **plan_fields)
    return options


def create_detector(spec: str | Path | None = None, *, kind: str | None = None, device: str = "cpu",
                    threads: int = 0, **options: Any) -> FaceDetector:
    """Build a detector from a declared choice, never from the graph's shapes.

    ``spec`` None or "retinaface": the bundled RetinaFace-MobileNet0.25. A path to an
    ``.onnx`` file: its family comes from ``kind`` ("retinaface", "scrfd", "yunet"), or
    else from the file name containing one of those words. ``options``: those of
    :class:`FaceDetector` (score_threshold, nms_threshold, plan), the fields of
    :class:`DetectPlan` one by one (det_size, min_face_px, upscale, tile, max_side),
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
    unknown = sorted(set(options) - set(_COMMON_OPTIONS) - set(PLAN_OPTIONS) - set(_OPTIONS[kind]))
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown} for the {kind} detector; "
                          f"it takes {', '.join(_COMMON_OPTIONS + PLAN_OPTIONS + _OPTIONS[kind])}")
    options = fold_plan_options(options)
    log.debug("detector: %s (%s)", kind, model or "bundled weights")
    if kind == "retinaface":
        from .detectors.retinaface import RetinaFaceDetector
        return RetinaFaceDetector(model, device=device, threads=threads, **options)
    if kind == "scrfd":
        from .detectors.scrfd import ScrfdDetector
        return ScrfdDetector(model, device=device, threads=threads, **options)
    from .detectors.yunet import YuNetDetector
    return YuNetDetector(model, device=device, threads=threads, **options)
