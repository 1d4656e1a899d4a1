"""A strict stand-in for TensorRT's Python API (the subset in DESIGN.md), for CI machines without a GPU.

Enable it with ``BTNET_TRT_STANDIN=1``: ``trt_module("tensorrt")`` then returns this module
and ``cuda_memory()`` the stand-in GPU (:mod:`.device`). It is a test tool, not a backend:

- **building** is real: TensorRT for RTX (``tensorrt_rtx``, installable without a GPU) parses
  each ONNX, applies the optimization profiles and builds the engine; a build TensorRT for
  RTX refuses is refused. The stand-in "engine" written is a header (TensorRT version, GPU,
  profiles, the parsed network's I/O names, types and shapes) followed by the ONNX parsed.
- **running** follows NvInferRuntime.h: ``deserialize_cuda_engine`` returns None for a file of
  another TensorRT version or GPU; ``set_input_shape`` returns False outside the profile or the
  network's static dims; ``set_tensor_address`` returns False for an unknown name or an
  address that is not 256-byte aligned; ``execute_async_v3`` returns False when a shape or an
  address is missing, a tensor does not fit its device allocation or the stream is unknown; it
  then computes with ONNX Runtime (CPU, FP32 where the ONNX is FP32) on the device buffers.
Speed and FP16 numerics are not modelled: those need a GPU (tools/gpu_checks.sh).
"""

from __future__ import annotations

import enum
import json
import logging
import struct
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .device import COMPUTE_CAPABILITY, DEVICE_NAME, MEMORY, SM_COUNT

__version__ = "10.3.0+standin"
MAGIC = b"BTNET-TRT-STANDIN-ENGINE\x00"
FORMAT = 1
_log = logging.getLogger(__name__)
LAUNCHES: Counter = Counter()  # engine name -> execute_async_v3 calls that ran, for tests
_LIVE: Counter = Counter()  # engines and execution contexts alive


class NetworkDefinitionCreationFlag(enum.IntEnum):
    EXPLICIT_BATCH = 0  # deprecated and ignored since TensorRT 10
    STRONGLY_TYPED = 1


class BuilderFlag(enum.IntEnum):
    FP16 = 0
    GPU_FALLBACK = 3
    VERSION_COMPATIBLE = 11


class MemoryPoolType(enum.IntEnum):
    WORKSPACE = 0


class HardwareCompatibilityLevel(enum.IntEnum):
    NONE = 0
    AMPERE_PLUS = 1


class DeviceType(enum.IntEnum):
    GPU = 0
    DLA = 1


class TensorIOMode(enum.IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class DataType(enum.IntEnum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5
    INT64 = 8


_NUMPY = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "BOOL": np.bool_,
          "UINT8": np.uint8, "INT64": np.int64}


def nptype(dtype: Any) -> type:
    """numpy type of a TensorRT DataType (the stand-in's, or TensorRT for RTX's, by name)."""
    name = getattr(dtype, "name", str(dtype)).split(".")[-1]
    if name not in _NUMPY:
        raise TypeError(f"Unsupported TensorRT data type {name}")
    return _NUMPY[name]


class Logger:
    """TensorRT's ILogger: messages at or above ``min_severity`` go to Python logging; errors are kept."""

    class Severity(enum.IntEnum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = Severity

    def __init__(self, min_severity: Logger.Severity = Severity.WARNING) -> None:
        self.min_severity = min_severity
        self.errors: list[str] = []
        self._real: Any = None

    def log(self, severity: Logger.Severity, msg: str) -> None:
        if severity <= Logger.ERROR:
            self.errors.append(msg)
        if severity <= self.min_severity:
            _log.log(logging.ERROR if severity <= Logger.ERROR else logging.WARNING if severity == Logger.WARNING
                     else logging.INFO, "[TensorRT stand-in] %s", msg)

    def real(self) -> Any:
        """The TensorRT for RTX logger the real builder reports to."""
        if self._real is None:
            rtx = _rtx()
            self._real = rtx.Logger(rtx.Logger.VERBOSE if self.min_severity >= Logger.VERBOSE else rtx.Logger.WARNING)
        return self._real


def _rtx() -> Any:
    from ..._deps import require

    return require("tensorrt_rtx", extra="dev")


# ---------------------------------------------------------------------------------------------- build side

_ONNX_OF_NETWORK: dict[int, str] = {}  # id(network) -> the ONNX file its parser read


class OnnxParser:
    """TensorRT for RTX's ONNX parser, remembering the file parsed (the stand-in engine carries it)."""

    def __init__(self, network: Any, logger: Logger) -> None:
        self._network = network
        self._real = _rtx().OnnxParser(network, logger.real())

    def parse_from_file(self, path: str) -> bool:
        ok = bool(self._real.parse_from_file(str(path)))
        if ok:
            _ONNX_OF_NETWORK[id(self._network)] = str(path)
        return ok

    @property
    def num_errors(self) -> int:
        return self._real.num_errors

    def get_error(self, index: int) -> Any:
        return self._real.get_error(index)


class IOptimizationProfile:
    def __init__(self, real: Any) -> None:
        self._real = real
        self.shapes: dict[str, dict[str, list[int]]] = {}

    def set_shape(self, name: str, min: Sequence[int], opt: Sequence[int], max: Sequence[int]) -> None:
        self._real.set_shape(name, tuple(min), tuple(opt), tuple(max))
        self.shapes[name] = {"min": list(map(int, min)), "opt": list(map(int, opt)), "max": list(map(int, max))}


class ITimingCache:
    """A timing cache of this TensorRT and GPU (the stand-in times nothing; it checks where a cache comes from)."""

    HEADER = f"standin-timing-cache {__version__} {DEVICE_NAME}".encode()

    def __init__(self, data: bytes) -> None:
        self.valid = not data or bytes(data).startswith(self.HEADER)

    def serialize(self) -> bytes:
        return self.HEADER

    def combine(self, other: ITimingCache, ignore_mismatch: bool) -> bool:
        return other.valid or ignore_mismatch


class IBuilderConfig:
    """The builder configuration: forwarded to TensorRT for RTX, FP16 and the profiles recorded for the engine."""

    def __init__(self, real: Any) -> None:
        self._real, self.fp16, self.version_compatible = real, False, False
        self.profiles: list[dict[str, dict[str, list[int]]]] = []
        self._cache = ITimingCache(b"")
        self._level = 3
        self._hardware = HardwareCompatibilityLevel.NONE
        self.default_device_type = DeviceType.GPU
        self.DLA_core = -1

    def set_memory_pool_limit(self, pool: MemoryPoolType, size: int) -> None:
        if MemoryPoolType(pool) != MemoryPoolType.WORKSPACE:
            raise TypeError(f"the stand-in knows memory pool WORKSPACE only, not {pool}")
        self._real.set_memory_pool_limit(_rtx().MemoryPoolType.WORKSPACE, int(size))

    def set_flag(self, flag: BuilderFlag) -> None:
        flag = BuilderFlag(flag)
        if flag == BuilderFlag.FP16:
            self.fp16 = True  # TensorRT for RTX is strongly typed: the flag is recorded, the stand-in runs FP32
            return
        if flag == BuilderFlag.VERSION_COMPATIBLE:
            self.version_compatible = True
        self._real.set_flag(getattr(_rtx().BuilderFlag, flag.name))

    @property
    def builder_optimization_level(self) -> int:
        return self._level

    @builder_optimization_level.setter
    def builder_optimization_level(self, level: int) -> None:
        self._real.builder_optimization_level = self._level = int(level)

    @property
    def hardware_compatibility_level(self) -> HardwareCompatibilityLevel:
        return self._hardware

    @hardware_compatibility_level.setter
    def hardware_compatibility_level(self, level: HardwareCompatibilityLevel) -> None:
        self._hardware = HardwareCompatibilityLevel(level)

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        index = self._real.add_optimization_profile(profile._real)
        if index < 0:
            return index
        self.profiles.append(dict(profile.shapes))
        return index

    def create_timing_cache(self, data: bytes) -> ITimingCache:
        return ITimingCache(bytes(data))

    def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
        if not cache.valid and not ignore_mismatch:
            return False
        self._cache = cache
        return True

    def get_timing_cache(self) -> ITimingCache:
        return self._cache


class Builder:
    """TensorRT for RTX's builder; ``build_serialized_network`` returns a stand-in engine."""

    def __init__(self, logger: Logger) -> None:
        self.logger = logger
        self._real = _rtx().Builder(logger.real())

    def create_network(self, flags: int = 0) -> Any:
        flag = NetworkDefinitionCreationFlag
        known = (1 << flag.EXPLICIT_BATCH) | (1 << flag.STRONGLY_TYPED)
        if flags & ~known:
            raise ValueError(f"unknown NetworkDefinitionCreationFlag bits {flags:#x}")
        rtx = _rtx()
        typed = flags & (1 << flag.STRONGLY_TYPED)
        return self._real.create_network(1 << int(rtx.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if typed else 0)

    def create_optimization_profile(self) -> IOptimizationProfile:
        return IOptimizationProfile(self._real.create_optimization_profile())

    def create_builder_config(self) -> IBuilderConfig:
        return IBuilderConfig(self._real.create_builder_config())

    def build_serialized_network(self, network: Any, config: IBuilderConfig) -> bytes | None:
        built = self._real.build_serialized_network(network, config._real)
        if built is None:
            return None
        onnx_path = _ONNX_OF_NETWORK.get(id(network))
        if onnx_path is None:
            self.logger.log(Logger.ERROR, "the stand-in builds networks parsed from an ONNX file only")
            return None
        io = []
        for mode, count, get in (("input", network.num_inputs, network.get_input),
                                 ("output", network.num_outputs, network.get_output)):
            for index in range(count):
                tensor = get(index)
                io.append({"name": tensor.name, "mode": mode, "dtype": tensor.dtype.name,
                           "shape": [int(d) for d in tensor.shape]})
        header = {"format": FORMAT, "tensorrt_version": __version__, "device": DEVICE_NAME,
                  "compute_capability": COMPUTE_CAPABILITY, "sm_count": SM_COUNT, "fp16": config.fp16,
                  "hardware_compatibility": config.hardware_compatibility_level.name,
                  "profiles": config.profiles, "io": io, "onnx_file": Path(onnx_path).name,
                  "built_by": f"tensorrt_rtx {_rtx().__version__}",
                  "rtx_engine_bytes": len(bytes(built))}
        return write_engine(header, Path(onnx_path).read_bytes())


def write_engine(header: dict, onnx: bytes) -> bytes:
    """A stand-in engine file: magic, header length, JSON header, the ONNX."""
    text = json.dumps(header).encode()
    return MAGIC + struct.pack("<I", len(text)) + text + onnx


def read_engine(data: bytes) -> tuple[dict, bytes] | None:
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 4:
        return None
    (size,) = struct.unpack_from("<I", data, len(MAGIC))
    start = len(MAGIC) + 4
    try:
        return json.loads(data[start:start + size]), data[start + size:]
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------- run side

from .runtime import ICudaEngine, IExecutionContext, Runtime  # noqa: E402  (needs the names above)

__all__ = [
    "MEMORY",
    "Builder",
    "BuilderFlag",
    "DataType",
    "DeviceType",
    "HardwareCompatibilityLevel",
    "IBuilderConfig",
    "ICudaEngine",
    "IExecutionContext",
    "Logger",
    "MemoryPoolType",
    "NetworkDefinitionCreationFlag",
    "OnnxParser",
    "Runtime",
    "TensorIOMode",
    "nptype",
]
