"""The model package manifest: declared once at export, validated on every load.

The runtime reads preprocessing, shapes and dispatch from here and never sniffs
graphs. Only numpy-free standard library code: it loads without torch or onnx.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ManifestError
from ..limits import MAX_RESOLUTION_ENV, max_resolution

SCHEMA_VERSION = 1
FORMAT = "btnet-edge-package"
MANIFEST_NAME = "manifest.json"
TRUNK_RESOLUTION = 112
INDICATORS = ("max", "avg", "min")
ROUNDINGS = ("floor", "near", "ceil")


@dataclass(frozen=True)
class TensorInfo:
    """A graph input or output: name and shape without the batch axis."""

    name: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Preprocess:
    """How an aligned BGR uint8 crop becomes the network input."""

    color_order: str  # "RGB" or "BGR": the order the network expects
    mean: tuple[float, float, float]  # pixel units (0..255), in color_order
    std: tuple[float, float, float]
    flip_tta: bool = False  # add the embedding of the horizontally flipped face


@dataclass(frozen=True)
class BranchInfo:
    """One branch graph: r px face -> feature map implanted after ``implant_after``."""

    resolution: int
    file: str
    input: TensorInfo
    output: TensorInfo
    implant_after: str
    resume_at: str


@dataclass(frozen=True)
class TrunkInfo:
    """The trunk graph: one input per entry point (112 image, each implant), one embedding output."""

    file: str
    inputs: tuple[TensorInfo, ...]
    entry_resolutions: tuple[int, ...]  # resolution of each input, same order
    output: TensorInfo


@dataclass(frozen=True)
class FusedInfo:
    """A per-resolution graph (branch + trunk tail) for single-face latency."""

    resolution: int
    file: str
    input: TensorInfo
    output: TensorInfo


@dataclass(frozen=True)
class DispatchPolicy:
    """Which branch a face of w x h px goes to: an indicator of size, and a rounding rule."""

    indicator: str = "max"
    rounding: str = "ceil"


@dataclass(frozen=True)
class Manifest:
    """Everything the runtime needs to know about a package."""

    schema_version: int
    name: str
    architecture: str
    family: str
    embedding_size: int
    weights: str  # "random" or "pretrained"
    preprocess: Preprocess
    trunk: TrunkInfo
    branches: tuple[BranchInfo, ...]
    dispatch: DispatchPolicy
    files: Mapping[str, str]  # file name -> sha256
    fused: tuple[FusedInfo, ...] = ()
    opset: int = 17
    extra: Mapping[str, Any] = field(default_factory=dict)  # parameters, parity, import report, ...

    @property
    def resolutions(self) -> list[int]:
        """Branch resolutions plus the trunk's 112, largest first."""
        return [TRUNK_RESOLUTION] + [b.resolution for b in self.branches]

    def branch(self, resolution: int) -> BranchInfo:
        for info in self.branches:
            if info.resolution == resolution:
                return info
        raise ManifestError(f"package has no {resolution} px branch (it has {self.resolutions})")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data = {"format": FORMAT, **data}
        extra = data.pop("extra")
        data.update(extra)
        return data


MAX_EMBEDDING_SIZE = 65536
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _get(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(data, Mapping):
        raise ManifestError(f"manifest field {where.rstrip('.') or 'root'} should be an object, found "
                            f"{type(data).__name__}")
    if key not in data:
        raise ManifestError(f"manifest field {where}{key} is missing")
    value = data[key]
    if not isinstance(value, kind) or (kind in (int, float, (int, float)) and isinstance(value, bool)):
        raise ManifestError(f"manifest field {where}{key} should be {_kind_name(kind)}, found "
                            f"{type(value).__name__} {json.dumps(value)[:40]}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", list: "a list", dict: "an object",
             bool: "true or false"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _resolution(value: Any, where: str) -> int:
    """A positive integer resolution (px) within the limit a user can raise."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ManifestError(f"manifest field {where} should be a positive integer (px), found {json.dumps(value)[:40]}")
    limit = max_resolution()
    if value > limit:
        raise ManifestError(f"manifest field {where} is {value} px, over the limit of {limit} px; a package from an "
                            f"untrusted source? Raise the limit with {MAX_RESOLUTION_ENV} if it is right")
    return value


def _list_of_resolutions(data: Mapping[str, Any], key: str, where: str) -> tuple[int, ...]:
    return tuple(_resolution(v, f"{where}{key}[{i}]") for i, v in enumerate(_get(data, key, list, where)))


def _tensor(data: Any, where: str) -> TensorInfo:
    if not isinstance(data, Mapping):
        raise ManifestError(f"manifest field {where} should be an object with name and shape")
    shape = _get(data, "shape", list, where + ".")
    if not shape or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise ManifestError(f"manifest field {where}.shape should hold positive integers, found {shape}")
    for i, side in enumerate(shape[1:] if len(shape) == 3 else (), start=1):  # (channels, height, width)
        _resolution(side, f"{where}.shape[{i}]")
    return TensorInfo(_get(data, "name", str, where + "."), tuple(shape))


def _triple(data: Mapping[str, Any], key: str) -> tuple[float, float, float]:
    value = _get(data, key, list, "preprocess.")
    if len(value) != 3 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise ManifestError(f"manifest field preprocess.{key} should be 3 numbers, found {value}")
    if not all(math.isfinite(v) for v in value):
        raise ManifestError(f"manifest field preprocess.{key} should hold finite numbers, found {value}")
    if key == "std" and any(v <= 0 for v in value):
        raise ManifestError(f"manifest field preprocess.std should be positive, found {value}")
    return (float(value[0]), float(value[1]), float(value[2]))


def manifest_from_json(data: Any) -> Manifest:
    """Validate parsed JSON and build a :class:`Manifest`; errors name the field."""
    if not isinstance(data, Mapping):
        raise ManifestError("manifest.json should hold a JSON object")
    if data.get("format") != FORMAT:
        raise ManifestError(f"manifest field format should be {FORMAT!r}, found {data.get('format')!r}")
    version = _get(data, "schema_version", int, "")
    if version != SCHEMA_VERSION:
        raise ManifestError(f"package schema_version {version} is not supported by this btnet-edge "
                            f"(reads {SCHEMA_VERSION}); re-export the package or upgrade btnet-edge")
    pre = _get(data, "preprocess", dict, "")
    color = _get(pre, "color_order", str, "preprocess.")
    if color not in ("RGB", "BGR"):
        raise ManifestError(f"manifest field preprocess.color_order should be RGB or BGR, found {color!r}")
    flip = _get(pre, "flip_tta", bool, "preprocess.") if "flip_tta" in pre else False
    preprocess = Preprocess(color, _triple(pre, "mean"), _triple(pre, "std"), flip)
    trunk_data = _get(data, "trunk", dict, "")
    inputs = tuple(_tensor(t, f"trunk.inputs[{i}]") for i, t in enumerate(_get(trunk_data, "inputs", list, "trunk.")))
    entries = _list_of_resolutions(trunk_data, "entry_resolutions", "trunk.")
    if not inputs or entries[0] != TRUNK_RESOLUTION or len(set(entries)) != len(entries):
        raise ManifestError(f"manifest field trunk.entry_resolutions should start with {TRUNK_RESOLUTION} and "
                            f"name each resolution once, found {list(entries)}")
    if len(entries) != len(inputs):
        raise ManifestError("manifest fields trunk.inputs and trunk.entry_resolutions differ in length")
    trunk = TrunkInfo(_get(trunk_data, "file", str, "trunk."), inputs, entries,
                      _tensor(_get(trunk_data, "output", dict, "trunk."), "trunk.output"))
    branches = []
    for i, b in enumerate(_get(data, "branches", list, "")):
        where = f"branches[{i}]."
        branches.append(BranchInfo(_resolution(_get(b, "resolution", int, where), where + "resolution"),
                                   _get(b, "file", str, where),
                                   _tensor(_get(b, "input", dict, where), where + "input"),
                                   _tensor(_get(b, "output", dict, where), where + "output"),
                                   _get(b, "implant_after", str, where), _get(b, "resume_at", str, where)))
    fused = []
    for i, f in enumerate(_get(data, "fused", list, "") if "fused" in data else []):
        where = f"fused[{i}]."
        fused.append(FusedInfo(_resolution(_get(f, "resolution", int, where), where + "resolution"),
                               _get(f, "file", str, where),
                               _tensor(_get(f, "input", dict, where), where + "input"),
                               _tensor(_get(f, "output", dict, where), where + "output")))
    for info in branches:
        if info.resolution not in entries:
            raise ManifestError(f"branch {info.resolution} px has no trunk input "
                                f"(trunk.entry_resolutions {list(entries)})")
    dispatch_data = _get(data, "dispatch", dict, "")
    dispatch = DispatchPolicy(_get(dispatch_data, "indicator", str, "dispatch."),
                              _get(dispatch_data, "rounding", str, "dispatch."))
    if dispatch.indicator not in INDICATORS or dispatch.rounding not in ROUNDINGS:
        raise ManifestError(f"manifest field dispatch should use indicator in {INDICATORS} and rounding in "
                            f"{ROUNDINGS}, found {dispatch.indicator!r}/{dispatch.rounding!r}")
    for info in branches:
        if info.input.shape != (3, info.resolution, info.resolution):
            raise ManifestError(f"manifest field branches[{info.resolution} px].input.shape should be "
                                f"[3, {info.resolution}, {info.resolution}], found {list(info.input.shape)}")
    files = _get(data, "files", dict, "")
    for name, digest in files.items():
        if not (isinstance(digest, str) and _SHA256.fullmatch(digest)):
            raise ManifestError(f"manifest field files[{name!r}] should be a sha256 (64 lowercase hex digits), "
                                f"found {json.dumps(digest)[:40]}")
    embedding_size = _get(data, "embedding_size", int, "")
    if not 1 <= embedding_size <= MAX_EMBEDDING_SIZE:
        raise ManifestError(f"manifest field embedding_size should be between 1 and {MAX_EMBEDDING_SIZE}, found "
                            f"{embedding_size}")
    if trunk.output.shape != (embedding_size,):
        raise ManifestError(f"manifest field trunk.output.shape should be [{embedding_size}] (embedding_size), "
                            f"found {list(trunk.output.shape)}")
    opset = _get(data, "opset", int, "") if "opset" in data else 17
    if opset < 1:
        raise ManifestError(f"manifest field opset should be a positive integer (e.g. 17), found {opset}")
    core = {"format", "schema_version", "name", "architecture", "family", "embedding_size", "weights",
            "preprocess", "trunk", "branches", "dispatch", "files", "fused", "opset"}
    return Manifest(
        schema_version=version,
        name=_get(data, "name", str, ""),
        architecture=_get(data, "architecture", str, ""),
        family=_get(data, "family", str, ""),
        embedding_size=embedding_size,
        weights=_get(data, "weights", str, ""),
        preprocess=preprocess,
        trunk=trunk,
        branches=tuple(sorted(branches, key=lambda b: -b.resolution)),
        dispatch=dispatch,
        files=dict(files),
        fused=tuple(fused),
        opset=opset,
        extra={k: v for k, v in data.items() if k not in core},
    )


def write_manifest(manifest: Manifest, folder: str | Path) -> Path:
    from ..safe_io import atomic_write_text

    return atomic_write_text(Path(folder) / MANIFEST_NAME, json.dumps(manifest.to_json(), indent=2) + "\n", "manifest")


MODEL_ID_SCHEME = "model-sha256"
LEGACY_MODEL_ID_SCHEME = "trunk-sha256"  # btnet-edge 0.1: architecture and trunk only


def model_id_text(manifest: Manifest) -> str:
    """What the model id digests: everything that decides an embedding, one fact a line.

    The preprocessing (colour order, mean, std as float32 bits, the flip) and the sha256
    of every graph that computes an embedding (trunk and branches). The C++ runtime
    writes the same text (cpp/src/package.cpp), so both read each other's galleries.
    """
    pre = manifest.preprocess
    lines = [
        "btnet-edge model id 2",
        f"architecture {manifest.architecture}",
        f"embedding_size {manifest.embedding_size}",
        f"color_order {pre.color_order}",
        "mean " + " ".join(struct.pack(">f", v).hex() for v in pre.mean),
        "std " + " ".join(struct.pack(">f", v).hex() for v in pre.std),
        f"flip_tta {int(pre.flip_tta)}",
    ]
    for file in sorted({manifest.trunk.file, *(b.file for b in manifest.branches)}):
        lines.append(f"graph {file} {manifest.files[file]}")
    return "\n".join(lines) + "\n"


def model_id(manifest: Manifest) -> str:
    """What a gallery records as its model: embeddings of another model, or of the same graphs fed another
    preprocessing, are not comparable. ``<architecture>:model-sha256:<16 hex of sha256(model_id_text)>``."""
    digest = hashlib.sha256(model_id_text(manifest).encode("utf-8")).hexdigest()
    return f"{manifest.architecture}:{MODEL_ID_SCHEME}:{digest[:16]}"


def model_id_note(recorded: str | None) -> str:
    """Extra advice when a gallery's recorded id is of the older kind (btnet-edge 0.1), else ''."""
    if recorded and f":{LEGACY_MODEL_ID_SCHEME}:" in recorded:
        return (" (this gallery was enrolled by btnet-edge 0.1, whose model id covered only the trunk; ids now cover "
                "the preprocessing and every graph, so re-enroll the people into a new gallery with this version)")
    return ""
