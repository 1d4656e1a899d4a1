"""Frames from what a user points the CLI at: image files, folders, video files, camera indices."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

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
            yield from _video(item, open_camera(int(item)), max_frames or 100, stride)
        elif Path(item).suffix.lower() in VIDEO_SUFFIXES:
            if not Path(item).is_file():
                raise InputImageError(f"video {item} does not exist")
            with _opencv_quiet():
                capture = cv2.VideoCapture(item)
            yield from _video(item, capture, max_frames, stride)
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


@contextmanager
def _opencv_quiet() -> Iterator[None]:
    """OpenCV's own log lines off while it probes backends: a failure becomes one error line of ours."""
    logging_api = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging_api is None or log.isEnabledFor(logging.DEBUG):  # --verbose: let OpenCV say what it tried
        yield
        return
    previous = logging_api.setLogLevel(logging_api.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        logging_api.setLogLevel(previous)


def open_camera(index: int) -> cv2.VideoCapture:
    """Camera ``index`` opened, or one clear error (on Linux, a missing /dev/videoN is told before OpenCV runs)."""
    if sys.platform.startswith("linux"):
        device = Path(f"/dev/video{index}")
        if not device.exists():
            found = sorted(str(p) for p in Path("/dev").glob("video[0-9]*"))
            raise InputImageError(f"no camera {index}: {device} does not exist ("
                                  + (f"cameras here: {', '.join(found)}" if found else "this machine has no camera")
                                  + "); plug one in, or give a video file or images")
    with _opencv_quiet():
        capture = cv2.VideoCapture(index)
    if not capture.isOpened():
        capture.release()
        raise InputImageError(f"cannot open camera {index}: it is missing, busy or not permitted (rerun with "
                              "--verbose to see what OpenCV tried)")
    return capture


def _declared_frames(capture: cv2.VideoCapture) -> int | None:
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    return count if count > 0 else None


def _video(name: str, capture: cv2.VideoCapture, max_frames: int | None, stride: int) -> Iterator[Frame]:
    """Frames of a video or camera; a file that ends before the frames its header declares is an error at the end.

    OpenCV reads a damaged video up to the damage and then reports the end of the file:
    without the comparison a cut clip would look complete (exit 0, no error).
    """
    if not capture.isOpened():
        raise InputImageError(f"cannot open video or camera {name}: check the path or index and the codec")
    index = produced = 0
    declared = _declared_frames(capture) if not name.isdigit() else None
    stopped_early = False
    source_fps = capture.get(cv2.CAP_PROP_FPS)
    fps = source_fps / stride if source_fps and source_fps > 0 else None
    try:
        while True:
            if max_frames is not None and produced >= max_frames:
                stopped_early = True
                break
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
    if declared is not None and not stopped_early and index < declared - _count_tolerance(declared):
        raise InputImageError(f"{name}: read {index} of the {declared} frames its header declares: the video is "
                              f"damaged or cut after frame {index - 1} (the frames before it were processed); "
                              "repair or re-encode it, e.g. ffmpeg -i IN -c:v libx264 OUT.mp4")


def _count_tolerance(declared: int) -> int:
    """Frames a header may overstate without damage: Matroska/WebM estimate the count from duration x fps."""
    return 1 + declared // 200
