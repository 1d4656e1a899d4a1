"""Device memory, pinned host memory and one stream: cuda-python first, pycuda as the fallback.

NVIDIA's current TensorRT samples use cuda-python (``cuda.bindings.runtime``,
``cuda.cudart`` before 12.6): a wheel on desktop and Jetson, nothing to compile.
pycuda, named in the design card, needs the CUDA toolkit to compile on the
device, so it is the fallback for images that already have it. Both use the
primary CUDA context, which is the one TensorRT uses.
"""

from __future__ import annotations

import ctypes
import logging
from typing import Any

import numpy as np

from .._deps import available, require
from ..errors import BackendError, MissingDependencyError

log = logging.getLogger(__name__)


class CudaMemory:
    """The few CUDA calls the TensorRT backend needs; pointers and streams are plain ints."""

    name = "base"

    def device_properties(self, device: int = 0) -> tuple[str, str, int]:
        """(GPU name, compute capability "8.7", SM count)."""
        raise NotImplementedError

    def malloc(self, nbytes: int) -> int:
        raise NotImplementedError

    def free(self, ptr: int) -> None:
        raise NotImplementedError

    def host_empty(self, nbytes: int) -> tuple[np.ndarray, Any]:
        """A pinned uint8 host buffer and the handle that frees it."""
        raise NotImplementedError

    def host_free(self, handle: Any) -> None:
        raise NotImplementedError

    def stream_create(self) -> Any:
        raise NotImplementedError

    def stream_handle(self, stream: Any) -> int:
        raise NotImplementedError

    def stream_destroy(self, stream: Any) -> None:
        raise NotImplementedError

    def htod_async(self, dst: int, host: np.ndarray, nbytes: int, stream: Any) -> None:
        raise NotImplementedError

    def dtoh_async(self, host: np.ndarray, src: int, nbytes: int, stream: Any) -> None:
        raise NotImplementedError

    def synchronize(self, stream: Any) -> None:
        raise NotImplementedError


class CudaPythonMemory(CudaMemory):
    """cuda-python's runtime API (``cudart``): every call returns (error, value...)."""

    name = "cuda-python"

    def __init__(self) -> None:
        try:
            self.rt = require("cuda.bindings.runtime", extra="trt")
        except MissingDependencyError:
            self.rt = require("cuda.cudart", extra="trt")  # cuda-python < 12.6

    def _call(self, result: Any) -> Any:
        err, *values = result if isinstance(result, tuple) else (result,)
        if err != self.rt.cudaError_t.cudaSuccess:
            message = self.rt.cudaGetErrorString(err)[1]
            raise BackendError(f"CUDA error {err}: {message.decode() if isinstance(message, bytes) else message}")
        return values[0] if len(values) == 1 else values

    def device_properties(self, device: int = 0) -> tuple[str, str, int]:
        props = self._call(self.rt.cudaGetDeviceProperties(device))
        name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
        return name.rstrip("\x00").strip(), f"{props.major}.{props.minor}", int(props.multiProcessorCount)

    def malloc(self, nbytes: int) -> int:
        return int(self._call(self.rt.cudaMalloc(nbytes)))

    def free(self, ptr: int) -> None:
        self._call(self.rt.cudaFree(ptr))

    def host_empty(self, nbytes: int) -> tuple[np.ndarray, Any]:
        ptr = int(self._call(self.rt.cudaMallocHost(nbytes)))
        array = np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(ptr))
        return array, ptr

    def host_free(self, handle: Any) -> None:
        self._call(self.rt.cudaFreeHost(handle))

    def stream_create(self) -> Any:
        return self._call(self.rt.cudaStreamCreate())

    def stream_handle(self, stream: Any) -> int:
        return int(stream.getPtr()) if hasattr(stream, "getPtr") else int(stream)

    def stream_destroy(self, stream: Any) -> None:
        self._call(self.rt.cudaStreamDestroy(stream))

    def htod_async(self, dst: int, host: np.ndarray, nbytes: int, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call(self.rt.cudaMemcpyAsync(dst, host.ctypes.data, nbytes, kind, stream))

    def dtoh_async(self, host: np.ndarray, src: int, nbytes: int, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call(self.rt.cudaMemcpyAsync(host.ctypes.data, src, nbytes, kind, stream))

    def synchronize(self, stream: Any) -> None:
        self._call(self.rt.cudaStreamSynchronize(stream))


class PycudaMemory(CudaMemory):
    """pycuda on the primary context (``pycuda.autoprimaryctx``), the context TensorRT uses."""

    name = "pycuda"

    def __init__(self) -> None:
        require("pycuda.autoprimaryctx")
        self.cuda = require("pycuda.driver")
        self._allocations: dict[int, Any] = {}

    def device_properties(self, device: int = 0) -> tuple[str, str, int]:
        dev = self.cuda.Device(device)
        major, minor = dev.compute_capability()
        return dev.name(), f"{major}.{minor}", int(dev.get_attribute(self.cuda.device_attribute.MULTIPROCESSOR_COUNT))

    def malloc(self, nbytes: int) -> int:
        allocation = self.cuda.mem_alloc(nbytes)
        self._allocations[int(allocation)] = allocation
        return int(allocation)

    def free(self, ptr: int) -> None:
        self._allocations.pop(ptr).free()

    def host_empty(self, nbytes: int) -> tuple[np.ndarray, Any]:
        array = self.cuda.pagelocked_empty(nbytes, np.uint8)
        return array, array

    def host_free(self, handle: Any) -> None:
        base = getattr(handle, "base", None)
        if hasattr(base, "free"):
            base.free()

    def stream_create(self) -> Any:
        return self.cuda.Stream()

    def stream_handle(self, stream: Any) -> int:
        return int(stream.handle)

    def stream_destroy(self, stream: Any) -> None:
        """pycuda frees the stream with its object."""

    def htod_async(self, dst: int, host: np.ndarray, nbytes: int, stream: Any) -> None:
        self.cuda.memcpy_htod_async(dst, host[:nbytes], stream)

    def dtoh_async(self, host: np.ndarray, src: int, nbytes: int, stream: Any) -> None:
        self.cuda.memcpy_dtoh_async(host[:nbytes], src, stream)

    def synchronize(self, stream: Any) -> None:
        stream.synchronize()


def cuda_memory() -> CudaMemory:
    """cuda-python when installed, else pycuda; a clear error naming both when neither is."""
    if available("cuda.bindings.runtime") or available("cuda.cudart"):
        return CudaPythonMemory()
    if available("pycuda.driver"):
        log.info("cuda-python is not installed; using pycuda for device memory")
        return PycudaMemory()
    raise MissingDependencyError('device memory for TensorRT needs cuda-python (pip install "btnet-edge[trt]", '
                                 "the default) or pycuda (pip install pycuda, compiles against the CUDA toolkit)")
