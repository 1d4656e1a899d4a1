"""Detection plans: at which scales (and in which tiles) a frame is shown to a detector.

A detector knows one scale; this module decides the scales, shared by every detector
family. The default plan has two passes, merged by NMS:

- **coarse**: the frame resized so its long side is ``det_size`` (640, as insightface's
  ``det_size``), for large faces up to full-frame close-ups, which a native-resolution
  pass splits into fragments or misses (they outgrow the largest anchors);
- **enlarged**: the frame enlarged so the smallest face asked for (``min_face_px``)
  reaches the size the detector finds reliably (``RELIABLE_FACE_PX``), cut into
  overlapping tiles of ``tile`` px so memory stays bounded. It runs only when the
  coarse pass cannot see faces that small.

Each pass owns a range of face sizes (frame px) and drops boxes outside it, so a big
face is never reported as fragments by the enlarged pass and a small one never as a
coarse blur. The ranges overlap a little (``_RANGE_SLACK``) so no face falls between.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, NamedTuple

import cv2
import numpy as np

from ..errors import ConfigError

log = logging.getLogger(__name__)

RELIABLE_FACE_PX = 25.0  # RetinaFace-0.25 finds ~75 % of faces this big in pass px, ~95 % at 30 (docs/detection.md)
COARSE_MIN_FACE_PX = 32.0  # the coarse pass owns faces from this size in its own pixels
MAX_UPSCALE = 4.0
_RANGE_SLACK = 1.25  # each pass keeps faces this factor beyond its range; NMS merges the doubles
_TILE_EDGE_MARGIN_PX = 2.0
DOUBT_SCORE = 0.7  # enlarged-pass boxes the coarse pass should have seen need this score
FRAGMENT_SIDE_RATIO = 4.0  # a box this many times smaller than a face it overlaps ...
FRAGMENT_OVERLAP = 0.3  # ... by this share of its own area is a piece of that face (hair, ear), not a face
FRAGMENT_MARGIN = 0.1  # the larger face's box grown by this share of its side: hair and ears lie there
PLAN_OPTIONS = ("det_size", "min_face_px", "upscale", "tile", "max_side", "second_look", "face_cues",
                "stream_budget")
DEFAULT_STREAM_BUDGET = 1.0  # enlarged-pass pixels per video frame, in coarse passes: 720p at <= 2.5x coarse-only


class DetectPass(NamedTuple):
    """One pass: ``scale`` pass px per frame px, optional tiles, and the face sizes (frame px) it keeps."""

    name: str
    scale: float
    tile: int | None
    overlap: int
    min_face_px: float
    max_face_px: float
    doubt_above_px: float = np.inf  # boxes larger than this (frame px) need DOUBT_SCORE
    tile_height: int | None = None  # tile height when it differs from ``tile`` (fitted to an engine's max input)


@dataclass(frozen=True)
class DetectPlan:
    """User controls of multi-scale detection; ``passes(h, w)`` turns them into passes for one frame size.

    ``det_size``: long side of the coarse pass (px). ``min_face_px``: smallest face to look
    for (frame px); None or 0 skips the enlarged pass (faster, for apps that need only
    faces of ~``RELIABLE_FACE_PX * frame_long_side / det_size`` px and up). ``upscale``:
    the enlarged pass's factor, None to derive it from ``min_face_px``. ``tile``: tile side
    of the enlarged pass (px), None for one piece. ``max_side``: no pass is run on an
    image longer than this (px); it bounds compute on 4K frames at the cost of small faces.
    ``second_look`` and ``face_cues``: boxes only the enlarged pass found must be found again
    at larger sizes, and have a face's landmark layout and contrast (pipeline/detect_verify.py).
    ``stream_budget``: on video (pipeline/stream.py), the enlarged pass's pixels per frame as a
    multiple of the coarse pass's; its tiles are spread over frames to fit.
    """

    det_size: int = 640
    min_face_px: float | None = 10.0
    upscale: float | None = None
    tile: int | None = 1920
    max_side: int | None = 4800
    second_look: bool = True
    face_cues: bool = True
    stream_budget: float = DEFAULT_STREAM_BUDGET

    def __post_init__(self) -> None:
        if not isinstance(self.det_size, int) or self.det_size < 64:
            raise ConfigError(f"det_size={self.det_size!r} must be an int >= 64 (px; 640 is the usual value)")
        if self.min_face_px is not None and not (isinstance(self.min_face_px, (int, float)) and self.min_face_px >= 0):
            raise ConfigError(f"min_face_px={self.min_face_px!r} must be >= 0 (px; 0 or None skips the enlarged pass)")
        if self.upscale is not None and not (isinstance(self.upscale, (int, float))
                                             and 1.0 <= self.upscale <= MAX_UPSCALE):
            raise ConfigError(f"upscale={self.upscale!r} must be between 1 and {MAX_UPSCALE}, or None to derive it "
                              "from min_face_px")
        if self.tile is not None and (not isinstance(self.tile, int) or self.tile < 256):
            raise ConfigError(f"tile={self.tile!r} must be an int >= 256 (px, e.g. 1920), or None for no tiling")
        if self.max_side is not None and (not isinstance(self.max_side, int) or self.max_side < 64):
            raise ConfigError(f"max_side={self.max_side!r} must be an int >= 64 (px), or None for no cap")
        for name in ("second_look", "face_cues"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}={getattr(self, name)!r} must be True or False")
        budget = self.stream_budget
        if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 0.05 <= budget <= 1000:
            raise ConfigError(f"stream_budget={budget!r} must be a number of coarse passes per frame between 0.05 "
                              f"and 1000 (default {DEFAULT_STREAM_BUDGET}; CLI: --det-budget)")

    def passes(self, height: int, width: int) -> list[DetectPass]:
        long_side = max(height, width)
        cap = MAX_UPSCALE if self.max_side is None else min(MAX_UPSCALE, self.max_side / long_side)
        coarse = min(self.det_size / long_side, cap)
        wanted = self.min_face_px or 0.0
        if wanted <= 0 or wanted * coarse >= RELIABLE_FACE_PX:
            return [DetectPass("coarse", coarse, None, 0, 0.0, np.inf)]
        enlarged = min(self.upscale or RELIABLE_FACE_PX / wanted, cap)
        split = COARSE_MIN_FACE_PX / coarse
        if enlarged <= coarse * _RANGE_SLACK:
            return [DetectPass("coarse", coarse, None, 0, 0.0, np.inf)]
        if wanted * enlarged < RELIABLE_FACE_PX:
            log.debug("faces of %.0f px reach only %.1f px at the capped scale %.2f (max_side=%s)", wanted,
                      wanted * enlarged, enlarged, self.max_side)
        # Overlap: the largest face the enlarged pass owns fits whole in some tile.
        overlap = int(np.ceil(split * _RANGE_SLACK * enlarged)) + 8
        tile = None if self.tile is None else max(self.tile, 2 * overlap + 32)
        # A face the coarse pass sees at well above its reliable size but missed is more likely a texture
        # (a wrist, a glass) that enlargement made face-like: the enlarged pass keeps it only if confident.
        doubt = _RANGE_SLACK * RELIABLE_FACE_PX / coarse
        return [DetectPass("coarse", coarse, None, 0, split / _RANGE_SLACK, np.inf),
                DetectPass("enlarged", enlarged, tile, overlap, 0.0, split * _RANGE_SLACK, doubt)]


def fit_passes(passes: list[DetectPass], height: int, width: int, max_hw: tuple[int, int],
               align: int = 32) -> list[DetectPass]:
    """``passes`` changed so that every input they make, padded to ``align``, fits ``max_hw`` (an engine's profile).

    A detector engine takes inputs up to its profile's max (1920x1920 desktop, 736x1280 Jetson). A
    pass whose pieces are larger is tiled in pieces no larger than the max (keeping its overlap);
    an untiled pass (the coarse one, whose faces may fill the frame) is shrunk instead, losing
    only faces the enlarged pass owns. Inputs under the profile's min are padded by the detector.
    """
    max_h, max_w = (int(v) // align * align for v in max_hw)
    fitted = []
    for step in passes:
        sh, sw = max(1, round(height * step.scale)), max(1, round(width * step.scale))
        piece_h, piece_w = (sh, sw) if step.tile is None else (min(sh, step.tile_height or step.tile),
                                                                min(sw, step.tile))
        if -(-piece_h // align) * align <= max_h and -(-piece_w // align) * align <= max_w:
            fitted.append(step)
        elif step.tile is not None or step.overlap:
            tile_w, tile_h = min(step.tile or sw, max_w), min(step.tile_height or step.tile or sh, max_h)
            if min(tile_w, tile_h) <= 2 * step.overlap + 32:
                raise ConfigError(f"the detector's max input {max_hw} cannot hold tiles with a {step.overlap} px "
                                  "overlap: lower --min-face or rebuild the detector with a larger max_hw")
            log.debug("%s pass: tiles of %dx%d px to fit the detector's max input %s", step.name, tile_w, tile_h,
                      max_hw)
            fitted.append(step._replace(tile=tile_w, tile_height=tile_h))
        else:
            scale = min(step.scale, max_h / height, max_w / width) * (1 - 1e-9)
            log.debug("%s pass: scale %.3f -> %.3f to fit the detector's max input %s", step.name, step.scale,
                      scale, max_hw)
            fitted.append(step._replace(scale=scale))
    return fitted


def resize_for(img: np.ndarray, scale: float) -> np.ndarray:
    """The frame at ``scale``: area interpolation to shrink, linear to enlarge."""
    if abs(scale - 1.0) < 1e-6:
        return img
    height, width = img.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def run_pass(find: Callable, img: np.ndarray, step: DetectPass):
    """Candidates of one pass in frame pixels, restricted to the face sizes it owns.

    ``find(image) -> Candidates`` is the detector at one scale. Tiles: each face is kept
    from the one tile whose core holds its centre and that it is not cut by an inner edge of.
    """
    from .detect import Candidates

    scaled = resize_for(img, step.scale)
    height, width = scaled.shape[:2]
    tile_h = step.tile_height or step.tile or height
    if step.tile is None or (height <= tile_h and width <= step.tile):
        found = find(scaled)
    else:
        parts = []
        for y_span in tile_spans(height, tile_h, step.overlap):
            for x_span in tile_spans(width, step.tile, step.overlap):
                x0, x1 = x_span[:2]
                y0, y1 = y_span[:2]
                part = find(np.ascontiguousarray(scaled[y0:y1, x0:x1])).scaled(1.0, x0, y0)
                parts.append(part.take(in_tile(part.boxes, x_span, y_span, width, height)))
        found = Candidates.concat(parts)
    return in_range(found.scaled(1.0 / step.scale), step)


def in_tile(boxes: np.ndarray, x_span: tuple, y_span: tuple, width: int, height: int) -> np.ndarray:
    """Mask of boxes (pass px) a tile keeps: centre in its core, not cut by an inner edge (frame edges may cut)."""
    x0, x1, core_x0, core_x1 = x_span
    y0, y1, core_y0, core_y1 = y_span
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    keep = (cx >= core_x0) & (cx < core_x1) & (cy >= core_y0) & (cy < core_y1)
    m = _TILE_EDGE_MARGIN_PX
    keep &= (x0 <= 0) | (boxes[:, 0] > x0 + m)
    keep &= (y0 <= 0) | (boxes[:, 1] > y0 + m)
    keep &= (x1 >= width) | (boxes[:, 2] < x1 - m)
    keep &= (y1 >= height) | (boxes[:, 3] < y1 - m)
    return keep


def in_range(found, step: DetectPass):
    """Candidates (frame px) within the face sizes ``step`` owns, doubtful large ones only when confident."""
    sides = np.maximum(found.boxes[:, 2] - found.boxes[:, 0], found.boxes[:, 3] - found.boxes[:, 1])
    keep = (sides >= step.min_face_px) & (sides < step.max_face_px)
    keep &= (sides <= step.doubt_above_px) | (found.scores >= DOUBT_SCORE)
    return found.take(keep)


def tile_spans(length: int, tile: int, overlap: int) -> list[tuple[int, int, float, float]]:
    """(start, end, core_start, core_end) per tile along one axis; cores split overlaps at their middle.

    As few tiles as fit ``tile``, spread evenly so neighbours overlap by about ``overlap``:
    the pixels run twice stay few, and every tile has the same size (one input shape).
    """
    if length <= tile:
        return [(0, length, -np.inf, np.inf)]
    count = int(np.ceil((length - overlap) / (tile - overlap)))
    size = int(np.ceil((length + (count - 1) * overlap) / count))
    starts = [round(i * (length - size) / (count - 1)) for i in range(count)]
    ends = [s + size for s in starts]
    spans = []
    for i, (start, end) in enumerate(zip(starts, ends)):
        core_start = (start + ends[i - 1]) / 2 if i > 0 else -np.inf
        core_end = (starts[i + 1] + end) / 2 if i + 1 < len(starts) else np.inf
        spans.append((start, end, core_start, core_end))
    return spans


def fragments(boxes: np.ndarray) -> np.ndarray:
    """Mask of boxes that overlap a much larger face (grown by ``FRAGMENT_MARGIN``) by ``FRAGMENT_OVERLAP`` of their
    area.

    Enlarged close-ups show hair curls and ears that look like tiny faces; a real small
    face cannot sit on the head of a face four times its size.
    """
    if len(boxes) < 2:
        return np.zeros(len(boxes), bool)
    sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    grown = boxes + np.outer(sides * FRAGMENT_MARGIN, [-1, -1, 1, 1]).astype(boxes.dtype)
    ix = np.clip(np.minimum(boxes[:, None, 2], grown[None, :, 2]) - np.maximum(boxes[:, None, 0], grown[None, :, 0]),
                 0, None)
    iy = np.clip(np.minimum(boxes[:, None, 3], grown[None, :, 3]) - np.maximum(boxes[:, None, 1], grown[None, :, 1]),
                 0, None)
    areas = np.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1e-9)
    share = ix * iy / areas[:, None]  # [i, j]: share of box i inside box j
    larger = sides[None, :] >= FRAGMENT_SIDE_RATIO * sides[:, None]
    return ((share > FRAGMENT_OVERLAP) & larger).any(axis=1)
