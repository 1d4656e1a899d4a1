"""A camera clip with known small faces: people entering at different times and walking across a real photo.

The background is a real photo (clutter, textures, its own faces) cut to the frame size;
each person gets a face of a fixed size (10-30 px, cycling through ``face_sizes_px``), a
height, a direction and a speed of 2-6 px per frame, and enters at their own frame, so
new faces appear all along the clip. Faces are cut from real photos with their context
and pasted with a soft edge (synth_frames.py); frames get mild sensor noise. Faces the
background photo already holds are found once with the still-image plan and are ignored
(neither a hit nor a false box), and so are the neighbours a crowd photo's patch brings
along with its face; a walker passing one is hidden behind that person (a far,
small face cannot cover a near one). Deterministic for a seed and photo set.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from ..pipeline.detectors._nms import box_iou
from .synth_frames import SourceFace, paste_face, pasted_others

DEFAULT_CLIP_SIZES_PX = (10, 12, 14, 16, 20, 24, 28, 30)
BEHIND_MARGIN = 1.0  # a walker within this many face sizes of a background face is hidden behind that person


@dataclass(frozen=True)
class Walker:
    """One person: face, size, and the frames they are on screen with their face box's top-left corner."""

    face: SourceFace
    size_px: float
    start: int
    xy: np.ndarray  # (frames of the clip, 2); NaN where the person is not in the picture


@dataclass(frozen=True)
class StreamFrame:
    """A frame, the face boxes of the people in it (walker index -> box) and the boxes to ignore."""

    index: int
    image: np.ndarray
    boxes: dict[int, np.ndarray]
    ignore: np.ndarray


def background_frame(photo: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    """The photo scaled to cover the frame and cut at its centre."""
    width, height = frame_size
    scale = max(width / photo.shape[1], height / photo.shape[0])
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(photo, (max(width, round(photo.shape[1] * scale)), max(height, round(photo.shape[0] * scale))),
                         interpolation=interpolation)
    y0, x0 = (resized.shape[0] - height) // 2, (resized.shape[1] - width) // 2
    return np.ascontiguousarray(resized[y0:y0 + height, x0:x0 + width])


def plan_walkers(faces: Sequence[SourceFace], people: int, frames: int, frame_size: tuple[int, int],
                 face_sizes_px: Sequence[float] = DEFAULT_CLIP_SIZES_PX, seed: int = 0) -> list[Walker]:
    """``people`` walkers entering one after another over the first 70 % of the clip."""
    rng = np.random.default_rng(seed)
    width, height = frame_size
    walkers = []
    for i in range(people):
        size = float(face_sizes_px[i % len(face_sizes_px)])
        start = int(round(i * 0.7 * frames / max(people, 1)))
        speed = rng.uniform(2.0, 6.0) * (1 if i % 2 == 0 else -1)
        y = rng.uniform(0.1 * height, 0.85 * height)
        x0 = -size if speed > 0 else width
        t = np.arange(frames, dtype=np.float64) - start
        x = x0 + speed * t
        drift = 3.0 * np.sin(t / rng.uniform(8.0, 20.0))  # a walker's head bobs a little
        xy = np.stack([x, y + drift], axis=1)
        xy[t < 0] = np.nan
        gone = (x < -size * 2) | (x > width + size)
        xy[gone & (t >= 0)] = np.nan
        walkers.append(Walker(faces[int(rng.integers(len(faces)))], size, start, xy))
    return walkers


def stream_clip(background: np.ndarray, walkers: Sequence[Walker], frames: int, ignore: np.ndarray | None = None,
                seed: int = 0) -> Iterator[StreamFrame]:
    """The clip's frames; a face counts as present when its whole box lies inside the frame, else it is ignored."""
    rng = np.random.default_rng(seed)
    height, width = background.shape[:2]
    ignore = np.zeros((0, 4), np.float32) if ignore is None else np.asarray(ignore, np.float32).reshape(-1, 4)
    for index in range(frames):
        noise = rng.normal(0.0, 2.0, size=background.shape).astype(np.float32)
        image = np.clip(background.astype(np.float32) + noise, 0, 255).astype(np.uint8)
        boxes: dict[int, np.ndarray] = {}
        cut: list[np.ndarray] = []
        for k, walker in enumerate(walkers):
            x, y = walker.xy[index]
            if np.isnan(x):
                continue
            side = walker.size_px * (1 + 2 * BEHIND_MARGIN)
            margin = walker.size_px * BEHIND_MARGIN
            near = np.array([x - margin, y - margin, x + side, y + side])
            if len(ignore) and (box_iou(near.astype(np.float32), ignore) > 0).any():
                continue  # a far (small) face passes behind a near one: hidden, not present
            box = paste_face(image, walker.face, walker.size_px, float(x), float(y))
            cut.extend(pasted_others(walker.face, walker.size_px, float(x), float(y)))  # real faces, not the walker
            if box[0] >= 0 and box[1] >= 0 and box[2] <= width and box[3] <= height:
                boxes[k] = box
            else:
                cut.append(box)  # partly out of the picture: finding it is neither a hit nor a false box
        yield StreamFrame(index, image, boxes, np.concatenate([ignore, np.asarray(cut, np.float32).reshape(-1, 4)]))
