"""Annotated outputs of ``run --draw``: one unique file per source, never over an input or an old file.

Images are written through a temp name and renamed; videos are written to a temp
name and renamed when closed. A writer that fails (full disk, unknown format) is an
error, not a silent success.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from ..errors import OutputError
from ..pipeline.sources import IMAGE_SUFFIXES
from ..safe_io import atomic_path, refuse_folder_of_inputs, unique_path

VIDEO_FPS = 25.0  # when the source does not say its frame rate


class ClipWriter:
    """An MP4 written under a temp name beside ``target`` and renamed into place when closed.

    ``target`` must not exist unless ``force``; the writer opens on the first frame (its size).
    """

    def __init__(self, target: Path, fps: float | None = None, force: bool = False) -> None:
        if target.is_dir() or (target.exists() and not force):
            raise OutputError(f"{target} exists; choose a new file name for the video")
        self.target, self.fps = target, fps or VIDEO_FPS
        self.temp = target.with_name(f".{target.name}.tmp.mp4")
        self.writer: cv2.VideoWriter | None = None

    def write(self, image: np.ndarray) -> None:
        if self.writer is None:
            h, w = image.shape[:2]
            self.writer = cv2.VideoWriter(str(self.temp), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self.writer.isOpened():
                raise OutputError(f"cannot write video {self.target}: OpenCV has no mp4v writer here or the folder "
                                  "is not writable")
        self.writer.write(image)

    def close(self) -> bool:
        """Rename the finished video into place; False (temp removed) when the writer produced nothing."""
        if self.writer is not None:
            self.writer.release()
        if self.temp.is_file() and self.temp.stat().st_size > 0:
            os.replace(self.temp, self.target)
            return True
        self.temp.unlink(missing_ok=True)
        return False


class DrawnOutputs:
    """Writes annotated frames into ``folder``; ``force`` allows replacing files drawn by an earlier run."""

    def __init__(self, folder: Path, inputs: Sequence[str], force: bool = False) -> None:
        if folder.exists() and not folder.is_dir():
            raise OutputError(f"--draw {folder} is a file; give a folder (it is created)")
        refuse_folder_of_inputs(folder, [i for i in inputs if not i.isdigit() or Path(i).exists()], "--draw folder")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create --draw folder {folder}: {exc.strerror or exc}") from None
        self.folder, self.force = folder, force
        self._names: dict[str, Path] = {}
        self._taken: set[Path] = set()
        self._videos: dict[str, ClipWriter] = {}
        self.written: list[Path] = []

    def _target(self, source: str, video: bool) -> Path:
        if source not in self._names:
            stem = f"camera{source}" if source.isdigit() and not Path(source).exists() else Path(source).stem
            suffix = Path(source).suffix.lower()
            name = f"{stem}.annotated.mp4" if video else stem + (suffix if suffix in IMAGE_SUFFIXES else ".png")
            target = unique_path(self.folder / name, self._taken)
            if target.exists() and not self.force:
                raise OutputError(f"--draw would overwrite {target}; choose an empty folder or pass --force")
            self._names[source] = target
        return self._names[source]

    def write(self, source: str, frame_index: int | None, drawn: np.ndarray, fps: float | None = None) -> None:
        """One annotated image, or the next frame of a video (at ``fps``: the source's rate over the stride)."""
        target = self._target(source, frame_index is not None)
        if frame_index is None:
            with atomic_path(target, "drawn image") as temp:
                if not cv2.imwrite(str(temp), drawn):
                    raise OutputError(f"cannot write drawn image {target}: OpenCV's writer failed (full disk or "
                                      "unsupported format); free space or choose another --draw folder")
            self.written.append(target)
            return
        if source not in self._videos:
            self._videos[source] = ClipWriter(target, fps, force=True)  # _target refused an old file without --force
        self._videos[source].write(drawn)

    def close(self) -> None:
        """Finish every video: rename it into place if the writer produced a file."""
        failed = []
        for clip in self._videos.values():
            if clip.close():
                self.written.append(clip.target)
            else:
                failed.append(str(clip.target))
        self._videos.clear()
        if failed:
            raise OutputError(f"cannot write drawn video {', '.join(failed)}: the writer produced no data (full "
                              "disk?); free space or choose another --draw folder")
