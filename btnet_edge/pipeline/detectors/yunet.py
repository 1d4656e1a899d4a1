"""YuNet through OpenCV's ``cv2.FaceDetectorYN``, whose rows are x, y, w, h, 5 landmark x,y pairs, score.

The graph is run at the frame's own size (``setInputSize`` per frame), which
OpenCV's DNN accepts even for a graph exported at a fixed 640x640. Where an
OpenCV build refuses that, the frame is letterboxed into the size the graph
declares instead, and coordinates are scaled back: tiny faces then shrink, so
use ``tile=`` with such builds.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ...backends.ort import OrtBackend
from ...errors import BackendError, ConfigError
from ..detect import Candidates, FaceDetector

log = logging.getLogger(__name__)

YUNET_TOP_K = 5000  # OpenCV's own default: enough for crowds


class YuNetDetector(FaceDetector):
    """YuNet (libfacedetection) face detector; OpenCV's DNN runs it on the CPU.

    ``input_size`` (w, h) letterboxes every frame into that fixed size (faster on big
    frames, worse for tiny faces); None runs at each frame's own size.
    """

    name = "yunet"
    default_score_threshold = 0.7  # sqrt(cls * obj): clear faces score 0.85-0.95, hands and textures reach 0.6

    def __init__(self, model: str | Path | None, device: str = "cpu", threads: int = 0,
                 input_size: tuple[int, int] | None = None, **options: Any) -> None:
        super().__init__(**options)
        if model is None:
            raise ConfigError("YuNet has no bundled weights: pass the path of a yunet_*.onnx file")
        if device != "cpu":
            raise ConfigError(f"YuNet runs through OpenCV's DNN on the CPU here; device={device!r} is not "
                              "supported: use device='cpu', or an SCRFD/RetinaFace model on ONNX Runtime")
        if threads:
            log.debug("YuNet ignores threads=%d: OpenCV's thread pool is process-wide (cv2.setNumThreads)", threads)
        self.model_path = Path(model)
        self._net: cv2.FaceDetectorYN | None = None
        if input_size is not None and (len(input_size) != 2 or min(input_size) < 32):
            raise ConfigError(f"input_size={input_size!r} must be (width, height) of at least 32 px, or None")
        self.input_size = None if input_size is None else (int(input_size[0]), int(input_size[1]))

    def _load(self) -> cv2.FaceDetectorYN:
        if self._net is None:
            try:
                self._net = cv2.FaceDetectorYN.create(str(self.model_path), "", (640, 640), self.score_threshold,
                                                      self.nms_threshold, YUNET_TOP_K)
            except cv2.error as exc:
                raise BackendError(f"OpenCV cannot load {self.model_path} as a YuNet model: {exc}") from exc
        return self._net

    def _declared_size(self) -> tuple[int, int]:
        """(w, h) of the graph input, as the ONNX file declares it."""
        with OrtBackend(self.model_path) as backend:
            shape = backend.inputs[0].shape
        if len(shape) != 4 or not all(isinstance(d, int) and d > 0 for d in shape[2:]):
            raise BackendError(f"{self.model_path.name} refuses this frame size and declares no fixed size "
                               f"(input shape {shape}); try tile=640")
        return int(shape[3]), int(shape[2])

    def _run(self, net: cv2.FaceDetectorYN, img: np.ndarray) -> np.ndarray:
        net.setInputSize((img.shape[1], img.shape[0]))
        _, rows = net.detect(img)
        return np.zeros((0, 15), np.float32) if rows is None else rows.astype(np.float32)

    def _candidates(self, img: np.ndarray) -> Candidates:
        net = self._load()
        scale = 1.0
        if self.input_size is None:
            try:
                rows = self._run(net, img)
            except cv2.error as exc:
                self.input_size = self._declared_size()
                log.warning("OpenCV refused YuNet at %dx%d (%s); letterboxing frames into %dx%d from now on",
                            img.shape[1], img.shape[0], str(exc).strip().splitlines()[-1], *self.input_size)
        if self.input_size is not None:
            width, height = self.input_size
            scale = min(width / img.shape[1], height / img.shape[0])
            resized = cv2.resize(img, (max(1, round(img.shape[1] * scale)), max(1, round(img.shape[0] * scale))),
                                 interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
            canvas = np.zeros((height, width, 3), np.uint8)
            canvas[:resized.shape[0], :resized.shape[1]] = resized
            rows = self._run(net, canvas)
        rows = rows[rows[:, 14] >= self.score_threshold]
        boxes = np.hstack([rows[:, 0:2], rows[:, 0:2] + rows[:, 2:4]])
        return Candidates(boxes, rows[:, 4:14].reshape(-1, 5, 2), rows[:, 14].copy()).scaled(1.0 / scale)

    def close(self) -> None:
        self._net = None
