"""Build targets: readable TOML files that say how engines are built for one kind of device.

A target fixes precision, the batch range (min/opt/max) of every branch and
trunk input, the detector's input sizes, the workspace and the TensorRT
compatibility switches. Names resolve to the files shipped in
``btnet_edge/trt_build/targets/`` (the one source of truth), a path names any
other file. Every validation error names the offending field.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ConfigError

PRECISIONS = ("fp16", "fp32")
TRUNK_FORMS = ("auto", "segments", "merged")
HARDWARE_COMPATIBILITY = ("none", "ampere_plus")
RUNTIMES = ("tensorrt", "tensorrt_rtx")  # the Python module that builds and runs the engines
INPUT_FORMATS = ("uint8_bgr", "float")  # face crops as the camera gives them, or the package's float tensors
COMPUTE_CAPABILITIES = ("7.5", "8.0", "8.6", "8.9", "12.0", "12.1")  # TensorRT for RTX ahead-of-time targets
DETECTOR_ALIGN_PX = 32  # the detector pads its input to a multiple of its coarsest stride
_TOP_KEYS = {"name", "description", "precision", "workspace_mb", "dla_core", "gpu_fallback", "trunk_form",
             "hardware_compatibility", "version_compatible", "builder_optimization_level", "batch", "detector",
             "runtime", "compute_capabilities", "input_format"}


@dataclass(frozen=True)
class BatchRange:
    """How many faces one call may carry: TensorRT's optimization profile for the batch axis."""

    min: int
    opt: int
    max: int

    def to_json(self) -> dict[str, int]:
        return {"min": self.min, "opt": self.opt, "max": self.max}


@dataclass(frozen=True)
class DetectorTarget:
    """The detector engine: batch and input height x width range, in px (multiples of 32)."""

    build: bool = True
    batch: int = 1
    min_hw: tuple[int, int] = (320, 320)
    opt_hw: tuple[int, int] = (640, 640)
    max_hw: tuple[int, int] = (1920, 1920)  # holds the default detection plan's 1920 px tiles
    top_k: int = 0  # > 0: the engine keeps the K best anchors (engines/detector_graph.py); batch 1 only


@dataclass(frozen=True)
class Target:
    """One validated build target (see the commented TOML files for what each field means)."""

    name: str
    source: str
    precision: str
    workspace_mb: int
    default_batch: BatchRange
    branch_batch: Mapping[int, BatchRange]
    trunk_batch: Mapping[str, BatchRange]
    detector: DetectorTarget
    trunk_form: str = "auto"
    dla_core: int | None = None
    gpu_fallback: bool = True
    hardware_compatibility: str = "none"
    version_compatible: bool = False
    builder_optimization_level: int | None = None
    description: str = ""
    runtime: str = "tensorrt"
    compute_capabilities: tuple[str, ...] = ()  # TensorRT for RTX only; () is its default (8.0, 8.6, 8.9, 12.0)
    input_format: str = "uint8_bgr"

    def branch_range(self, resolution: int) -> BatchRange:
        return self.branch_batch.get(resolution, self.default_batch)

    def trunk_range(self, input_name: str) -> BatchRange:
        return self.trunk_batch.get(input_name, self.default_batch)

    def build_settings(self) -> dict[str, Any]:
        """The switches that change what TensorRT builds: part of every engine's cache key."""
        return {"workspace_mb": self.workspace_mb, "dla_core": self.dla_core, "gpu_fallback": self.gpu_fallback,
                "hardware_compatibility": self.hardware_compatibility,
                "version_compatible": self.version_compatible,
                "builder_optimization_level": self.builder_optimization_level, "runtime": self.runtime,
                "compute_capabilities": list(self.compute_capabilities), "input_format": self.input_format}


def _toml_loads(text: str, where: str) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # Python 3.9/3.10: the same parser from PyPI
        from .._deps import require

        tomllib = require("tomli", extra="trt")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"target file {where} is not valid TOML: {exc}") from None


def _int(data: Mapping[str, Any], key: str, where: str, minimum: int, default: int | None = None) -> int:
    if key not in data:
        if default is None:
            raise ConfigError(f"target field {where}{key} is missing")
        return default
    value = data[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"target field {where}{key} should be an integer >= {minimum}, found {value!r}")
    return value


def _choice(data: Mapping[str, Any], key: str, choices: tuple[str, ...], default: str) -> str:
    value = data.get(key, default)
    if value not in choices:
        raise ConfigError(f"target field {key} should be one of {choices}, found {value!r}")
    return value


def _bool(data: Mapping[str, Any], key: str, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"target field {key} should be true or false, found {value!r}")
    return value


def _batch(data: Any, where: str) -> BatchRange:
    """min/opt/max with 1 <= min <= opt <= max: TensorRT rejects a minimum of 0 (NVIDIA/TensorRT#337)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"target field {where} should be a table with min, opt and max")
    unknown = sorted(set(data) - {"min", "opt", "max"})
    if unknown:
        raise ConfigError(f"target field {where} has unknown keys {unknown}; use min, opt and max")
    rng = BatchRange(*(_int(data, k, where + ".", 1) for k in ("min", "opt", "max")))
    if not rng.min <= rng.opt <= rng.max:
        raise ConfigError(f"target field {where} should satisfy min <= opt <= max, found {rng.to_json()}")
    return rng


def _hw(data: Mapping[str, Any], key: str, default: tuple[int, int]) -> tuple[int, int]:
    value = data.get(key, list(default))
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        raise ConfigError(f"target field detector.{key} should be [height, width] in px, found {value!r}")
    if any(v % DETECTOR_ALIGN_PX for v in value):
        raise ConfigError(f"target field detector.{key} should hold multiples of {DETECTOR_ALIGN_PX} "
                          f"(the detector pads to its coarsest stride), found {value}")
    return (value[0], value[1])


def _detector(data: Any) -> DetectorTarget:
    if data is None:
        return DetectorTarget()
    if not isinstance(data, Mapping):
        raise ConfigError("target field detector should be a table")
    unknown = sorted(set(data) - {"build", "batch", "min_hw", "opt_hw", "max_hw", "top_k"})
    if unknown:
        raise ConfigError(f"target field detector has unknown keys {unknown}")
    base = DetectorTarget()
    detector = DetectorTarget(_bool(data, "build", True), _int(data, "batch", "detector.", 1, base.batch),
                              _hw(data, "min_hw", base.min_hw), _hw(data, "opt_hw", base.opt_hw),
                              _hw(data, "max_hw", base.max_hw), _int(data, "top_k", "detector.", 0, 0))
    if detector.top_k:
        from .detector_graph import check_top_k

        check_top_k(detector.top_k, detector.min_hw)
        if detector.batch != 1:
            raise ConfigError("target field detector.top_k needs detector.batch = 1")
    for axis in (0, 1):
        if not detector.min_hw[axis] <= detector.opt_hw[axis] <= detector.max_hw[axis]:
            raise ConfigError("target field detector should satisfy min_hw <= opt_hw <= max_hw on both axes, "
                              f"found {detector.min_hw}, {detector.opt_hw}, {detector.max_hw}")
    return detector


def target_from_dict(data: Mapping[str, Any], source: str = "<dict>") -> Target:
    """Validate parsed TOML and build a :class:`Target`; errors name the field."""
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise ConfigError(f"target {source} has unknown fields {unknown}; known: {sorted(_TOP_KEYS)}")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"target field name is missing or empty in {source}")
    batch = data.get("batch", {})
    if not isinstance(batch, Mapping) or "default" not in batch:
        raise ConfigError("target field batch.default is missing (min/opt/max faces per call)")
    extra_batch = sorted(set(batch) - {"default", "branch", "trunk"})
    if extra_batch:
        raise ConfigError(f"target field batch has unknown keys {extra_batch}; use default, branch and trunk")
    branch_batch = {}
    for key, value in batch.get("branch", {}).items():
        if not str(key).isdigit():
            raise ConfigError(f"target field batch.branch.{key} should be named by a resolution in px, like 28")
        branch_batch[int(key)] = _batch(value, f"batch.branch.{key}")
    trunk_batch = {str(k): _batch(v, f"batch.trunk.{k}") for k, v in batch.get("trunk", {}).items()}
    dla = data.get("dla_core")
    if dla is not None and (not isinstance(dla, int) or isinstance(dla, bool) or dla < 0):
        raise ConfigError(f"target field dla_core should be a DLA core index >= 0, found {dla!r}")
    level = data.get("builder_optimization_level")
    if level is not None and (not isinstance(level, int) or isinstance(level, bool) or not 0 <= level <= 5):
        raise ConfigError(f"target field builder_optimization_level should be 0..5, found {level!r}")
    runtime = _choice(data, "runtime", RUNTIMES, "tensorrt")
    capabilities = data.get("compute_capabilities", [])
    if not isinstance(capabilities, list) or not all(c in COMPUTE_CAPABILITIES for c in capabilities):
        raise ConfigError(f"target field compute_capabilities should be a list of {COMPUTE_CAPABILITIES}, "
                          f"found {capabilities!r}")
    if capabilities and runtime != "tensorrt_rtx":
        raise ConfigError("target field compute_capabilities is for runtime = \"tensorrt_rtx\" (ahead-of-time "
                          "builds); TensorRT builds for the GPU it runs on")
    if "7.5" in capabilities and data.get("precision", "fp16") == "fp32":
        raise ConfigError("target field compute_capabilities names 7.5 (Turing), where TensorRT for RTX compiles no "
                          "FP32 GEMM: use precision = \"fp16\" for RTX 20xx")
    if runtime == "tensorrt_rtx" and (dla is not None or data.get("hardware_compatibility", "none") != "none"):
        raise ConfigError("target fields dla_core and hardware_compatibility do not apply to runtime = "
                          "\"tensorrt_rtx\" (its engines are portable across RTX GPUs already); remove them")
    return Target(
        name=name, source=source,
        runtime=runtime, compute_capabilities=tuple(capabilities),
        input_format=_choice(data, "input_format", INPUT_FORMATS, "uint8_bgr"),
        precision=_choice(data, "precision", PRECISIONS, "fp16"),
        workspace_mb=_int(data, "workspace_mb", "", 16),
        default_batch=_batch(batch["default"], "batch.default"),
        branch_batch=branch_batch, trunk_batch=trunk_batch,
        detector=_detector(data.get("detector")),
        trunk_form=_choice(data, "trunk_form", TRUNK_FORMS, "auto"),
        dla_core=dla, gpu_fallback=_bool(data, "gpu_fallback", True),
        hardware_compatibility=_choice(data, "hardware_compatibility", HARDWARE_COMPATIBILITY, "none"),
        version_compatible=_bool(data, "version_compatible", False),
        builder_optimization_level=level,
        description=str(data.get("description", "")),
    )


def builtin_targets() -> list[str]:
    """Names of the targets shipped with btnet-edge."""
    folder = resources.files(__package__).joinpath("targets")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_target(name_or_path: str | Path) -> Target:
    """A shipped target by name (``desktop-fp16``) or any TOML file by path."""
    text_name = str(name_or_path)
    path = Path(text_name)
    if text_name.endswith(".toml") or path.is_file():
        if not path.is_file():
            raise ConfigError(f"target file {path} does not exist")
        return target_from_dict(_toml_loads(path.read_text(), str(path)), str(path))
    shipped = resources.files(__package__).joinpath("targets", f"{text_name}.toml")
    if not shipped.is_file():
        raise ConfigError(f"unknown target {text_name!r}; shipped targets: {', '.join(builtin_targets())}, "
                          "or pass the path of a .toml file")
    return target_from_dict(_toml_loads(shipped.read_text(), f"{text_name}.toml"), f"builtin:{text_name}")
