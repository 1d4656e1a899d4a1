"""Recognizer: detect -> measure -> dispatch -> align at the branch's size -> branches -> trunk -> gallery.

Faces of a frame (or of several frames, ``get_batch``) are grouped per branch: each
used branch runs once and the trunk runs once for all of them.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import ConfigError, InputImageError
from ..package.branch_status import branch_statuses, routes
from ..package.loader import ModelPackage, load_package
from ..package.manifest import TRUNK_RESOLUTION, DispatchPolicy, model_id
from .align import align_face, crop_box
from .config import RecognizerConfig, open_detector
from .detect import Detection, FaceDetector
from .detect_plan import DetectPlan
from .dispatch import choose_resolution, face_size
from .face import Face
from .image import check_bgr_image
from .preprocess import l2_normalize, preprocess
from .runner import Runner, open_runner

log = logging.getLogger(__name__)

CONFIDENT_SHARE = 0.9  # main_face: the largest among faces scoring at least this share of the best
MIN_FACE_PX = 2.0  # smaller boxes carry no identity: skipped, not embedded


def main_face(faces: Sequence[Face]) -> Face | None:
    """The subject of a photo: the largest of the confident faces (a large, doubtful detection is not it)."""
    if not faces:
        return None
    best = max(f.det_score for f in faces)
    return max((f for f in faces if f.det_score >= CONFIDENT_SHARE * best), key=lambda f: f.face_size)


@dataclass
class StageTimes:
    """Seconds spent per stage since the last reset: what the frame benchmark reports."""

    detect: float = 0.0
    align: float = 0.0
    branches: float = 0.0
    trunk: float = 0.0
    gallery: float = 0.0
    total: float = 0.0
    frames: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


class Recognizer:
    """Multi-resolution face recognition over a model package.

    ``package``: a package folder or a loaded :class:`ModelPackage`. ``backend``: "auto"
    (ONNX Runtime), "onnxruntime", "torch" or "tensorrt". ``detector``: a FaceDetector,
    None for the bundled RetinaFace, or a path to an SCRFD/YuNet ONNX. ``indicator`` and
    ``rounding`` override the manifest's dispatch policy. ``branches``: "trained" (default)
    sends faces whose branch is untrained or of unknown training to the upsample path
    (aligned at 112 for the trunk), "all" forces every branch (to test them), "none"
    always upsamples. ``det_plan`` (a :class:`~btnet_edge.pipeline.detect_plan.DetectPlan`:
    det_size, min_face_px, upscale, tile, max_side) sets the detector's scales. The keyword
    settings make a :class:`~btnet_edge.pipeline.config.RecognizerConfig`
    (:meth:`from_config` takes one directly). ``runner``: what embeds the faces (a
    :class:`~btnet_edge.pipeline.runner.Runner`), opened from the settings when None.
    """

    def __init__(self, package: str | Path | ModelPackage, backend: str = "auto",
                 detector: FaceDetector | str | None = None,
                 *, indicator: str | None = None, rounding: str | None = None, align: str = "landmarks",
                 device: str = "cpu", threads: int = 0, fp16: bool = False, engines: str | None = None,
                 gallery=None, det_threshold: float | None = None, max_side: int | None = None,
                 branches: str = "trained", det_plan: DetectPlan | None = None, runner: Runner | None = None) -> None:
        loaded = package if isinstance(package, ModelPackage) else None
        if max_side is not None:
            det_plan = replace(det_plan or DetectPlan(), max_side=max_side)
        given = detector if isinstance(detector, FaceDetector) else None
        config = RecognizerConfig(
            package=str(loaded.folder if loaded else package), backend=backend, device=device, threads=threads,
            fp16=fp16, engines=str(engines) if engines is not None else None,
            detector=None if given is not None or detector is None else str(detector), det_threshold=det_threshold,
            det_plan=det_plan, indicator=indicator, rounding=rounding, align=align, branches=branches)
        self._start(config, loaded, runner, given, gallery)

    @classmethod
    def from_config(cls, config: RecognizerConfig, *, package: ModelPackage | None = None, runner: Runner | None = None,
                    detector: FaceDetector | None = None, gallery=None) -> Recognizer:
        """A Recognizer for ``config``; ``package`` (already loaded and verified), ``runner`` and ``detector``
        are used instead of the ones the config names."""
        recognizer = cls.__new__(cls)
        recognizer._start(config, package, runner, detector, gallery)
        return recognizer

    def _start(self, config: RecognizerConfig, package: ModelPackage | None, runner: Runner | None,
               detector: FaceDetector | None, gallery) -> None:
        self.config = config
        self.package = package or load_package(config.package)
        self.manifest = self.package.manifest
        policy = self.manifest.dispatch
        self.dispatch = DispatchPolicy(config.indicator or policy.indicator, config.rounding or policy.rounding)
        self.align_mode = config.align
        if gallery is not None:  # a gallery holds one model's embeddings: refuse another's, as the CLI does
            gallery.check_model(self.manifest.embedding_size, model_id(self.manifest))
        self.runner: Runner = runner if runner is not None else open_runner(self.package, config)
        try:
            self.detector = detector if detector is not None else open_detector(config)
        except BaseException:
            if runner is None:  # ours: close what was opened before the failure
                self.runner.close()
            raise
        self.branch_policy = config.branches
        self.routes = routes(branch_statuses(self.manifest), config.branches)
        upsampled = sorted(r for r, route in self.routes.items() if route == "upsample")
        if upsampled and config.branches == "trained":
            log.warning("branches %s px of %s are not trained (or not known to be): faces of those sizes are "
                        "upsampled for the trunk. Train them with btnet-edge train-branches, or pass "
                        "branches='all' (CLI: --branches all) to use them anyway", upsampled, self.manifest.name)
        self.gallery = gallery
        self.times = StageTimes()

    # -- public API -------------------------------------------------------------------------

    def get(self, image: np.ndarray) -> list[Face]:
        """Faces of one BGR uint8 frame, with embeddings (and identities when a gallery is attached)."""
        return self.get_batch([image])[0]

    def get_batch(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        """Faces of several frames: one run per used branch and one trunk run for all of them."""
        start = time.perf_counter()
        frames = [check_bgr_image(img) for img in images]
        t = time.perf_counter()
        detections = [self.detector.detect(frame) for frame in frames]
        self.times.detect += time.perf_counter() - t
        return self._recognize(frames, detections, start)

    def recognize(self, image: np.ndarray, detections: Sequence[Detection], detect_seconds: float = 0.0) -> list[Face]:
        """Faces of one frame whose detections were made elsewhere (a video's stream schedule, pipeline/stream.py).

        ``detect_seconds``: the time those detections took, counted in the detect stage.
        """
        start = time.perf_counter() - detect_seconds
        self.times.detect += detect_seconds
        return self._recognize([check_bgr_image(image)], [list(detections)], start)[0]

    def _recognize(self, frames: list[np.ndarray], detections: list[list[Detection]], start: float) -> list[list[Face]]:
        plans = []
        for index, dets in enumerate(detections):
            for det in dets:
                size = face_size(det.width, det.height, self.dispatch.indicator)
                if size < MIN_FACE_PX:
                    continue
                r = choose_resolution(size, self.manifest.resolutions, self.dispatch.rounding)
                plans.append((index, det, size, r, self.routes.get(r, "trunk")))
        embeddings = self._embed_plans(frames, plans)
        results: list[list[Face]] = [[] for _ in frames]
        faces = [Face(bbox=det.bbox, kps=det.kps, det_score=det.score, face_size=size, resolution=r, embedding=emb,
                      route=route) for (index, det, size, r, route), emb in zip(plans, embeddings)]
        if self.gallery is not None and faces:
            t = time.perf_counter()
            faces = self._identify(faces)
            self.times.gallery += time.perf_counter() - t
        for (index, *_), face in zip(plans, faces):
            results[index].append(face)
        self.times.total += time.perf_counter() - start
        self.times.frames += len(frames)
        return results

    def embed(self, aligned_faces: np.ndarray | Sequence[np.ndarray], resolution: int) -> np.ndarray:
        """Embeddings (N, D), L2-normalized, of faces already aligned to ``resolution`` px (BGR uint8)."""
        if resolution not in self.manifest.resolutions:
            raise ConfigError(f"package has no {resolution} px entry; it has {self.manifest.resolutions}")
        batch = np.asarray(aligned_faces)
        if batch.ndim == 3:
            batch = batch[None]
        return l2_normalize(self._embed_groups({resolution: list(batch)})[resolution])

    def close(self) -> None:
        self.runner.close()
        self.detector.close()

    def __enter__(self) -> Recognizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------

    def _crop(self, frame: np.ndarray, det: Detection, resolution: int) -> np.ndarray:
        if self.align_mode == "box":
            return crop_box(frame, det.bbox, resolution)
        return align_face(frame, det.kps, resolution)

    def _embed_plans(self, frames: list[np.ndarray], plans: list) -> list[np.ndarray]:
        t = time.perf_counter()
        groups: dict[int, list[np.ndarray]] = defaultdict(list)
        slots = []
        for index, det, _size, r, route in plans:
            entry = r if route == "branch" else TRUNK_RESOLUTION  # upsample: aligned at 112 from the frame's pixels
            slots.append((entry, len(groups[entry])))
            groups[entry].append(self._crop(frames[index], det, entry))
        self.times.align += time.perf_counter() - t
        if not plans:
            return []
        by_resolution = self._embed_groups(groups)
        return [by_resolution[r][i] for r, i in slots]

    def _embed_groups(self, groups: dict[int, list[np.ndarray]]) -> dict[int, np.ndarray]:
        """Raw embeddings per resolution; with flip TTA the flipped faces ride in the same batch."""
        t = time.perf_counter()
        flip = self.manifest.preprocess.flip_tta
        batches = {}
        for r, crops in groups.items():
            stack = np.stack(crops) if len(crops) else np.zeros((0, r, r, 3), np.uint8)
            if stack.dtype != np.uint8 or stack.shape[1:] != (r, r, 3):
                raise InputImageError(f"faces for the {r} px branch should be ({r}, {r}, 3) uint8 BGR crops, found "
                                      f"{stack.shape[1:]} {stack.dtype}; align them to {r} px first "
                                      "(btnet_edge.pipeline.align.align_face)")
            if flip:
                stack = np.concatenate([stack, stack[:, :, ::-1]])
            uint8 = self.runner.takes_uint8  # device-resident engines normalise on the GPU
            batches[r] = stack if uint8 else preprocess(stack, self.manifest.preprocess, r)
        self.times.align += time.perf_counter() - t
        branch_s, trunk_s = self.runner.branch_s, self.runner.trunk_s
        out = self.runner.embed(batches)
        self.times.branches += self.runner.branch_s - branch_s
        self.times.trunk += self.runner.trunk_s - trunk_s
        if flip:
            out = {r: e[: len(e) // 2] + e[len(e) // 2:] for r, e in out.items()}
        return out

    def _identify(self, faces: list[Face]) -> list[Face]:
        rows = []
        for f in faces:  # every face here was embedded just now, by get()
            normed = f.normed_embedding
            assert normed is not None
            rows.append(normed)
        matrix = np.stack(rows)
        matches = self.gallery.identify(matrix, top_k=1, probe_resolutions=[f.resolution for f in faces])
        out = []
        for face, found in zip(faces, matches):
            if found:
                face = Face(**{**face.__dict__, "identity": found[0].name, "identity_score": found[0].score})
            out.append(face)
        return out
