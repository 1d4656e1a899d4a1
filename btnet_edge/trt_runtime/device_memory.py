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
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from typing import Any

import numpy as np

from .._deps import available, require
from ..errors import BackendError, MissingDependencyError, NoGpuError

log = logging.getLogger(__name__)


CUDA_ERROR_INSUFFICIENT_DRIVER = 35  # cudaErrorInsufficientDriver: no driver, or one older than the bindings
CUDA_ERROR_NO_DEVICE = 100  # cudaErrorNoDevice


def driver_cuda_version() -> int | None:
    """The CUDA version the installed NVIDIA driver supports (12020 for 12.2), or None without a driver.

    Read from libcuda itself, so it works when cuda-python's bindings refuse the driver.
    """
    name = "nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1"
    try:
        libcuda = ctypes.CDLL(name)
    except OSError:
        return None
    version = ctypes.c_int(0)
    return int(version.value) if libcuda.cuDriverGetVersion(ctypes.byref(version)) == 0 else None


def bindings_version() -> str:
    """The installed cuda-python (cuda-bindings) version, "" when unknown."""
    for dist in ("cuda-bindings", "cuda-python"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return ""


def driver_problem(driver_version: int | None, bindings: str) -> BackendError:
    """Why cuda-python refuses the driver, as the error to raise: no driver (skip-worthy) or a major mismatch.

    cuda-python N.x needs a driver for CUDA N or newer: cuda-python 13 on JetPack 6 (CUDA 12.2/12.6) or an
    older desktop driver fails with cudaErrorInsufficientDriver (35).
    """
    if driver_version is None:
        return NoGpuError("no NVIDIA driver on this machine (libcuda cannot be loaded): TensorRT and the CUDA "
                          "paths need an NVIDIA GPU and its driver; use the ONNX Runtime backend here")
    major, minor = driver_version // 1000, driver_version % 1000 // 10
    wanted = bindings.split(".")[0] if bindings else "?"
    return BackendError(f"the NVIDIA driver supports CUDA {major}.{minor}, but cuda-python {bindings or '?'} needs "
                        f"a CUDA {wanted} driver. Install the cuda-python major that matches the driver: "
                        f'pip install "cuda-python=={major}.*" (or update the driver)')


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

    def dtod_async(self, dst: int, src: int, nbytes: int, stream: Any) -> None:
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
            if int(err) == CUDA_ERROR_INSUFFICIENT_DRIVER:
                raise driver_problem(driver_cuda_version(), bindings_version())
            if int(err) == CUDA_ERROR_NO_DEVICE:
                raise NoGpuError("the NVIDIA driver is installed but reports no CUDA device (cudaErrorNoDevice): "
                                 "check nvidia-smi and CUDA_VISIBLE_DEVICES")
            message = self.rt.cudaGetErrorString(err)[1]
            raise BackendError(f"CUDA error {err}: {message.decode() if isinstance(message, bytes) else message}")
        return values[0] if len(values) == 1 else values

    def _rt(self, function: str, *args: Any) -> Any:
        """Call ``cudart.<function>`` and check its error; cuda-python 12 without libcuda raises RuntimeError."""
        try:
            result = getattr(self.rt, function)(*args)
        except RuntimeError as exc:
            problem = driver_problem(driver_cuda_version(), bindings_version())
            raise type(problem)(f"{problem} (cuda-python: {exc})") from None
        return self._call(result)

    def device_properties(self, device: int = 0) -> tuple[str, str, int]:
        props = self._rt("cudaGetDeviceProperties", device)
        name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
        return name.rstrip("\x00").strip(), f"{props.major}.{props.minor}", int(props.multiProcessorCount)

    def malloc(self, nbytes: int) -> int:
        return int(self._rt("cudaMalloc", nbytes))

    def free(self, ptr: int) -> None:
        self._rt("cudaFree", ptr)

    def host_empty(self, nbytes: int) -> tuple[np.ndarray, Any]:
        ptr = int(self._rt("cudaMallocHost", nbytes))
        array = np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(ptr))
        return array, ptr

    def host_free(self, handle: Any) -> None:
        self._rt("cudaFreeHost", handle)

    def stream_create(self) -> Any:
        return self._rt("cudaStreamCreate")

    def stream_handle(self, stream: Any) -> int:
        """The ``cudaStream_t`` handle value TensorRT wants: ``int(stream)``, never ``stream.getPtr()``.

        ``getPtr()`` is the address of the Python object's storage, not the stream.
        """
        return int(stream)

    def stream_destroy(self, stream: Any) -> None:
        self._rt("cudaStreamDestroy", stream)

    def htod_async(self, dst: int, host: np.ndarray, nbytes: int, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._rt("cudaMemcpyAsync", dst, host.ctypes.data, nbytes, kind, stream)

    def dtoh_async(self, host: np.ndarray, src: int, nbytes: int, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._rt("cudaMemcpyAsync", host.ctypes.data, src, nbytes, kind, stream)

    def dtod_async(self, dst: int, src: int, nbytes: int, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice
        self._rt("cudaMemcpyAsync", dst, src, nbytes, kind, stream)

    def synchronize(self, stream: Any) -> None:
        self._rt("cudaStreamSynchronize", stream)


class PycudaMemory(CudaMemory):
    """pycuda on the primary context, the context TensorRT uses, made current around every call and popped after.

    ``pycuda.autoprimaryctx`` makes it current only on the importing thread, so a camera or
    server thread would fail with an invalid context; pushing it once per thread and never
    popping it leaves pycuda's context stack non-empty at exit, and pycuda then aborts the
    process ("The context stack was not empty upon module cleanup", exit 134). So each call
    pushes and pops: the stack is empty between calls, on every thread. TensorRT itself goes
    through the CUDA runtime, which uses the same primary context.
    """

    name = "pycuda"

    def __init__(self, device: int = 0) -> None:
        self.cuda = require("pycuda.driver")
        self.cuda.init()
        self.context = self.cuda.Device(device).retain_primary_context()
        self._allocations: dict[int, Any] = {}

    @contextmanager
    def _current(self) -> Iterator[None]:
        """The primary context current for one call, popped after it (also when the call raises)."""
        self.context.push()
        try:
            yield
        finally:
            self.cuda.Context.pop()

    def device_properties(self, device: int = 0) -> tuple[str, str, int]:
        with self._current():
            dev = self.cuda.Device(device)
            major, minor = dev.compute_capability()
            count = int(dev.get_attribute(self.cuda.device_attribute.MULTIPROCESSOR_COUNT))
            return dev.name(), f"{major}.{minor}", count

    def malloc(self, nbytes: int) -> int:
        with self._current():
            allocation = self.cuda.mem_alloc(nbytes)
        self._allocations[int(allocation)] = allocation
        return int(allocation)

    def free(self, ptr: int) -> None:
        with self._current():
            self._allocations.pop(ptr).free()

    def host_empty(self, nbytes: int) -> tuple[np.ndarray, Any]:
        with self._current():
            array = self.cuda.pagelocked_empty(nbytes, np.uint8)
        return array, array

    def host_free(self, handle: Any) -> None:
        base = getattr(handle, "base", None)
        if base is not None and hasattr(base, "free"):
            with self._current():
                base.free()

    def stream_create(self) -> Any:
        with self._current():
            return self.cuda.Stream()

    def stream_handle(self, stream: Any) -> int:
        return int(stream.handle)

    def stream_destroy(self, stream: Any) -> None:
        """pycuda frees the stream with its object."""

    def htod_async(self, dst: int, host: np.ndarray, nbytes: int, stream: Any) -> None:
        with self._current():
            self.cuda.memcpy_htod_async(dst, host[:nbytes], stream)

    def dtoh_async(self, host: np.ndarray, src: int, nbytes: int, stream: Any) -> None:
        with self._current():
            self.cuda.memcpy_dtoh_async(host[:nbytes], src, stream)

    def dtod_async(self, dst: int, src: int, nbytes: int, stream: Any) -> None:
        with self._current():
            self.cuda.memcpy_dtod_async(dst, src, nbytes, stream)

    def synchronize(self, stream: Any) -> None:
        with self._current():
            stream.synchronize()


def cuda_memory() -> CudaMemory:
    """cuda-python when installed, else pycuda; a clear error naming both when neither is.

    With ``BTNET_TRT_STANDIN=1`` it is the stand-in GPU of the TensorRT stand-in (a test tool).
    """
    from .compat import standin_enabled

    if standin_enabled():
        from ..testing.trt_standin.device import MEMORY

        return MEMORY
    if available("cuda.bindings.runtime") or available("cuda.cudart"):
        return CudaPythonMemory()
    if available("pycuda.driver"):
        log.info("cuda-python is not installed; using pycuda for device memory")
        return PycudaMemory()
    raise MissingDependencyError('device memory for TensorRT needs cuda-python (pip install "btnet-edge[trt]", '
                                 "the default) or pycuda (pip install pycuda, compiles against the CUDA toolkit)")
