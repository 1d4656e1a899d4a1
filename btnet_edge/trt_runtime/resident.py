"""Device-resident inference: one upload of uint8 crops, engines chained on the device, one download.

Per call the runner copies the frame's aligned uint8 crops into one pinned host
buffer, uploads it with one host-to-device copy, launches the branch engines
(each writing its implant straight into the trunk's input buffer), launches the
trunk, downloads the embeddings with one device-to-host copy and synchronizes
once. Nothing else crosses the bus. :mod:`.frame_layout` says where each tensor
lives; an executor binds those addresses to an engine and launches it:

- :class:`TrtExecutor`: ``set_input_shape`` / ``set_tensor_address`` / ``execute_async_v3``;
- :class:`OrtExecutor`: ONNX Runtime IOBinding on host pointers, the same plan
  and offsets on the CPU, which is how the address arithmetic is tested without a GPU.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendError, ConfigError
from .engine_folder import EngineFolder, read_engine_folder
from .frame_layout import CROPS, EMBEDDING, Copy, FrameLayout, Launch, LayoutPlanner, Slot

log = logging.getLogger(__name__)


def slot_address(address: Mapping[str, int], slot: Slot) -> int:
    """The address a slot binds to: its buffer's base plus its byte offset (the one rule both executors use)."""
    return address[slot.buffer] + slot.offset


class HostMemory:
    """The CudaMemory calls the runner makes, on host memory: 'device' pointers are numpy buffers' addresses."""

    name = "host"

    def __init__(self) -> None:
        self._buffers: dict[int, np.ndarray] = {}

    def malloc(self, nbytes: int) -> int:
        buffer = np.zeros(max(nbytes, 1), np.uint8)
        self._buffers[buffer.ctypes.data] = buffer
        return buffer.ctypes.data

    def free(self, ptr: int) -> None:
        self._buffers.pop(ptr)

    def host_empty(self, nbytes: int) -> tuple[np.ndarray, Any]:
        array = np.zeros(max(nbytes, 1), np.uint8)
        return array, array

    def host_free(self, handle: Any) -> None:
        """numpy frees it with its last reference."""

    def stream_create(self) -> Any:
        return None

    def stream_handle(self, stream: Any) -> int:
        return 0

    def stream_destroy(self, stream: Any) -> None:
        """No stream to destroy on the host."""

    def htod_async(self, dst: int, host: np.ndarray, nbytes: int, stream: Any) -> None:
        ctypes.memmove(dst, host.ctypes.data, nbytes)

    def dtoh_async(self, host: np.ndarray, src: int, nbytes: int, stream: Any) -> None:
        ctypes.memmove(host.ctypes.data, src, nbytes)

    def dtod_async(self, dst: int, src: int, nbytes: int, stream: Any) -> None:
        ctypes.memmove(dst, src, nbytes)

    def synchronize(self, stream: Any) -> None:
        """Host copies are done when they return."""


@dataclass
class CallStats:
    """Bus traffic and launches of the last call: what the latency budget counts."""

    htod_copies: int = 0
    htod_bytes: int = 0
    dtoh_copies: int = 0
    dtoh_bytes: int = 0
    launches: int = 0
    syncs: int = 0
    dtod_copies: int = 0
    calls: int = 0  # calls the faces were split into (more faces than the profiles' max)

    def add(self, other: CallStats) -> None:
        for name in vars(self):
            setattr(self, name, getattr(self, name) + getattr(other, name))


class OrtExecutor:
    """Runs plan engines as ONNX Runtime sessions over their ONNX (the file TensorRT parses), bound by address."""

    def __init__(self, folder: EngineFolder) -> None:
        import onnxruntime as ort

        self._ort = ort
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.sessions = {e.name: ort.InferenceSession(str(e.onnx), options, providers=["CPUExecutionProvider"])
                         for e in folder.engines if e.kind != "detector"}

    def launch(self, launch: Launch, address: Mapping[str, int], stream: Any) -> None:
        session = self.sessions[launch.engine]
        binding = session.io_binding()
        for name, slot in launch.inputs.items():
            binding.bind_input(name, "cpu", 0, np.dtype(slot.dtype), list(slot.shape), slot_address(address, slot))
        for name, slot in launch.outputs.items():
            binding.bind_output(name, "cpu", 0, np.dtype(slot.dtype), list(slot.shape), slot_address(address, slot))
        session.run_with_iobinding(binding)

    def close(self) -> None:
        self.sessions.clear()


class TrtExecutor:
    """Runs plan engines with TensorRT: one execution context per engine, all on the runner's stream."""

    def __init__(self, folder: EngineFolder, memory: Any) -> None:
        from .engine_backend import TrtBackend

        self.memory = memory
        self.backends = {e.name: TrtBackend(folder.engine_path(e), memory=memory)
                         for e in folder.engines if e.kind != "detector"}
        try:
            for backend in self.backends.values():
                backend.load()
        except BaseException:  # an engine that does not load: release those that did (streams, contexts)
            self.close()
            raise

    @staticmethod
    def _bind(context: Any, engine: str, name: str, address: int) -> None:
        """``set_tensor_address``, checked: a refused address would leave the old one bound (a silent wrong answer)."""
        if context.set_tensor_address(name, address) is False:
            raise BackendError(f"{engine}: TensorRT refused address {address:#x} for {name} (TensorRT needs "
                               "256-byte aligned device addresses)")

    def launch(self, launch: Launch, address: Mapping[str, int], stream: Any) -> None:
        backend = self.backends[launch.engine]
        context = backend.context
        for name, slot in launch.inputs.items():
            if context.set_input_shape(name, slot.shape) is False:
                raise BackendError(f"{launch.engine}: TensorRT refused shape {slot.shape} for input {name}")
            self._bind(context, launch.engine, name, slot_address(address, slot))
        for name, slot in launch.outputs.items():
            got = tuple(int(d) for d in context.get_tensor_shape(name))
            if got != slot.shape:
                raise BackendError(f"{launch.engine}: output {name} has shape {got}, the layout expects {slot.shape}")
            self._bind(context, launch.engine, name, slot_address(address, slot))
        if not context.execute_async_v3(self.memory.stream_handle(stream)):
            raise BackendError(f"TensorRT failed to run {launch.engine} with inputs "
                               f"{ {n: s.shape for n, s in launch.inputs.items()} }")

    def close(self) -> None:
        for backend in self.backends.values():
            backend.close()
        self.backends.clear()


class ResidentRunner:
    """``embed({r: (N, r, r, 3) uint8 BGR})`` -> ``{r: (N, D) float32}``, the interface of PackageRunner.embed.

    ``takes_uint8`` tells the Recognizer to hand over the aligned crops as they are.
    """

    takes_uint8 = True

    def __init__(self, folder: EngineFolder, executor: Any, memory: Any) -> None:
        self.layouts = LayoutPlanner(folder)
        self.executor, self.memory = executor, memory
        self.stream, self.address = None, {}
        self._staging_handle = self._result_handle = None
        try:
            self.stream = memory.stream_create()
            for name, nbytes in self.layouts.capacity.items():
                self.address[name] = memory.malloc(nbytes)
            self.staging, self._staging_handle = memory.host_empty(self.layouts.capacity[CROPS])
            self.result, self._result_handle = memory.host_empty(self.layouts.capacity[EMBEDDING])
        except BaseException:  # out of device memory halfway: free what was taken
            self._release()
            raise
        self.stats = CallStats()  # the last call's traffic
        self.total = CallStats()  # every call's, for reports
        self._runs = {**{f"branch_{r}": 0 for r in self.layouts.resolutions[1:]}, "trunk": 0}
        self.branch_s = self.trunk_s = 0.0  # the Recognizer's stage clocks: launches are asynchronous here
        self.trunk = executor  # what reports name as the backend

    @property
    def runs(self) -> dict[str, int]:
        """Engine launches so far per branch, and trunk runs (calls with faces): what serve's stats report."""
        return dict(self._runs)

    def layout(self, counts: Mapping[int, int]) -> FrameLayout:
        return self.layouts.layout(counts)

    def embed(self, groups: Mapping[int, np.ndarray]) -> dict[int, np.ndarray]:
        counts = {}
        for r, crops in groups.items():
            if r not in self.layouts.resolutions:
                raise ConfigError(f"the engines have no {r} px entry; they have {self.layouts.resolutions}")
            if crops.dtype != np.uint8 or crops.shape[1:] != (r, r, 3):
                raise BackendError(f"device-resident engines take ({r}, {r}, 3) uint8 BGR crops, found "
                                   f"{crops.shape[1:]} {crops.dtype}")
            counts[r] = len(crops)
        if self.layouts.fits(counts):
            out, self.stats = self._embed_once(groups, counts)
            self.total.add(self.stats)
            return out
        # More faces than the engines' profiles hold: calls of at most the profile max each, in order.
        total, parts = CallStats(), []
        for chunk in self.layouts.chunks(counts):
            part = {r: groups[r][chunk[r]] for r in groups}
            got, stats = self._embed_once(part, {r: len(v) for r, v in part.items()})
            parts.append(got)
            total.add(stats)
        self.stats = total
        self.total.add(total)
        size = self.layouts.embedding_size
        return {r: np.concatenate([p[r] for p in parts]) if parts else np.zeros((0, size), np.float32)
                for r in groups}

    def _embed_once(self, groups: Mapping[int, np.ndarray],
                    counts: Mapping[int, int]) -> tuple[dict[int, np.ndarray], CallStats]:
        frame = self.layouts.layout(counts)
        stats = CallStats(calls=1)
        for r, slot in frame.uploads.items():
            if slot.nbytes:
                self.staging[slot.offset:slot.offset + slot.nbytes] = np.ascontiguousarray(groups[r]).reshape(-1)
        size = frame.download.nbytes
        if size:
            self.memory.htod_async(self.address[CROPS], self.staging, frame.upload_bytes, self.stream)
            stats.htod_copies, stats.htod_bytes = 1, frame.upload_bytes
            for step in frame.launches:
                if isinstance(step, Copy):
                    self.memory.dtod_async(slot_address(self.address, step.target),
                                           slot_address(self.address, step.source), step.source.nbytes, self.stream)
                    stats.dtod_copies += 1
                else:
                    self.executor.launch(step, self.address, self.stream)
                    stats.launches += 1
                    if step.engine.startswith("branch_"):
                        self._runs[step.engine] += 1
            self._runs["trunk"] += 1
            self.memory.dtoh_async(self.result, self.address[EMBEDDING] + frame.download.offset, size, self.stream)
            stats.dtoh_copies, stats.dtoh_bytes = 1, size
            self.memory.synchronize(self.stream)
            stats.syncs = 1
        embeddings = self.result[:size].view(np.float32).reshape(frame.download.shape).copy()
        out, start = {}, 0
        for r in self.layouts.resolutions:
            out[r] = embeddings[start:start + frame.counts[r]]
            start += frame.counts[r]
        return {r: out[r] for r in groups}, stats

    def load(self) -> ResidentRunner:
        return self

    def _release(self) -> None:
        """Free the buffers and the stream (whatever of them exists)."""
        if self.stream is not None:
            self.memory.synchronize(self.stream)
        for ptr in self.address.values():
            self.memory.free(ptr)
        self.address = {}
        for handle in (self._staging_handle, self._result_handle):
            if handle is not None:
                self.memory.host_free(handle)
        self._staging_handle = self._result_handle = None
        if self.stream is not None:
            self.memory.stream_destroy(self.stream)
            self.stream = None

    def close(self) -> None:
        self._release()
        self.executor.close()


def open_resident(engines: str | Path | EngineFolder, on: str = "tensorrt", memory: Any = None) -> ResidentRunner:
    """A runner over a built engine folder: ``on="tensorrt"`` (GPU) or ``"onnxruntime"`` (the CPU proof)."""
    folder = engines if isinstance(engines, EngineFolder) else read_engine_folder(engines)
    if on == "onnxruntime":
        return ResidentRunner(folder, OrtExecutor(folder), memory or HostMemory())
    if on != "tensorrt":
        raise ConfigError(f"open_resident runs on 'tensorrt' or 'onnxruntime', not {on!r}")
    from .device_memory import cuda_memory

    memory = memory or cuda_memory()
    executor = TrtExecutor(folder, memory)
    try:
        return ResidentRunner(folder, executor, memory)
    except BaseException:  # the engines loaded but the buffers did not: unload them
        executor.close()
        raise
