"""The TensorRT module an engine needs, and the few runtime calls that differ between releases.

Differences are found with ``hasattr``, never a version flag: ``get_tensor_profile_shape``
(8.5+) against ``get_profile_shape``, ``trt.nptype``, and ``engine_host_code_allowed`` for
version-compatible plans (8.6+). TensorRT for RTX (module ``tensorrt_rtx``) has the same
runtime API.
"""

from __future__ import annotations

from typing import Any

RTX_MODULE = "tensorrt_rtx"
RUNTIME_MODULES = ("tensorrt", RTX_MODULE)

STANDIN_ENV = "BTNET_TRT_STANDIN"  # "1": TensorRT is the test stand-in (btnet_edge.testing.trt_standin)

_LOGGERS: dict[str, Any] = {}  # module name -> its TensorRT logger, made on first use


def standin_enabled() -> bool:
    """True when ``BTNET_TRT_STANDIN=1``: ``tensorrt`` and device memory are the CI stand-ins (docs/tensorrt.md)."""
    import os

    return os.environ.get(STANDIN_ENV, "") == "1"


def trt_module(runtime: str = "tensorrt") -> Any:
    """The TensorRT module a target or an engine names (``tensorrt`` or ``tensorrt_rtx``)."""
    from .._deps import require

    if runtime == "tensorrt" and standin_enabled():
        from ..testing import trt_standin

        return trt_standin
    return require(runtime, extra="trt")


def runtime_name(trt: Any) -> str:
    """``"tensorrt_rtx"`` for TensorRT for RTX, else ``"tensorrt"``."""
    return RTX_MODULE if getattr(trt, "__name__", "").startswith(RTX_MODULE) else "tensorrt"


def trt_logger(trt: Any) -> Any:
    """One TensorRT logger per process and module (TensorRT warns when several are made; a logger of
    ``tensorrt`` is not one of ``tensorrt_rtx``, whose Builder and Runtime would refuse it)."""
    import logging

    key = getattr(trt, "__name__", str(id(trt)))
    if key not in _LOGGERS:
        verbose = logging.getLogger("btnet_edge").isEnabledFor(logging.DEBUG)  # btnet-edge --verbose
        _LOGGERS[key] = trt.Logger(trt.Logger.INFO if verbose else trt.Logger.WARNING)
    return _LOGGERS[key]


def profile_shapes(engine: Any, name: str) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(min, opt, max) of input ``name`` in profile 0."""
    if hasattr(engine, "get_tensor_profile_shape"):  # 8.5+
        shapes = engine.get_tensor_profile_shape(name, 0)
    else:
        shapes = engine.get_profile_shape(0, name)
    return tuple(tuple(int(d) for d in s) for s in shapes)  # type: ignore[return-value]


def allow_host_code(runtime: Any) -> None:
    """Version-compatible plans embed a lean runtime; the full runtime must be allowed to run it (8.6+)."""
    if hasattr(runtime, "engine_host_code_allowed"):
        runtime.engine_host_code_allowed = True


_DTYPES = {"FLOAT": "float32", "HALF": "float16", "INT32": "int32", "INT64": "int64", "INT8": "int8",
           "UINT8": "uint8", "BOOL": "bool"}


def numpy_dtype(trt: Any, dtype: Any) -> Any:
    """numpy dtype of a TensorRT tensor type (``trt.nptype`` where it exists)."""
    import numpy as np

    if hasattr(trt, "nptype"):
        return np.dtype(trt.nptype(dtype))
    name = getattr(dtype, "name", str(dtype)).split(".")[-1]
    if name not in _DTYPES:
        raise TypeError(f"TensorRT tensor type {name} has no numpy equivalent here")
    return np.dtype(_DTYPES[name])
