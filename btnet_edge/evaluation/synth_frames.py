"""Synthetic camera frames with faces pasted at known sizes: ground truth for detection recall.

Faces are cut from real photos (every photo of the given folders, many people, not
one), each with its context, downscaled with area interpolation to a chosen face size
and blended into a plain frame with a soft edge, so no rectangle border helps or hurts
the detector. The ground-truth box of a pasted face is its source box scaled by the
same factor. Deterministic for a given seed and photo set.

Source boxes come from the default detector on the source photos at their own
resolution, keeping only large, confident faces (``MIN_SOURCE_FACE_PX``): a face is
shrunk, never enlarged, so it carries the detail of a real small face.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..pipeline.image import read_image
from ..pipeline.sources import IMAGE_SUFFIXES

log = logging.getLogger(__name__)

MIN_SOURCE_FACE_PX = 48  # source faces at least this big, so pasted faces are downscaled
SOURCE_SCORE = 0.9
CONTEXT = 0.6  # context added around the face box on each side, as a share of its size
DEFAULT_FRAME_SIZE = (1280, 720)  # width, height
DEFAULT_FACE_SIZES_PX = (8, 10, 12, 14, 16, 20, 24, 28, 40, 64)


@dataclass(frozen=True)
class SourceFace:
    """A face cut from a photo: the patch with context, its box inside the patch (x1, y1, x2, y2), and the boxes of
    the photo's other faces that reach into the patch (a crowd photo's neighbours come along when it is pasted)."""

    patch: np.ndarray
    box: np.ndarray
    source: str
    others: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))


@dataclass(frozen=True)
class SynthFrame:
    """A generated frame, its ground-truth face boxes (N, 4) in frame pixels, and boxes to ignore (M, 4): the
    neighbours the pasted patches brought along (real faces, but not the ones pasted at a known size)."""

    image: np.ndarray
    boxes: np.ndarray
    sources: tuple[str, ...]
    ignore: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))


def image_files(paths: Sequence[str | Path]) -> list[Path]:
    """Image files given directly or found anywhere under given folders, sorted (so seeds reproduce)."""
    files: list[Path] = []
    for item in map(Path, paths):
        found = sorted(p for p in item.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES) if item.is_dir() else [item]
        files.extend(found)
    return files


def collect_source_faces(paths: Sequence[str | Path], detector=None, min_face_px: float = MIN_SOURCE_FACE_PX,
                         min_score: float = SOURCE_SCORE) -> list[SourceFace]:
    """Confident faces of at least ``min_face_px`` from every image under ``paths``, with context."""
    from ..pipeline.detect import create_detector

    owned = detector is None
    detector = detector or create_detector(min_face_px=min_face_px)  # the default plan, down to the faces kept
    faces: list[SourceFace] = []
    try:
        for path in image_files(paths):
            image = read_image(path)
            height, width = image.shape[:2]
            found = detector.detect(image)
            for det in found:
                if det.score < min_score or min(det.width, det.height) < min_face_px:
                    continue
                x1, y1, x2, y2 = det.bbox
                margin = CONTEXT * max(det.width, det.height)
                cx1, cy1 = int(max(0, x1 - margin)), int(max(0, y1 - margin))
                cx2, cy2 = int(min(width, x2 + margin)), int(min(height, y2 + margin))
                patch = image[cy1:cy2, cx1:cx2].copy()
                box = np.array([x1 - cx1, y1 - cy1, x2 - cx1, y2 - cy1], np.float32)
                others = _boxes_inside([o.bbox for o in found if o is not det], (cx1, cy1, cx2, cy2))
                faces.append(SourceFace(patch, box, Path(path).name, others))
    finally:
        if owned:
            detector.close()
    log.info("%d source faces from %s", len(faces), ", ".join(str(p) for p in paths))
    return faces


def _boxes_inside(boxes: Sequence[np.ndarray], region: tuple[int, int, int, int]) -> np.ndarray:
    """The boxes that overlap ``region``, clipped to it, in its coordinates (M, 4)."""
    x0, y0, x1, y1 = region
    kept = []
    for bx1, by1, bx2, by2 in (np.asarray(b, np.float32)[:4] for b in boxes):
        cut = (max(bx1, x0), max(by1, y0), min(bx2, x1), min(by2, y1))
        if cut[2] > cut[0] and cut[3] > cut[1]:
            kept.append((cut[0] - x0, cut[1] - y0, cut[2] - x0, cut[3] - y0))
    return np.asarray(kept, np.float32).reshape(-1, 4)


def plain_background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth colour gradient with mild sensor noise: a plain wall seen by a camera."""
    corners = rng.uniform(40, 215, size=(2, 2, 3)).astype(np.float32)
    frame = np.asarray(cv2.resize(corners, (width, height), interpolation=cv2.INTER_LINEAR), np.float32)
    frame += rng.normal(0.0, 3.0, size=frame.shape).astype(np.float32)
    return np.clip(frame, 0, 255).astype(np.uint8)


def _placement(face: SourceFace, face_px: float, x: float, y: float) -> tuple[tuple[int, int], float, int, int]:
    """Where ``paste_face`` puts a patch: its scaled (width, height), the scale, and its top-left corner."""
    box_side = float(max(face.box[2] - face.box[0], face.box[3] - face.box[1]))
    ph, pw = face.patch.shape[:2]
    size = (max(1, round(pw * face_px / box_side)), max(1, round(ph * face_px / box_side)))
    scale = size[0] / pw
    return size, scale, int(round(x - face.box[0] * scale)), int(round(y - face.box[1] * scale))


def pasted_others(face: SourceFace, face_px: float, x: float, y: float) -> np.ndarray:
    """The frame boxes of the source photo's other faces that ``paste_face(frame, face, face_px, x, y)`` brings in."""
    _, scale, ox, oy = _placement(face, face_px, x, y)
    return face.others * np.float32(scale) + np.array([ox, oy, ox, oy], np.float32)


def paste_face(frame: np.ndarray, face: SourceFace, face_px: float, x: float, y: float) -> np.ndarray:
    """Paste ``face`` scaled so its box's long side is ``face_px``, box top-left at (x, y); returns the box."""
    size, scale, ox, oy = _placement(face, face_px, x, y)
    patch = cv2.resize(face.patch, size, interpolation=cv2.INTER_AREA).astype(np.float32)
    box = face.box * np.float32(scale)
    h, w = patch.shape[:2]
    fh, fw = frame.shape[:2]
    x0, y0, x1, y1 = max(ox, 0), max(oy, 0), min(ox + w, fw), min(oy + h, fh)
    if x1 <= x0 or y1 <= y0:
        return box + np.array([ox, oy, ox, oy], np.float32)
    # Soft elliptic mask: full inside the face box, fading out through the context.
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    rx, ry = max(w / 2, 1.0), max(h / 2, 1.0)
    dist = np.sqrt(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2)
    alpha = np.clip((1.0 - dist) / 0.35, 0.0, 1.0)[..., None]
    region = frame[y0:y1, x0:x1].astype(np.float32)
    part = patch[y0 - oy:y1 - oy, x0 - ox:x1 - ox]
    a = alpha[y0 - oy:y1 - oy, x0 - ox:x1 - ox]
    frame[y0:y1, x0:x1] = np.clip(region * (1 - a) + part * a, 0, 255).astype(np.uint8)
    return box + np.array([ox, oy, ox, oy], np.float32)


def synth_frames(faces: Sequence[SourceFace], count: int, seed: int = 0,
                 face_sizes_px: Sequence[float] = DEFAULT_FACE_SIZES_PX,
                 frame_size: tuple[int, int] = DEFAULT_FRAME_SIZE, faces_per_frame: int = 24) -> Iterator[SynthFrame]:
    """``count`` frames, each with up to ``faces_per_frame`` faces on a grid of cells, sizes cycling.

    Each face gets its own cell (no overlaps), a random offset inside it and a random
    source face; sizes cycle through ``face_sizes_px`` so every size appears equally often.
    """
    if not faces:
        raise ValueError("no source faces to paste")
    rng = np.random.default_rng(seed)
    width, height = frame_size
    largest = max(face_sizes_px)
    cell = int(max(largest * (1 + 2 * CONTEXT) + 4, 32))
    cols, rows = max(1, width // cell), max(1, height // cell)
    sizes = list(face_sizes_px)
    k = 0
    for _ in range(count):
        frame = plain_background(width, height, rng)
        cells = rng.permutation(cols * rows)[:faces_per_frame]
        boxes: list[np.ndarray] = []
        names: list[str] = []
        others: list[np.ndarray] = []
        for index in cells:
            size = float(sizes[k % len(sizes)])
            k += 1
            face = faces[int(rng.integers(len(faces)))]
            row, col = divmod(int(index), cols)
            free = cell - size * (1 + 2 * CONTEXT)
            x = col * cell + size * CONTEXT + rng.uniform(0, max(free, 0))
            y = row * cell + size * CONTEXT + rng.uniform(0, max(free, 0))
            boxes.append(paste_face(frame, face, size, x, y))
            others.extend(pasted_others(face, size, x, y))
            names.append(face.source)
        yield SynthFrame(frame, np.array(boxes, np.float32).reshape(-1, 4), tuple(names),
                         np.array(others, np.float32).reshape(-1, 4))
