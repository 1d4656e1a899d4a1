"""Build the planned engines with TensorRT: profiles, precision path, timing cache, cache keys.

Only this module and :mod:`btnet_edge.trt_runtime.engine_backend` call TensorRT, and only
the API subset that works from 8.6 to 11 (DESIGN.md). Version differences are looked up
with ``hasattr`` in :mod:`.features`. An engine is rebuilt only when its saved key differs
from the key the plan and this machine give it.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, NamedTuple

from ..errors import BackendError, ConfigError
from ..safe_io import atomic_write_bytes, atomic_write_text
from ..trt_runtime.cache_key import RuntimeEnv, key_for, read_existing_keys, runtime_env, save_key, stale_engines
from ..trt_runtime.compat import RTX_MODULE, numpy_dtype, trt_logger, trt_module
from ..trt_runtime.engine_folder import ENGINES_MANIFEST
from . import features as trt_features
from .detector_graph import ANCHOR_INDEX

log = logging.getLogger(__name__)


def timing_cache_path(out_dir: Path, env: RuntimeEnv) -> Path:
    """One timing cache per GPU and TensorRT release (a cache from another one is rejected anyway)."""
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", f"{env.gpu_name}-trt{env.trt_version}").strip("-").lower()
    return out_dir / f"{slug}.timing.cache"


def _configure(trt: Any, builder: Any, config: Any, entry: Mapping[str, Any]) -> None:
    settings = entry.get("settings", {})
    features = trt_features.features_of(trt)
    trt_features.set_workspace(trt, config, settings.get("workspace_mb", 1024))
    if entry["precision_path"] == trt_features.BUILDER_FLAG_FP16:
        if not features.builder_flag_fp16:
            raise BackendError(f"{entry['name']} was planned with BuilderFlag.FP16, which TensorRT {trt.__version__} "
                               "does not have: plan again on this machine (btnet-edge build without --dry-run)")
        config.set_flag(trt.BuilderFlag.FP16)
    if settings.get("dla_core") is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(settings["dla_core"])
        if settings.get("gpu_fallback", True):
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    wants_compat = settings.get("hardware_compatibility", "none") != "none" or settings.get("version_compatible")
    if wants_compat and not features.compatibility_switches:
        raise ConfigError(f"hardware/version compatibility needs TensorRT 8.6 or newer (found {trt.__version__}); "
                          "set them off in the target")
    if settings.get("hardware_compatibility") == "ampere_plus":
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
    if settings.get("version_compatible"):
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    level = settings.get("builder_optimization_level")
    if level is not None:
        if not features.optimization_level:
            raise ConfigError(f"builder_optimization_level needs TensorRT 8.6 or newer (found {trt.__version__})")
        config.builder_optimization_level = int(level)
    capabilities = settings.get("compute_capabilities") or []
    if capabilities:  # TensorRT for RTX: ahead-of-time targets (the target file checked the runtime)
        config.num_compute_capabilities = len(capabilities)
        for index, capability in enumerate(capabilities):
            value = getattr(trt.ComputeCapability, "SM" + capability.replace(".", ""))
            if not config.set_compute_capability(value, index):
                raise BackendError(f"TensorRT for RTX {trt.__version__} refused compute capability {capability}")
    for profile_spec in entry["profiles"]:
        profile = builder.create_optimization_profile()
        for name, shapes in profile_spec.items():
            profile.set_shape(name, tuple(shapes["min"]), tuple(shapes["opt"]), tuple(shapes["max"]))
        config.add_optimization_profile(profile)


def _parser_error(error: Any) -> str:
    return error.desc() if hasattr(error, "desc") else str(error)


class BuiltEngine(NamedTuple):
    """One build's output: the serialized engine, the updated timing cache and the network's I/O tensors."""

    engine: bytes
    timing_cache: bytes
    io: dict[str, dict[str, Any]]


def network_io(trt: Any, network: Any, entry: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The parsed network's inputs and outputs, checked against what the runtime will bind.

    Names must be the plan's; an image input is uint8 exactly when the plan says ``uint8_bgr``;
    every other tensor is float32 (the device-resident layout binds float32 implants and embeddings).
    """
    io = {}
    for mode, count, get in (("input", network.num_inputs, network.get_input),
                             ("output", network.num_outputs, network.get_output)):
        for index in range(count):
            tensor = get(index)
            io[tensor.name] = {"mode": mode, "dtype": str(numpy_dtype(trt, tensor.dtype)),
                               "shape": [int(d) for d in tensor.shape]}
    expected = {name: "input" for name in entry["inputs"]} | {name: "output" for name in entry["outputs"]}
    if {name: t["mode"] for name, t in io.items()} != expected:
        raise BackendError(f"{entry['onnx']} has I/O {sorted(io)}, the plan expects {sorted(expected)}: plan again")
    image = entry["inputs"][0] if entry.get("input_format") == "uint8_bgr" else None
    wanted = {image: "uint8", ANCHOR_INDEX: "int32"}
    wrong = {name: t["dtype"] for name, t in io.items() if t["dtype"] != wanted.get(name, "float32")}
    if wrong:
        raise BackendError(f"{entry['name']}: TensorRT {trt.__version__} parsed {wrong} from {entry['onnx']}; the "
                           "runtime binds uint8 crops and float32 features: plan again with this btnet-edge")
    return io


def build_engine(entry: Mapping[str, Any], timing_cache: bytes = b"", trt: Any = None) -> BuiltEngine:
    """Serialized engine, updated timing cache and checked I/O for one plan entry."""
    trt = trt or trt_module("tensorrt")
    logger = trt_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(trt_features.network_flags(trt, entry["precision_path"]))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(entry["onnx"])):
        errors = "; ".join(_parser_error(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT {trt.__version__} cannot parse {entry['onnx']}: {errors}")
    io = network_io(trt, network, entry)
    config = builder.create_builder_config()
    _configure(trt, builder, config, entry)
    timed = trt_features.features_of(trt).runtime != RTX_MODULE  # TensorRT for RTX times nothing ahead of time
    if timed:
        cache = config.create_timing_cache(timing_cache)
        if not config.set_timing_cache(cache, ignore_mismatch=False):
            log.info("timing cache is from another GPU or TensorRT; starting a new one")
            config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(f"TensorRT {trt.__version__} failed to build {entry['name']} from {entry['onnx']}; "
                           "TensorRT's errors are above (rerun with --verbose for its full log)")
    return BuiltEngine(bytes(serialized), bytes(config.get_timing_cache().serialize()) if timed else b"", io)


def write_engines_manifest(out_dir: Path, plan: Mapping[str, Any], env: RuntimeEnv) -> Path:
    """engines.json: the plan, the machine, and each engine's key (read back from its sidecar)."""
    keys = read_existing_keys(out_dir, plan)
    data = dict(plan)
    data["built_on"] = vars(env)
    data["engines"] = [dict(entry, key=keys[entry["name"]].to_json() if keys[entry["name"]] else None)
                       for entry in plan["engines"]]
    path = out_dir / ENGINES_MANIFEST
    return atomic_write_text(path, json.dumps(data, indent=2) + "\n", "engines manifest")


def build_all(plan: Mapping[str, Any], out_dir: str | Path, force: bool = False,
              progress: Callable[[str], None] | None = None, trt: Any = None,
              env: RuntimeEnv | None = None) -> dict[str, Any]:
    """Build every stale engine of ``plan`` into ``out_dir``; returns what was built, kept and why."""
    trt = trt or trt_module(plan.get("tensorrt", {}).get("module", "tensorrt"))
    out_dir = Path(out_dir)
    env = env or runtime_env(trt)
    say = progress or log.info
    existing = {} if force else read_existing_keys(out_dir, plan)
    stale = stale_engines(plan, existing, env)
    cache_path = timing_cache_path(out_dir, env)
    cache = cache_path.read_bytes() if cache_path.is_file() else b""
    built, total = [], len(stale)
    for number, entry in enumerate((e for e in plan["engines"] if e["name"] in stale), start=1):
        say(f"[{number}/{total}] building {entry['name']} ({stale[entry['name']]}) ...")
        start = time.perf_counter()
        engine, cache, io = build_engine(entry, cache, trt)
        engine_path = out_dir / entry["engine"]
        atomic_write_bytes(engine_path, engine, "engine")
        if cache:
            atomic_write_bytes(cache_path, cache, "timing cache")  # keep the tuning even if a later engine fails
        save_key(engine_path, key_for(entry, env), entry)
        write_engines_manifest(out_dir, plan, env)
        built.append({"name": entry["name"], "seconds": round(time.perf_counter() - start, 1),
                      "bytes": len(engine), "reason": stale[entry["name"]], "io": io})
        say(f"[{number}/{total}] {entry['name']}: {len(engine) / 1e6:.1f} MB in {built[-1]['seconds']} s")
    manifest = write_engines_manifest(out_dir, plan, env)
    fresh = [e["name"] for e in plan["engines"] if e["name"] not in stale]
    if fresh:
        say(f"up to date, not rebuilt: {', '.join(fresh)}")
    return {"built": built, "fresh": fresh, "engines_manifest": str(manifest),
            "timing_cache": str(cache_path) if cache_path.is_file() else None,
            "built_on": vars(env)}


def refresh_stale_engines(folder: str | Path, trt: Any = None, progress: Callable[[str], None] | None = None,
                          memory: Any = None) -> list[str]:
    """Rebuild in place the engines of a built folder whose key no longer fits this machine; returns their names.

    A JetPack or TensorRT upgrade, or another GPU, makes every engine stale: each is rebuilt
    from the ONNX file the folder keeps (one log line each), when that file is still there with
    the sha256 the engine was built from. Engines that cannot be rebuilt are left alone: the
    runtime then refuses them by name, with the build command to run.
    """
    from ..package.loader import sha256_of
    from ..trt_runtime.cache_key import key_differences, load_sidecar
    from ..trt_runtime.engine_folder import read_engine_folder

    engines = read_engine_folder(folder)
    trt = trt or trt_module(engines.tensorrt_module)
    env = runtime_env(trt, memory)
    say = progress or log.info
    rebuilt = []
    for entry in engines.engines:
        path = engines.engine_path(entry)
        sidecar = load_sidecar(path)
        if sidecar is None:
            continue  # no key (trtexec-built, or missing): loaded with a warning, or refused, by the runtime
        found, _ = sidecar
        diffs = key_differences(key_for(entry.raw, env), found)
        if not diffs:
            continue
        if not entry.onnx.is_file() or sha256_of(entry.onnx) != entry.sha256:
            log.warning("%s is stale (%s) and its ONNX %s is gone or changed: it cannot be rebuilt here",
                        entry.engine, "; ".join(diffs), entry.onnx)
            continue
        say(f"{entry.engine} is stale ({'; '.join(diffs)}): rebuilding it from {entry.onnx.name}")
        built = build_engine(entry.raw, trt=trt)
        atomic_write_bytes(path, built.engine, "engine")
        save_key(path, key_for(entry.raw, env), entry.raw)
        rebuilt.append(entry.name)
    if rebuilt:
        write_engines_manifest(Path(folder), engines.plan, env)
    return rebuilt
