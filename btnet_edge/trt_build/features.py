"""What the TensorRT at hand can do, found with ``hasattr`` (never a version flag).

TensorRT 8.6 to 11 differ in a few places that matter here: ``BuilderFlag.FP16``
is gone in 11 (networks are strongly typed), ``EXPLICIT_BATCH`` is needed on 8.x,
ignored on 10 and gone on 11, and compatibility switches start at 8.6. The plan
only reads a :class:`TrtFeatures`; a real build derives it from the module, a
dry run from :func:`simulated_features`, which mirrors NVIDIA's release notes.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

from ..errors import ConfigError
from ..trt_runtime.compat import RTX_MODULE, runtime_name

BUILDER_FLAG_FP16 = "builder_flag_fp16"
STRONGLY_TYPED_FP16 = "strongly_typed_fp16_onnx"
FP32 = "fp32"
ZERO_BATCH_REASON = ("one merged trunk engine whose every input has a batch minimum of 0: NvInferRuntime.h allows "
                     "0 <= minDims since TensorRT 8.0 (NVIDIA/TensorRT#337 refused it on TensorRT 7) and TensorRT "
                     "for RTX 1.7 builds it; the branches write their implants straight into its inputs")


@dataclass(frozen=True)
class TrtFeatures:
    """The TensorRT features the build plan depends on."""

    version: str
    builder_flag_fp16: bool  # BuilderFlag.FP16 (8.x-10.x): weakly typed FP16
    explicit_batch_flag: bool  # NetworkDefinitionCreationFlag.EXPLICIT_BATCH exists (set it where it does)
    strongly_typed_flag: bool  # NetworkDefinitionCreationFlag.STRONGLY_TYPED (10.x; accepted, ignored on 11)
    compatibility_switches: bool  # HardwareCompatibilityLevel and BuilderFlag.VERSION_COMPATIBLE (8.6+)
    zero_min_batch: bool = True  # profiles with min 0 (allowed since 8.0; whether each release runs them: on a GPU)
    optimization_level: bool = True  # IBuilderConfig.builder_optimization_level (8.6+)
    runtime: str = "tensorrt"  # the module: "tensorrt", or "tensorrt_rtx" (TensorRT for RTX, ahead of time)

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    @property
    def always_strongly_typed(self) -> bool:
        """Every network is strongly typed (TensorRT 11, TensorRT for RTX): no FP16 flag, --stronglyTyped a no-op."""
        return not self.builder_flag_fp16 and not self.explicit_batch_flag


def features_of(trt: ModuleType | Any) -> TrtFeatures:
    """Features of an imported ``tensorrt`` (or ``tensorrt_rtx``) module."""
    flags = trt.NetworkDefinitionCreationFlag
    return TrtFeatures(
        version=str(trt.__version__),
        builder_flag_fp16=hasattr(trt.BuilderFlag, "FP16"),
        explicit_batch_flag=hasattr(flags, "EXPLICIT_BATCH"),
        strongly_typed_flag=hasattr(flags, "STRONGLY_TYPED"),
        compatibility_switches=hasattr(trt, "HardwareCompatibilityLevel") and hasattr(trt.BuilderFlag,
                                                                                     "VERSION_COMPATIBLE"),
        optimization_level=hasattr(trt.IBuilderConfig, "builder_optimization_level"),
        runtime=runtime_name(trt),
    )


def simulated_features(version: str, runtime: str = "tensorrt") -> TrtFeatures:
    """Features of a TensorRT release for ``--dry-run --trt-version`` (from NVIDIA's release notes)."""
    if runtime == RTX_MODULE:  # TensorRT for RTX 1.x: strongly typed, compatibility flags, optimization level
        return TrtFeatures(version, builder_flag_fp16=False, explicit_batch_flag=False, strongly_typed_flag=True,
                           compatibility_switches=True, runtime=RTX_MODULE)
    try:
        parts = [int(p) for p in version.split(".")[:2]]
    except ValueError:
        raise ConfigError(f"--trt-version should look like 8.6, 10.3 or 11.4, found {version!r}") from None
    major, minor = parts[0], (parts[1] if len(parts) > 1 else 0)
    if major < 8 or (major == 8 and minor < 5):
        raise ConfigError(f"TensorRT {version} is too old: btnet-edge needs 8.5 (JetPack 5) or newer")
    return TrtFeatures(
        version=version,
        builder_flag_fp16=major < 11,
        explicit_batch_flag=major < 11,
        strongly_typed_flag=major >= 10,
        compatibility_switches=(major, minor) >= (8, 6),
        optimization_level=(major, minor) >= (8, 6),
    )


def precision_path(features: TrtFeatures, precision: str) -> str:
    """How FP16 is obtained: a builder flag where it exists, else an FP16 ONNX on a strongly typed network."""
    if precision == "fp32":
        return FP32
    return BUILDER_FLAG_FP16 if features.builder_flag_fp16 else STRONGLY_TYPED_FP16


def network_flags(trt: Any, path: str) -> int:
    """Creation flags for ``create_network``: enums looked up by name, never hard-coded bits."""
    flags = 0
    kinds = trt.NetworkDefinitionCreationFlag
    if hasattr(kinds, "EXPLICIT_BATCH"):
        flags |= 1 << int(kinds.EXPLICIT_BATCH)
    if path == STRONGLY_TYPED_FP16 and hasattr(kinds, "STRONGLY_TYPED"):
        flags |= 1 << int(kinds.STRONGLY_TYPED)
    return flags


def set_workspace(trt: Any, config: Any, workspace_mb: int) -> None:
    """``set_memory_pool_limit`` (8.4+); the old ``max_workspace_size`` attribute is gone in 10."""
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
