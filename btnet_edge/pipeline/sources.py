"""Frames from what a user points the CLI at: image files, folders, video files, camera indices."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np

from ..errors import InputImageError
from .image import read_image

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}


@dataclass(frozen=True)
class Frame:
    """One frame and where it came from (``index`` is the frame number in a video or camera, else None).

    ``fps``: the rate of the frames yielded (the source's divided by the stride), when the source says.
    """

    source: str
    index: int | None
    image: np.ndarray
    fps: float | None = None


def expand_inputs(inputs: Sequence[str]) -> list[str]:
    """Folders become their image and video files (sorted); other entries stay as given."""
    out: list[str] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)
            if not files:
                raise InputImageError(f"folder {path} holds no images or videos ({', '.join(sorted(IMAGE_SUFFIXES))})")
            out.extend(str(p) for p in files)
        else:
            out.append(item)
    return out


def iter_frames(inputs: Sequence[str], max_frames: int | None = None, stride: int = 1) -> Iterator[Frame]:
    """Frames of every input in order; a camera is given by its index ("0"), read up to ``max_frames``."""
    for item in expand_inputs(inputs):
        if item.isdigit() and not Path(item).exists():
            yield from _video(item, cv2.VideoCapture(int(item)), max_frames or 100, stride)
        elif Path(item).suffix.lower() in VIDEO_SUFFIXES:
            if not Path(item).is_file():
                raise InputImageError(f"video {item} does not exist")
            yield from _video(item, cv2.VideoCapture(item), max_frames, stride)
        else:
            yield Frame(item, None, read_image(item))


def count_frames(inputs: Sequence[str], max_frames: int | None = None, stride: int = 1) -> int | None:
    """How many frames iter_frames will yield, for a progress bar (None when unknown, e.g. a camera)."""
    total = 0
    for item in expand_inputs(inputs):
        if item.isdigit() and not Path(item).exists():
            return None
        if Path(item).suffix.lower() in VIDEO_SUFFIXES:
            capture = cv2.VideoCapture(item)
            n = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
            capture.release()
            if n <= 0:
                return None
            n = (n + stride - 1) // stride
            total += min(n, max_frames) if max_frames else n
        else:
            total += 1
    return total


def _video(name: str, capture: cv2.VideoCapture, max_frames: int | None, stride: int) -> Iterator[Frame]:
    if not capture.isOpened():
        raise InputImageError(f"cannot open video or camera {name}: check the path or index and the codec")
    index = produced = 0
    source_fps = capture.get(cv2.CAP_PROP_FPS)
    fps = source_fps / stride if source_fps and source_fps > 0 else None
    try:
        while max_frames is None or produced < max_frames:
            ok, image = capture.read()
            if not ok:
                break
            if index % stride == 0:
                produced += 1
                yield Frame(name, index, image, fps)
            index += 1
    finally:
        capture.release()
    if produced == 0:
        raise InputImageError(f"{name} yielded no frames: the file is empty or its codec is not supported by OpenCV")
