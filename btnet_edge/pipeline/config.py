"""What a Recognizer needs, as one frozen value: backend, device, engines, detector and its plan, dispatch, branches.

The CLI options, the face server and the insightface facade all build a
:class:`RecognizerConfig`; the Recognizer opens what it names (a runner for the
backend, the detector) unless the caller passes those collaborators in. The detector a
config names comes from :func:`detector_for`: on TensorRT with the default detector it is
RetinaFace over the engine folder's detector engine, else the family's ONNX Runtime
session.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..package.branch_status import ROUTE_POLICIES
from .detect import FaceDetector, create_detector
from .detect_plan import DetectPlan
from .dispatch import INDICATORS, ROUNDINGS

log = logging.getLogger(__name__)

BACKENDS = ("auto", "onnxruntime", "torch", "tensorrt")
ALIGN_MODES = ("landmarks", "box")


@dataclass(frozen=True)
class RecognizerConfig:
    """Settings of one Recognizer. ``None`` means the package's (dispatch) or the component's default.

    ``backend``: "auto" (ONNX Runtime), "onnxruntime", "torch" or "tensorrt" (needs ``engines``,
    a folder written by ``btnet-edge build``). ``detector``: None for the bundled RetinaFace (on
    TensorRT: the engine folder's detector engine), or the path of an SCRFD/YuNet/RetinaFace ONNX
    with ``detector_kind`` when its name does not say. ``det_plan``: the detector's scales and
    tiles. ``indicator``/``rounding``: override the manifest's dispatch policy. ``align``:
    "landmarks" or "box". ``branches``: "trained", "all" or "none" (see :class:`Recognizer`).
    """

    package: str
    backend: str = "auto"
    device: str = "cpu"
    threads: int = 0
    fp16: bool = False
    engines: str | None = None
    detector: str | None = None
    detector_kind: str | None = None
    det_threshold: float | None = None
    det_plan: DetectPlan | None = None
    indicator: str | None = None
    rounding: str | None = None
    align: str = "landmarks"
    branches: str = "trained"

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        if self.backend == "tensorrt" and not self.engines:
            raise ConfigError("backend 'tensorrt' needs the engine folder: pass engines=DIR (CLI: --engines DIR); "
                              "build it with `btnet-edge build PKG --target desktop-fp16 --out DIR`")
        if (self.indicator is not None and self.indicator not in INDICATORS) or \
                (self.rounding is not None and self.rounding not in ROUNDINGS):
            raise ConfigError(f"dispatch should use indicator in {INDICATORS} and rounding in {ROUNDINGS}, "
                              f"found {self.indicator!r}/{self.rounding!r}")
        if self.align not in ALIGN_MODES:
            raise ConfigError(f"align should be one of {ALIGN_MODES}, found {self.align!r}")
        if self.branches not in ROUTE_POLICIES:
            raise ConfigError(f"branches={self.branches!r}: use one of {ROUTE_POLICIES} (trained: only trained "
                              "branches, all: every branch, none: always upsample for the trunk)")
        if not isinstance(self.threads, int) or isinstance(self.threads, bool) or self.threads < 0:
            raise ConfigError(f"threads should be a whole number >= 0 (0: the backend decides), found {self.threads!r}")
        if self.det_threshold is not None and not 0.0 <= self.det_threshold <= 1.0:
            raise ConfigError(f"det_threshold={self.det_threshold} is outside 0..1; try 0.5")
        if self.det_plan is not None and not isinstance(self.det_plan, DetectPlan):
            raise ConfigError(f"det_plan should be a DetectPlan, found {type(self.det_plan).__name__}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (the detection plan as a table), for config files and Ray actors."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RecognizerConfig:
        """From :meth:`to_dict` output; unknown keys are an error naming the known ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown recognizer settings {unknown}; known: {sorted(known)}")
        values = dict(data)
        if isinstance(values.get("det_plan"), Mapping):
            values["det_plan"] = DetectPlan(**values["det_plan"])
        return cls(**values)


def detector_for(spec: str | Path | None = None, kind: str | None = None, *, backend: str = "auto",
                 engines: str | Path | None = None, device: str = "cpu", threads: int = 0,
                 score_threshold: float | None = None, plan: DetectPlan | None = None) -> FaceDetector:
    """The detector a configuration names: the engine folder's RetinaFace engine on TensorRT, else ONNX Runtime's.

    On ``backend="tensorrt"`` with the default detector (``spec`` None), an engine folder that
    holds a detector engine runs it; a folder built without one (``detector.build = false``)
    falls back to RetinaFace on ONNX Runtime, with one log line.
    """
    options: dict[str, Any] = {k: v for k, v in (("score_threshold", score_threshold), ("plan", plan))
                               if v is not None}
    if backend == "tensorrt" and spec is None and kind in (None, "retinaface") and engines is not None:
        from ..trt_runtime.engine_backend import TrtBackend
        from ..trt_runtime.engine_folder import read_engine_folder
        from .detectors.retinaface import RetinaFaceDetector

        folder = read_engine_folder(engines)
        if folder.detector is not None:
            return RetinaFaceDetector(backend=TrtBackend(folder.engine_path(folder.detector)), **options)
        log.info("%s has no detector engine (built with detector.build = false): RetinaFace runs on ONNX Runtime",
                 engines)
    return create_detector(spec, kind=kind, device=device, threads=threads, **options)


def open_detector(config: RecognizerConfig) -> FaceDetector:
    """The detector ``config`` names (see :func:`detector_for`)."""
    return detector_for(config.detector, config.detector_kind, backend=config.backend, engines=config.engines,
                        device=config.device, threads=config.threads, score_threshold=config.det_threshold,
                        plan=config.det_plan)


__all__ = ["ALIGN_MODES", "BACKENDS", "RecognizerConfig", "detector_for", "open_detector"]
