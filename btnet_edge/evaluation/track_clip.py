"""A synthetic walking clip with known identities and boxes: what tracking and track identities are measured on.

Each person gets a lane of a 720p frame; even-numbered people walk away (face 96 -> 8
px, drifting up towards the horizon), odd-numbered ones approach (8 -> 96 px). Sizes
change geometrically, as they do for a walker at constant speed; each walker also
drifts sideways a few px per frame, bouncing inside the lane, so a small face moves
about a box width per frame. Faces are cut from real photos with their context and
pasted with a soft edge (synth_frames.py). Deterministic for a given seed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .synth_frames import DEFAULT_FRAME_SIZE, SourceFace, paste_face, plain_background

LARGEST_FACE_PX = 96.0
SMALLEST_FACE_PX = 8.0


@dataclass(frozen=True)
class Walker:
    """One person of the clip: their face and, per frame, face size and top-left corner of the face box."""

    name: str
    face: SourceFace
    sizes_px: np.ndarray
    xy: np.ndarray  # (frames, 2)


@dataclass(frozen=True)
class ClipFrame:
    """A frame and its ground truth: per person, the face box (x1, y1, x2, y2) in frame pixels."""

    index: int
    image: np.ndarray
    boxes: dict[str, np.ndarray]


def plan_walkers(faces: dict[str, SourceFace], frames: int, seed: int = 0,
                 frame_size: tuple[int, int] = DEFAULT_FRAME_SIZE, largest_px: float = LARGEST_FACE_PX,
                 smallest_px: float = SMALLEST_FACE_PX) -> list[Walker]:
    """Sizes and positions per frame for each person (sorted by name, so a seed reproduces)."""
    rng = np.random.default_rng(seed)
    width, height = frame_size
    lane = width / max(len(faces), 1)
    t = np.linspace(0.0, 1.0, frames)
    walkers = []
    for i, name in enumerate(sorted(faces)):
        away = largest_px * (smallest_px / largest_px) ** t
        sizes = away if i % 2 == 0 else away[::-1]
        near = (sizes - smallest_px) / (largest_px - smallest_px)  # 1 when close to the camera, 0 far away
        speed = rng.uniform(3.0, 7.0) * rng.choice([-1.0, 1.0])
        room = max(lane - largest_px * 1.4, 1.0)
        offset = (rng.uniform(0, room) + speed * np.arange(frames)) % (2 * room)
        x = i * lane + 0.2 * largest_px + np.where(offset < room, offset, 2 * room - offset)  # bounce in the lane
        y = height * 0.35 + near * height * 0.35 + rng.uniform(-20, 20)
        walkers.append(Walker(name, faces[name], sizes, np.stack([x, y], axis=1)))
    return walkers


def walking_clip(walkers: Sequence[Walker], seed: int = 0,
                 frame_size: tuple[int, int] = DEFAULT_FRAME_SIZE) -> Iterator[ClipFrame]:
    """The frames of the clip, with each person's pasted face box."""
    rng = np.random.default_rng(seed)
    width, height = frame_size
    background = plain_background(width, height, rng)
    frames = len(walkers[0].sizes_px) if walkers else 0
    for index in range(frames):
        image = background.copy()
        noise = rng.normal(0.0, 2.0, size=image.shape).astype(np.float32)
        image = np.clip(image.astype(np.float32) + noise, 0, 255).astype(np.uint8)
        boxes = {}
        for walker in walkers:
            x, y = walker.xy[index]
            boxes[walker.name] = paste_face(image, walker.face, float(walker.sizes_px[index]), float(x), float(y))
        yield ClipFrame(index, image, boxes)
