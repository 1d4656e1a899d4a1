"""The stand-in's GPU: "device" memory in 256-byte aligned host allocations, streams as handles, copies counted.

One address space per process, like a GPU's: every allocation is registered, and a copy or a
tensor address that does not lie inside a live allocation is refused, as cudaMemcpy and
TensorRT would fail (or corrupt memory) on a real device.
"""

from __future__ import annotations

import ctypes
import itertools
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import BackendError
from ...trt_runtime.device_memory import CudaMemory

DEVICE_NAME = "TensorRT stand-in (ONNX Runtime on host memory)"
COMPUTE_CAPABILITY = "8.9"
SM_COUNT = 128
ALIGNMENT = 256  # cudaMalloc returns 256-byte aligned pointers; TensorRT requires that alignment


@dataclass
class Traffic:
    """Copies and synchronisations since the last :func:`reset_traffic`: what a frame costs on the bus."""

    htod: int = 0
    dtoh: int = 0
    dtod: int = 0
    syncs: int = 0
    htod_bytes: int = 0
    dtoh_bytes: int = 0


class _Device:
    """Allocations and streams of the one stand-in GPU."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.allocations: dict[int, tuple[np.ndarray, int]] = {}  # base -> (backing array, size)
        self.streams: set[int] = set()
        self._handles = itertools.count(0x5000, 0x10)
        self.traffic = Traffic()

    def malloc(self, nbytes: int) -> int:
        if nbytes <= 0:
            raise BackendError(f"cudaMalloc of {nbytes} bytes: the stand-in, like CUDA, returns no usable pointer")
        backing = np.zeros(nbytes + ALIGNMENT, np.uint8)
        base = backing.ctypes.data
        base += -base % ALIGNMENT
        with self.lock:
            self.allocations[base] = (backing, nbytes)
        return base

    def free(self, ptr: int) -> None:
        with self.lock:
            if ptr not in self.allocations:
                raise BackendError(f"cudaFree({ptr:#x}): not a pointer cudaMalloc returned (or freed twice)")
            del self.allocations[ptr]

    def holds(self, ptr: int, nbytes: int) -> bool:
        """True when [ptr, ptr + nbytes) lies inside one live allocation."""
        with self.lock:
            return any(base <= ptr and ptr + nbytes <= base + size for base, (_, size) in self.allocations.items())

    def require(self, ptr: int, nbytes: int, what: str) -> None:
        if not self.holds(ptr, nbytes):
            raise BackendError(f"{what}: {nbytes} bytes at {ptr:#x} are not inside device memory (cudaMalloc)")

    def new_stream(self) -> int:
        with self.lock:
            handle = next(self._handles)
            self.streams.add(handle)
        return handle

    def require_stream(self, handle: int, what: str) -> None:
        if handle not in self.streams:
            raise BackendError(f"{what}: stream {handle:#x} was not created (or is destroyed)")


DEVICE = _Device()


def reset_traffic() -> Traffic:
    """The traffic so far, and start counting again."""
    traffic, DEVICE.traffic = DEVICE.traffic, Traffic()
    return traffic


def live() -> dict[str, int]:
    """What is still allocated: device buffers and streams (a clean shutdown leaves none of ours)."""
    return {"allocations": len(DEVICE.allocations), "streams": len(DEVICE.streams)}


class StandinStream:
    """A CUDA stream of the stand-in GPU: ``int(stream)`` is its handle, as with cuda-python."""

    def __init__(self, handle: int) -> None:
        self.handle = handle

    def __int__(self) -> int:
        return self.handle


class StandinMemory(CudaMemory):
    """The CudaMemory calls the TensorRT backend and the resident runner make, on the stand-in GPU."""

    name = "standin"

    def device_properties(self, device: int = 0) -> tuple[str, str, int]:
        if device != 0:
            raise BackendError(f"CUDA error: invalid device ordinal {device} (the stand-in has one GPU)")
        return DEVICE_NAME, COMPUTE_CAPABILITY, SM_COUNT

    def malloc(self, nbytes: int) -> int:
        return DEVICE.malloc(nbytes)

    def free(self, ptr: int) -> None:
        DEVICE.free(ptr)

    def host_empty(self, nbytes: int) -> tuple[np.ndarray, Any]:
        array = np.zeros(max(nbytes, 1), np.uint8)
        return array, array

    def host_free(self, handle: Any) -> None:
        """numpy frees the pinned stand-in with its last reference."""

    def stream_create(self) -> Any:
        return StandinStream(DEVICE.new_stream())

    def stream_handle(self, stream: Any) -> int:
        return int(stream)

    def stream_destroy(self, stream: Any) -> None:
        with DEVICE.lock:
            if int(stream) not in DEVICE.streams:
                raise BackendError(f"cudaStreamDestroy: stream {int(stream):#x} does not exist")
            DEVICE.streams.discard(int(stream))

    def htod_async(self, dst: int, host: np.ndarray, nbytes: int, stream: Any) -> None:
        DEVICE.require_stream(int(stream), "cudaMemcpyAsync")
        DEVICE.require(dst, nbytes, "cudaMemcpyAsync host to device")
        if host.nbytes < nbytes:
            raise BackendError(f"cudaMemcpyAsync: the host buffer holds {host.nbytes} bytes, {nbytes} asked")
        ctypes.memmove(dst, host.ctypes.data, nbytes)
        DEVICE.traffic.htod += 1
        DEVICE.traffic.htod_bytes += nbytes

    def dtoh_async(self, host: np.ndarray, src: int, nbytes: int, stream: Any) -> None:
        DEVICE.require_stream(int(stream), "cudaMemcpyAsync")
        DEVICE.require(src, nbytes, "cudaMemcpyAsync device to host")
        if host.nbytes < nbytes:
            raise BackendError(f"cudaMemcpyAsync: the host buffer holds {host.nbytes} bytes, {nbytes} asked")
        ctypes.memmove(host.ctypes.data, src, nbytes)
        DEVICE.traffic.dtoh += 1
        DEVICE.traffic.dtoh_bytes += nbytes

    def dtod_async(self, dst: int, src: int, nbytes: int, stream: Any) -> None:
        DEVICE.require_stream(int(stream), "cudaMemcpyAsync")
        DEVICE.require(src, nbytes, "cudaMemcpyAsync device to device (source)")
        DEVICE.require(dst, nbytes, "cudaMemcpyAsync device to device (destination)")
        ctypes.memmove(dst, src, nbytes)
        DEVICE.traffic.dtod += 1

    def synchronize(self, stream: Any) -> None:
        DEVICE.require_stream(int(stream), "cudaStreamSynchronize")
        DEVICE.traffic.syncs += 1


MEMORY = StandinMemory()
