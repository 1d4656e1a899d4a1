"""SCRFD detectors from insightface model packs (e.g. scrfd_500m_kps.onnx), decoded with numpy.

insightface conventions: RGB input (x - 127.5) / 128, any size that is a multiple
of 32, strides 8/16/32 with 2 anchors per location, anchor centres at
(column, row) * stride, boxes as distances to the centre and landmarks as offsets,
both in units of the stride. The graph's outputs have numeric names, so each is
identified from what the graph declares and returns: its last dimension says
score (1), box (4) or landmarks (10), and its row count says the stride.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ...backends.ort import OrtBackend
from ...errors import BackendError, ConfigError
from ..detect import Candidates, FaceDetector

log = logging.getLogger(__name__)

SCRFD_MEAN = 127.5
SCRFD_STD = 128.0
SCRFD_STRIDES = (8, 16, 32)
SCRFD_ANCHORS_PER_LOCATION = 2
_KIND_BY_WIDTH: dict[int | str, str] = {1: "score", 4: "bbox", 10: "kps"}
_ALIGN = 32


@lru_cache(maxsize=16)
def scrfd_centres(rows: int, cols: int, stride: int, anchors: int) -> np.ndarray:
    """(rows * cols * anchors, 2) anchor centres in input pixels, ordered row, column, anchor."""
    ys, xs = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    centres = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32) * stride
    centres = np.repeat(centres, anchors, axis=0)
    centres.setflags(write=False)
    return centres


def decode_scrfd_level(scores: np.ndarray, bbox: np.ndarray, kps: np.ndarray, centres: np.ndarray,
                       stride: int, score_threshold: float) -> Candidates:
    """Candidates of one stride: scores (N,), bbox (N, 4) and kps (N, 10) raw graph outputs."""
    index = np.flatnonzero(scores >= score_threshold)
    if not index.size:
        return Candidates.empty()
    centre = centres[index]
    dist = bbox[index] * stride
    boxes = np.hstack([centre - dist[:, :2], centre + dist[:, 2:]])
    points = centre[:, None, :] + kps[index].reshape(-1, 5, 2) * stride
    return Candidates(boxes.astype(np.float32), points.astype(np.float32), scores[index].astype(np.float32))


class ScrfdDetector(FaceDetector):
    """SCRFD with keypoints on ONNX Runtime; ``strides`` and ``anchors_per_location`` are declared, not sniffed."""

    name = "scrfd"
    default_score_threshold = 0.5

    def __init__(self, model: str | Path | bytes | None, device: str = "cpu", threads: int = 0,
                 strides: tuple[int, ...] = SCRFD_STRIDES, anchors_per_location: int = SCRFD_ANCHORS_PER_LOCATION,
                 **options: Any) -> None:
        super().__init__(**options)
        if model is None:
            raise ConfigError("SCRFD has no bundled weights: pass the path of an insightface scrfd_*_kps.onnx")
        self._model = model
        self.device = device
        self.threads = threads
        self.strides = tuple(strides)
        self.anchors = int(anchors_per_location)
        self._backend: OrtBackend | None = None
        self._input_name = ""
        self._outputs: dict[str, list[str]] = {}

    def _load(self) -> OrtBackend:
        if self._backend is None:
            backend = OrtBackend(self._model, device=self.device, threads=self.threads).load()
            groups: dict[str, list[str]] = {"score": [], "bbox": [], "kps": []}
            for spec in backend.outputs:
                kind = _KIND_BY_WIDTH.get(spec.shape[-1]) if spec.shape else None
                if kind is not None:
                    groups[kind].append(spec.name)
            found = {k: len(v) for k, v in groups.items()}
            if len(backend.inputs) != 1 or any(n != len(self.strides) for n in found.values()):
                raise BackendError(
                    f"{backend.model_path.name} does not look like an SCRFD graph with keypoints: expected one input "
                    f"and, per stride {self.strides}, outputs of last dimension 1 (score), 4 (box) and 10 "
                    f"(landmarks); found {len(backend.inputs)} input(s) and {found}. SCRFD without keypoints "
                    "cannot feed face alignment"
                )
            self._input_name = backend.inputs[0].name
            self._outputs = groups
            self._backend = backend
        return self._backend

    def _by_stride(self, out: dict[str, np.ndarray], kind: str, rows: dict[int, int]) -> dict[int, np.ndarray]:
        """Assign each output of ``kind`` to the stride whose anchor count equals its row count."""
        width = {"score": 1, "bbox": 4, "kps": 10}[kind]
        by_stride: dict[int, np.ndarray] = {}
        for name in self._outputs[kind]:
            arr = out[name].reshape(-1, width)
            stride = next((s for s, n in rows.items() if n == len(arr)), None)
            if stride is None or stride in by_stride:
                raise BackendError(
                    f"SCRFD output {name!r} has {len(arr)} rows, matching none (or a taken one) of the anchor "
                    f"counts {rows} for strides {self.strides} x {self.anchors} anchors; declare the right "
                    "strides= and anchors_per_location= for this model"
                )
            by_stride[stride] = arr
        return by_stride

    def _candidates(self, img: np.ndarray) -> Candidates:
        backend = self._load()
        height, width = img.shape[:2]
        padded_h, padded_w = -(-height // _ALIGN) * _ALIGN, -(-width // _ALIGN) * _ALIGN
        blob = np.zeros((1, 3, padded_h, padded_w), np.float32)  # zero = mid-gray after normalising
        view = blob[0, :, :height, :width]
        np.subtract(img[:, :, ::-1].transpose(2, 0, 1), np.float32(SCRFD_MEAN), out=view)  # BGR -> RGB
        view *= np.float32(1.0 / SCRFD_STD)
        out = backend.infer({self._input_name: blob})
        rows = {s: -(-padded_h // s) * -(-padded_w // s) * self.anchors for s in self.strides}
        scores, bbox, kps = (self._by_stride(out, kind, rows) for kind in ("score", "bbox", "kps"))
        parts = []
        for stride in self.strides:
            centres = scrfd_centres(-(-padded_h // stride), -(-padded_w // stride), stride, self.anchors)
            parts.append(decode_scrfd_level(scores[stride][:, 0], bbox[stride], kps[stride], centres, stride,
                                            self.score_threshold))
        return Candidates.concat(parts)

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None
