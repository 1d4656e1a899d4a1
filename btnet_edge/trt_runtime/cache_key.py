"""Engine cache keys: what an engine was built from and for, saved beside it as JSON.

A TensorRT plan runs only on the GPU model and TensorRT release that built it.
The key records the ONNX sha256, TensorRT version, GPU name, compute capability,
SM count, the L4T release on Jetson, the precision path, the profiles and the
build switches; an engine whose key differs from what the plan and the running
machine expect is stale and gets rebuilt, never loaded and crashed on.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import EngineMismatchError
from ..safe_io import atomic_write_text
from .compat import RTX_MODULE, runtime_name

log = logging.getLogger(__name__)

KEY_SCHEMA = 1
KEY_SUFFIX = ".key.json"
L4T_RELEASE_FILE = Path("/etc/nv_tegra_release")
_L4T = re.compile(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)")
AOT_GPU = "any (ahead of time)"  # TensorRT for RTX: the engine serves every GPU of its compute capabilities


@dataclass(frozen=True)
class RuntimeEnv:
    """The machine an engine is built on or loaded on."""

    trt_version: str
    gpu_name: str
    compute_capability: str  # "8.7"
    sm_count: int
    l4t_release: str | None = None  # "36.3.0" on Jetson, None elsewhere


@dataclass(frozen=True)
class EngineKey:
    """Everything that makes a built engine valid; equal keys mean the engine can be reused."""

    onnx_sha256: str
    trt_version: str
    gpu_name: str
    compute_capability: str
    sm_count: int
    l4t_release: str | None
    precision_path: str
    profiles: tuple[Any, ...]
    settings: Mapping[str, Any] = field(default_factory=dict)
    schema: int = KEY_SCHEMA

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["profiles"] = list(self.profiles)
        data["settings"] = dict(self.settings)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EngineKey:
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in data.items() if k in known}
        values["profiles"] = tuple(_canonical(values.get("profiles", [])))
        values["settings"] = _canonical(values.get("settings", {}))
        return cls(**values)


def _canonical(value: Any) -> Any:
    """JSON round trip, so keys built in memory compare equal to keys read from disk."""
    return json.loads(json.dumps(value, sort_keys=True))


def parse_l4t_release(text: str) -> str | None:
    """``# R36 (release), REVISION: 3.0, ...`` -> ``"36.3.0"``; None when the text is not an L4T banner."""
    match = _L4T.search(text)
    return f"{match.group(1)}.{match.group(2)}" if match else None


def read_l4t_release(path: Path = L4T_RELEASE_FILE) -> str | None:
    """The Jetson L4T release, or None off Jetson."""
    try:
        return parse_l4t_release(path.read_text(errors="replace"))
    except OSError:
        return None


def runtime_env(trt: Any = None, memory: Any = None) -> RuntimeEnv:
    """TensorRT version, GPU and L4T release of this machine: the right-hand side of every cache key.

    TensorRT for RTX builds ahead of time for a set of compute capabilities, not for this GPU:
    its key names no GPU, and no GPU is needed to build.
    """
    if trt is None:
        from .compat import trt_module

        trt = trt_module("tensorrt")
    if runtime_name(trt) == RTX_MODULE:
        return RuntimeEnv(str(trt.__version__), AOT_GPU, AOT_GPU, 0, None)
    if memory is None:
        from .device_memory import cuda_memory

        memory = cuda_memory()
    name, capability, sm_count = memory.device_properties(0)
    return RuntimeEnv(str(trt.__version__), name, capability, sm_count, read_l4t_release())


def key_for(entry: Mapping[str, Any], env: RuntimeEnv) -> EngineKey:
    """The key an engine planned as ``entry`` (one item of the plan's ``engines``) must carry on ``env``."""
    return EngineKey(
        onnx_sha256=entry["sha256"], trt_version=env.trt_version, gpu_name=env.gpu_name,
        compute_capability=env.compute_capability, sm_count=env.sm_count, l4t_release=env.l4t_release,
        precision_path=entry["precision_path"], profiles=tuple(_canonical(list(entry["profiles"]))),
        settings=_canonical(dict(entry.get("settings", {}))),
    )


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version)[:3])


def key_differences(expected: EngineKey, found: EngineKey) -> list[str]:
    """Human-readable differences, ``field: found -> expected``; empty when the engine is usable.

    Version-compatible engines load on the same or a later TensorRT; hardware-compatible
    (Ampere+) engines load on any GPU of compute capability 8.0 or newer.
    """
    settings = dict(found.settings)
    skip = set()
    if settings.get("version_compatible") and _version_tuple(expected.trt_version) >= _version_tuple(found.trt_version):
        skip.add("trt_version")
    if settings.get("hardware_compatibility") == "ampere_plus" and \
            _version_tuple(expected.compute_capability) >= (8, 0):
        skip |= {"gpu_name", "compute_capability", "sm_count"}
    if settings.get("runtime") == RTX_MODULE:  # portable ahead-of-time engines: TensorRT for RTX checks the GPU
        skip |= {"gpu_name", "compute_capability", "sm_count"}
    diffs = []
    for name in ("onnx_sha256", "trt_version", "gpu_name", "compute_capability", "sm_count", "l4t_release",
                 "precision_path", "profiles", "settings", "schema"):
        if name in skip:
            continue
        a, b = getattr(found, name), getattr(expected, name)
        if a != b:
            if name == "onnx_sha256":
                a, b = a[:12], b[:12]
            diffs.append(f"{name}: {a} -> {b}" if name not in ("profiles", "settings") else f"{name} changed")
    return diffs


def stale_engines(plan: Mapping[str, Any], existing_keys: Mapping[str, EngineKey | None],
                  runtime_env: RuntimeEnv) -> dict[str, str]:
    """Engines of ``plan`` to (re)build, name -> reason, in plan order; the others are fresh.

    ``existing_keys`` maps engine names to the key saved beside an existing engine
    (absent or None: no usable engine file).
    """
    stale = {}
    for entry in plan["engines"]:
        found = existing_keys.get(entry["name"])
        if found is None:
            stale[entry["name"]] = "no engine yet"
            continue
        diffs = key_differences(key_for(entry, runtime_env), found)
        if diffs:
            stale[entry["name"]] = "; ".join(diffs)
    return stale


def key_path(engine_path: Path) -> Path:
    return engine_path.with_name(engine_path.name + KEY_SUFFIX)


def save_key(engine_path: Path, key: EngineKey, entry: Mapping[str, Any]) -> Path:
    """Write the sidecar: the key, and the plan entry (enough to rebuild the engine where its ONNX is)."""
    path = key_path(engine_path)
    text = json.dumps({"key": key.to_json(), "plan": dict(entry)}, indent=2, sort_keys=True) + "\n"
    return atomic_write_text(path, text, "engine key")


def load_sidecar(engine_path: Path) -> tuple[EngineKey, dict[str, Any]] | None:
    """(key, plan entry) saved beside ``engine_path``, or None when there is no readable sidecar."""
    path = key_path(engine_path)
    if not engine_path.is_file() or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        return EngineKey.from_json(data["key"]), dict(data.get("plan", {}))
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring unreadable engine key %s (%s); the engine will be rebuilt", path, exc)
        return None


def read_existing_keys(out_dir: Path, plan: Mapping[str, Any]) -> dict[str, EngineKey | None]:
    """Keys of the plan's engines already in ``out_dir`` (None where the engine or its key is missing)."""
    keys: dict[str, EngineKey | None] = {}
    for entry in plan["engines"]:
        sidecar = load_sidecar(Path(out_dir) / entry["engine"])
        keys[entry["name"]] = sidecar[0] if sidecar else None
    return keys


def require_match(engine_path: Path, expected: EngineKey, found: EngineKey) -> None:
    """Raise :class:`EngineMismatchError` naming both sides when ``found`` is not usable on this machine."""
    diffs = key_differences(expected, found)
    if diffs:
        raise EngineMismatchError(
            f"{engine_path.name} was built for {found.gpu_name} (sm {found.compute_capability}, TensorRT "
            f"{found.trt_version}, L4T {found.l4t_release}) but this machine is {expected.gpu_name} (sm "
            f"{expected.compute_capability}, TensorRT {expected.trt_version}, L4T {expected.l4t_release}); "
            f"differences: {'; '.join(diffs)}. Rebuild it: btnet-edge build PKG --target TARGET --out "
            f"{engine_path.parent}")
