"""TensorRT backend: one engine, one execution context, one CUDA stream.

The engine's cache key (sidecar JSON) is checked against the running GPU and
TensorRT before deserializing: on a mismatch loading fails naming both sides and the
build command (``btnet-edge build`` and the CLI's engine paths rebuild stale engines
first: :func:`btnet_edge.trt_build.builder.refresh_stale_engines`). Device and pinned host buffers
are allocated once per tensor and grown on demand; inputs are copied, the engine
run (``set_input_shape``/``set_tensor_address``/``execute_async_v3``) and
outputs copied back on the one stream. A call whose inputs are all empty returns
empty outputs without a launch; an engine built with min-0 profiles (the merged
trunk) runs with some inputs empty. Engines of TensorRT for RTX (key setting
``runtime``) load through ``tensorrt_rtx``. For whole frames on the device see
:mod:`btnet_edge.trt_runtime.resident`, which binds these engines without host copies.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..backends.base import Backend, TensorSpec
from ..errors import BackendError
from . import compat
from .cache_key import load_sidecar, require_match, runtime_env

log = logging.getLogger(__name__)


def empty_outputs(specs: Mapping[str, tuple[bool, np.dtype, tuple[int, ...]]]) -> dict[str, np.ndarray]:
    """Zero-row outputs for a call with no faces; a dynamic non-batch dim (-1, e.g. anchors) becomes 0."""
    return {name: np.zeros((0, *(max(int(d), 0) for d in shape[1:])), dtype)
            for name, (is_input, dtype, shape) in specs.items() if not is_input}


class _Buffer:
    """A device buffer and its pinned host mirror, grown to the largest size asked for."""

    def __init__(self, memory: Any) -> None:
        self.memory, self.nbytes, self.device, self._host_handle = memory, 0, 0, None
        self.host: Any = None  # the pinned host mirror (a uint8 array) once ensure() ran

    def ensure(self, nbytes: int) -> None:
        if nbytes <= self.nbytes:
            return
        size = max(nbytes, 2 * self.nbytes, 256)  # doubling: few reallocations as batches grow
        self.release()
        self.device = self.memory.malloc(size)
        self.host, self._host_handle = self.memory.host_empty(size)
        self.nbytes = size

    def release(self) -> None:
        if self.nbytes:
            self.memory.free(self.device)
            self.memory.host_free(self._host_handle)
            self.nbytes, self.device, self.host, self._host_handle = 0, 0, None, None


class TrtBackend(Backend):
    """A serialized TensorRT engine (``*.engine`` with its ``*.engine.key.json`` sidecar)."""

    name = "tensorrt"

    def __init__(self, engine_path: str | Path, memory: Any = None) -> None:
        """``memory``: the device memory to use (default: :func:`~.device_memory.cuda_memory`)."""
        super().__init__(engine_path)
        self._memory = memory
        # the TensorRT engine and context, and the CUDA stream, once loaded (tensorrt has no type stubs)
        self._engine: Any = None
        self._context: Any = None
        self._stream: Any = None
        self._specs: dict[str, tuple[bool, np.dtype, tuple[int, ...]]] = {}  # name -> (is_input, dtype, shape)
        self._buffers: dict[str, _Buffer] = {}
        self._profiles: dict[str, tuple[tuple[int, ...], ...]] = {}  # input -> (min, opt, max) shapes
        self.copies = {"htod": 0, "dtoh": 0, "syncs": 0}  # bus traffic so far (reports, tests)

    def _verify(self, trt: Any) -> dict[str, Any]:
        """Compare the saved key with this machine; raise naming both sides on a mismatch. Returns the build
        settings."""
        sidecar = load_sidecar(self.model_path)
        if sidecar is None:
            log.warning("%s has no readable cache key beside it; loading it unverified", self.model_path.name)
            return {}
        found, _ = sidecar
        env = runtime_env(trt, self._memory)
        expected = replace(found, trt_version=env.trt_version, gpu_name=env.gpu_name, sm_count=env.sm_count,
                           compute_capability=env.compute_capability, l4t_release=env.l4t_release)
        require_match(self.model_path, expected, found)
        return dict(found.settings)

    def _runtime_module(self) -> Any:
        """``tensorrt``, or ``tensorrt_rtx`` for an engine whose key says TensorRT for RTX built it."""
        sidecar = load_sidecar(self.model_path) if self.model_path.is_file() else None
        return compat.trt_module(dict(sidecar[0].settings).get("runtime", "tensorrt") if sidecar else "tensorrt")

    def _load(self) -> None:
        from .device_memory import cuda_memory

        trt = self._runtime_module()
        if not self.model_path.is_file():
            raise BackendError(f"engine {self.model_path} does not exist; build it: btnet-edge build PKG --target T")
        self._memory = self._memory or cuda_memory()
        self._memory.device_properties(0)  # no GPU or a refused driver: say so, not "cannot deserialize"
        settings = self._verify(trt)
        runtime = trt.Runtime(compat.trt_logger(trt))
        if settings.get("version_compatible"):
            compat.allow_host_code(runtime)
        self._engine = runtime.deserialize_cuda_engine(self.model_path.read_bytes())
        if self._engine is None:
            raise BackendError(f"TensorRT {trt.__version__} cannot deserialize {self.model_path} (built by another "
                               "TensorRT or for another GPU?); rebuild it with btnet-edge build")
        self._context = self._engine.create_execution_context()
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            is_input = self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            dtype = compat.numpy_dtype(trt, self._engine.get_tensor_dtype(name))
            self._specs[name] = (is_input, dtype, tuple(int(d) for d in self._engine.get_tensor_shape(name)))
            self._buffers[name] = _Buffer(self._memory)
        self._profiles = {name: compat.profile_shapes(self._engine, name) for name, s in self._specs.items() if s[0]}
        self._stream = self._memory.stream_create()

    @property
    def context(self) -> Any:
        """The execution context, for callers that bind device addresses themselves (engines/resident.py)."""
        self.load()
        return self._context

    def _spec_list(self, inputs: bool) -> list[TensorSpec]:
        self.load()
        return [TensorSpec(n, str(dt), s) for n, (is_in, dt, s) in self._specs.items() if is_in == inputs]

    @property
    def inputs(self) -> list[TensorSpec]:
        return self._spec_list(True)

    @property
    def outputs(self) -> list[TensorSpec]:
        return self._spec_list(False)

    def input_profile(self, name: str) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(min, opt, max) shapes of input ``name``: what callers split or pad their inputs to."""
        self.load()
        low, opt, high = self._profiles[name]
        return low, opt, high

    def _check_batch(self, name: str, shape: tuple[int, ...]) -> None:
        low, _, high = self._profiles[name]
        if not all(lo <= d <= hi for d, lo, hi in zip(shape, low, high)):
            raise BackendError(f"{self.model_path.name}: input {name} of shape {shape} is outside the engine's "
                               f"profile {low}..{high}; split the batch or rebuild with a larger max in the target")

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        batches = {name: int(np.shape(value)[0]) for name, value in feeds.items()}
        if not any(batches.values()):
            return empty_outputs(self._specs)  # nothing to run: no launch
        limits = {name: self._profiles[name][2][0] for name in feeds if name in self._profiles}
        if all(batches[n] <= limits.get(n, batches[n]) for n in feeds):
            return self._infer_once(feeds)
        return self._infer_split(feeds, batches, limits)

    def _infer_split(self, feeds: Mapping[str, np.ndarray], batches: Mapping[str, int],
                     limits: Mapping[str, int]) -> dict[str, np.ndarray]:
        """More rows than the profile's max: calls of at most the max rows of each input, outputs rejoined.

        One input: outputs concatenate along the batch. Several (the merged trunk): each output
        row block follows the inputs in order (trunk.onnx concatenates its entry points), so a
        call's output is cut back into per-input blocks and the blocks rejoined per input.
        """
        names = list(feeds)
        calls = max(-(-batches[n] // limits[n]) for n in names)
        pieces: dict[str, list[list[np.ndarray]]] = {}
        for k in range(calls):
            part = {n: np.asarray(feeds[n])[k * limits[n]:(k + 1) * limits[n]] for n in names}
            rows = [len(part[n]) for n in names]
            if not any(rows):
                continue
            for name, value in self._infer_once(part).items():
                if len(names) == 1:
                    pieces.setdefault(name, [[]])[0].append(value)
                    continue
                if len(value) != sum(rows):
                    raise BackendError(f"{self.model_path.name}: output {name} has {len(value)} rows for {sum(rows)} "
                                       "input rows; a batch this large cannot be split for this engine")
                blocks = pieces.setdefault(name, [[] for _ in names])
                offsets = np.cumsum([0, *rows])
                for i in range(len(names)):
                    blocks[i].append(value[offsets[i]:offsets[i + 1]])
        return {name: np.concatenate([v for block in blocks for v in block]) for name, blocks in pieces.items()}

    def _bind(self, name: str, address: int) -> None:
        """``set_tensor_address``, checked: a refused address would leave the old one bound (a silent wrong answer)."""
        if self._context.set_tensor_address(name, address) is False:
            raise BackendError(f"{self.model_path.name}: TensorRT refused address {address:#x} for {name} "
                               "(TensorRT needs 256-byte aligned device addresses)")

    def _infer_once(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        memory, stream, context = self._memory, self._stream, self._context
        for name, value in feeds.items():
            wanted = self._specs[name][1]
            if wanted == np.uint8 and np.asarray(value).dtype != np.uint8:
                raise BackendError(f"{self.model_path.name}: input {name} takes uint8 BGR crops (N, H, W, 3), found "
                                   f"{np.asarray(value).dtype}; pass the aligned crops, not normalised tensors")
            array = np.ascontiguousarray(value, dtype=wanted)
            self._check_batch(name, array.shape)
            if context.set_input_shape(name, array.shape) is False:
                raise BackendError(f"{self.model_path.name}: TensorRT refused shape {array.shape} for input {name}")
            buffer = self._buffers[name]
            buffer.ensure(max(array.nbytes, 1))  # an empty input (min-0 profile) still needs a valid address
            buffer.host[:array.nbytes] = array.view(np.uint8).reshape(-1)
            memory.htod_async(buffer.device, buffer.host, array.nbytes, stream)
            self.copies["htod"] += 1
            self._bind(name, buffer.device)
        shapes = {}
        for name, (is_input, dtype, _) in self._specs.items():
            if is_input:
                continue
            shapes[name] = tuple(int(d) for d in context.get_tensor_shape(name))
            self._buffers[name].ensure(max(int(np.prod(shapes[name])) * dtype.itemsize, 1))
            self._bind(name, self._buffers[name].device)
        if not context.execute_async_v3(memory.stream_handle(stream)):
            raise BackendError(f"TensorRT failed to run {self.model_path.name} with inputs "
                               f"{ {n: np.shape(v) for n, v in feeds.items()} }")
        results = {}
        for name, shape in shapes.items():
            dtype = self._specs[name][1]
            nbytes = int(np.prod(shape)) * dtype.itemsize
            memory.dtoh_async(self._buffers[name].host, self._buffers[name].device, nbytes, stream)
            self.copies["dtoh"] += 1
            results[name] = (shape, dtype, nbytes)
        memory.synchronize(stream)
        self.copies["syncs"] += 1
        return {name: self._buffers[name].host[:nbytes].view(dtype).reshape(shape).copy()
                for name, (shape, dtype, nbytes) in results.items()}

    def _close(self) -> None:
        if self._stream is not None:
            self._memory.synchronize(self._stream)
            self._memory.stream_destroy(self._stream)
        for buffer in self._buffers.values():
            buffer.release()
        self._buffers.clear()
        self._specs.clear()
        self._context = self._engine = self._stream = None
