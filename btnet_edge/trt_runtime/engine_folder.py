"""The one reader of an engine folder's ``engines.json``: typed, validated, errors that name the field.

``btnet-edge build`` writes the build plan (:mod:`btnet_edge.trt_build.plan`) into the folder as
``engines.json``, with the machine it was built on and each engine's cache key. Everything that
runs engines (the engine backend, the trunk chain, the device-resident runner, ``check``,
``serve``) reads it through :func:`read_engine_folder`, or an in-memory plan through
:func:`engine_folder_from_json`, and sees the same frozen :class:`EngineFolder`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BackendError

ENGINES_MANIFEST = "engines.json"
UINT8_BGR = "uint8_bgr"  # image inputs take (N, H, W, 3) uint8 BGR crops, normalised inside the engine
ENGINE_KINDS = ("branch", "trunk", "trunk_segment", "detector")
TRUNK_FORMS = ("merged", "segments")
INPUT_FORMATS = (UINT8_BGR, "float")


@dataclass(frozen=True)
class TensorProfile:
    """min/opt/max shapes of one input in one optimization profile (batch first)."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def holds(self, shape: tuple[int, ...]) -> bool:
        """True when ``shape`` lies within min..max on every axis (what ``set_input_shape`` accepts)."""
        return len(shape) == len(self.min) and all(lo <= d <= hi for d, lo, hi in zip(shape, self.min, self.max))


@dataclass(frozen=True)
class EngineEntry:
    """One engine of the folder: its files, I/O names, profiles and build settings."""

    name: str
    kind: str
    engine: str  # file name inside the folder
    onnx: Path  # the file TensorRT parsed (the rebuild source)
    sha256: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    profiles: tuple[Mapping[str, TensorProfile], ...]
    input_format: str
    precision_path: str
    settings: Mapping[str, Any]
    resolution: int | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)  # the JSON entry, for keys

    def profile(self, name: str, index: int = 0) -> TensorProfile:
        if name not in self.profiles[index]:
            raise BackendError(f"engine {self.name} has no profile for input {name!r} (it has "
                               f"{sorted(self.profiles[index])}); rebuild the engines")
        return self.profiles[index][name]


@dataclass(frozen=True)
class SegmentLink:
    """One trunk segment in chain order: what it reads, writes, and (k >= 1) what its input merges."""

    index: int
    engine: str
    input: str
    output: str
    resolution: int
    concat: tuple[str, ...]


@dataclass(frozen=True)
class TrunkInput:
    """One entry point of the trunk: input name, per-face shape, and the face resolution it carries."""

    name: str
    shape: tuple[int, ...]
    resolution: int


@dataclass(frozen=True)
class EngineFolder:
    """What ``engines.json`` declares (``path`` is None for a plan that was never written)."""

    path: Path | None
    package_name: str
    embedding_size: int
    target: str
    tensorrt_module: str
    tensorrt_version: str
    input_format: str
    trunk_form: str
    segments: tuple[SegmentLink, ...]
    trunk_inputs: tuple[TrunkInput, ...]
    engines: tuple[EngineEntry, ...]
    built_on: Mapping[str, Any] | None = None
    plan: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)  # the JSON as written

    def entry(self, name: str) -> EngineEntry:
        for entry in self.engines:
            if entry.name == name:
                return entry
        raise BackendError(f"the engine folder has no engine {name!r} (it has {[e.name for e in self.engines]}); "
                           "rebuild it for this package")

    def has(self, name: str) -> bool:
        return any(entry.name == name for entry in self.engines)

    def engine_path(self, entry: EngineEntry) -> Path:
        if self.path is None:
            raise BackendError(f"plan for {self.package_name} was not built into a folder; build it first")
        return self.path / entry.engine

    @property
    def detector(self) -> EngineEntry | None:
        return next((e for e in self.engines if e.kind == "detector"), None)

    @property
    def resolutions(self) -> list[int]:
        """Entry resolutions in the trunk's output order (112 first)."""
        return [t.resolution for t in self.trunk_inputs]

    @property
    def uint8(self) -> bool:
        return self.input_format == UINT8_BGR


def _field(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(data, Mapping) or key not in data:
        raise BackendError(f"{where}: field {key} is missing; rebuild the engines with this btnet-edge "
                           "(btnet-edge build PKG --target T --out DIR)")
    value = data[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise BackendError(f"{where}: field {key} should be {getattr(kind, '__name__', kind)}, found {value!r}")
    return value


def _shape(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in value):
        raise BackendError(f"{where} should be a list of non-negative integers, found {value!r}")
    return tuple(value)


def _profiles(value: Any, where: str) -> tuple[Mapping[str, TensorProfile], ...]:
    if not isinstance(value, list) or not value:
        raise BackendError(f"{where}: field profiles should be a non-empty list")
    profiles = []
    for index, profile in enumerate(value):
        if not isinstance(profile, Mapping):
            raise BackendError(f"{where}: profiles[{index}] should be a table of inputs")
        shapes = {}
        for name, spec in profile.items():
            at = f"{where}: profiles[{index}].{name}"
            low, opt, high = (_shape(_field(spec, k, list, at), f"{at}.{k}") for k in ("min", "opt", "max"))
            if not len(low) == len(opt) == len(high) or not all(a <= b <= c for a, b, c in zip(low, opt, high)):
                raise BackendError(f"{at} should satisfy min <= opt <= max, found {low}, {opt}, {high}")
            shapes[name] = TensorProfile(low, opt, high)
        profiles.append(shapes)
    return tuple(profiles)


def _entry(data: Any, index: int) -> EngineEntry:
    where = f"{ENGINES_MANIFEST} engines[{index}]"
    name = _field(data, "name", str, where)
    where = f"{ENGINES_MANIFEST} engine {name}"
    kind = _field(data, "kind", str, where)
    if kind not in ENGINE_KINDS:
        raise BackendError(f"{where}: field kind should be one of {ENGINE_KINDS}, found {kind!r}")
    input_format = data.get("input_format", "float")
    if input_format not in INPUT_FORMATS:
        raise BackendError(f"{where}: field input_format should be one of {INPUT_FORMATS}, found {input_format!r}")
    inputs = tuple(_field(data, "inputs", list, where))
    profiles = _profiles(data.get("profiles"), where)
    missing = [n for n in inputs if n not in profiles[0]]
    if missing:
        raise BackendError(f"{where}: inputs {missing} have no optimization profile")
    resolution = data.get("resolution")
    return EngineEntry(name=name, kind=kind, engine=_field(data, "engine", str, where),
                       onnx=Path(_field(data, "onnx", str, where)), sha256=_field(data, "sha256", str, where),
                       inputs=inputs, outputs=tuple(_field(data, "outputs", list, where)), profiles=profiles,
                       input_format=input_format, precision_path=_field(data, "precision_path", str, where),
                       settings=dict(data.get("settings", {})),
                       resolution=int(resolution) if resolution is not None else None, raw=dict(data))


def engine_folder_from_json(data: Any, path: Path | None = None) -> EngineFolder:
    """An :class:`EngineFolder` from a parsed ``engines.json`` or an in-memory build plan."""
    where = ENGINES_MANIFEST
    trunk = _field(data, "trunk", Mapping, where)
    form = _field(trunk, "form", str, f"{where} trunk")
    if form not in TRUNK_FORMS:
        raise BackendError(f"{where}: field trunk.form should be one of {TRUNK_FORMS}, found {form!r}")
    segments = tuple(SegmentLink(int(s["index"]), str(s["engine"]), str(s["input"]), str(s["output"]),
                                 int(s["resolution"]), tuple(s.get("concat", ())))
                     for s in trunk.get("segments", []))
    if form == "segments" and not segments:
        raise BackendError(f"{where}: trunk.form is segments but trunk.segments is empty")
    trunk_inputs = tuple(TrunkInput(str(t["name"]), _shape(t["shape"], f"{where} trunk_inputs.shape"),
                                    int(t["resolution"])) for t in _field(data, "trunk_inputs", list, where))
    if not trunk_inputs:
        raise BackendError(f"{where}: field trunk_inputs is empty")
    engines = tuple(_entry(e, i) for i, e in enumerate(_field(data, "engines", list, where)))
    tensorrt = data.get("tensorrt", {})
    input_format = data.get("input_format", "float")
    if input_format not in INPUT_FORMATS:
        raise BackendError(f"{where}: field input_format should be one of {INPUT_FORMATS}, found {input_format!r}")
    return EngineFolder(path=Path(path) if path is not None else None,
                        package_name=_field(data, "package_name", str, where),
                        embedding_size=_field(data, "embedding_size", int, where),
                        target=str(data.get("target", "")),
                        tensorrt_module=str(tensorrt.get("module", "tensorrt")),
                        tensorrt_version=str(tensorrt.get("version", "")),
                        input_format=input_format, trunk_form=form, segments=segments,
                        trunk_inputs=trunk_inputs, engines=engines, built_on=data.get("built_on"), plan=data)


def read_engine_folder(folder: str | Path) -> EngineFolder:
    """The engine folder ``folder`` as its engines.json declares it, or an error that says how to build it."""
    folder = Path(folder)
    path = folder / ENGINES_MANIFEST
    if not path.is_file():
        raise BackendError(f"{folder} has no {ENGINES_MANIFEST}; build the engines: btnet-edge build PKG --target T "
                           f"--out {folder}")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BackendError(f"{path} is not readable JSON ({exc}); rebuild the engines with btnet-edge build") from None
    return engine_folder_from_json(data, folder)


__all__ = [
    "ENGINES_MANIFEST",
    "UINT8_BGR",
    "EngineEntry",
    "EngineFolder",
    "SegmentLink",
    "TensorProfile",
    "TrunkInput",
    "engine_folder_from_json",
    "read_engine_folder",
]
