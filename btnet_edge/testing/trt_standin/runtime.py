"""The stand-in's runtime: Runtime, ICudaEngine and IExecutionContext with NvInferRuntime.h's refusals."""

from __future__ import annotations

import ctypes
from collections.abc import Sequence

import numpy as np

from . import (
    _LIVE,
    DEVICE_NAME,
    FORMAT,
    LAUNCHES,
    MAGIC,
    DataType,
    Logger,
    TensorIOMode,
    __version__,
    nptype,
    read_engine,
)
from .device import ALIGNMENT, COMPUTE_CAPABILITY, DEVICE

_ONNX_TYPES = {"tensor(float)": "FLOAT", "tensor(float16)": "HALF", "tensor(uint8)": "UINT8", "tensor(int8)": "INT8",
               "tensor(int32)": "INT32", "tensor(int64)": "INT64", "tensor(bool)": "BOOL"}


class Runtime:
    """``deserialize_cuda_engine`` returns None, with an error logged, for what TensorRT would not load."""

    def __init__(self, logger: Logger) -> None:
        if not isinstance(logger, Logger):
            raise TypeError("Runtime() takes a tensorrt.Logger (of this module)")
        self.logger = logger
        self.engine_host_code_allowed = False

    def deserialize_cuda_engine(self, data: bytes) -> ICudaEngine | None:
        parsed = read_engine(bytes(data))
        if parsed is None:
            self.logger.log(Logger.ERROR, "Serialization assertion failed: magic tag does not match (not an engine "
                                          "of this TensorRT)")
            return None
        header, onnx = parsed
        if header.get("format") != FORMAT or header.get("tensorrt_version") != __version__:
            self.logger.log(Logger.ERROR, f"The engine plan file is not compatible with this version of TensorRT, "
                                          f"expecting library version {__version__} got "
                                          f"{header.get('tensorrt_version')}, please rebuild.")
            return None
        if header.get("device") != DEVICE_NAME or header.get("compute_capability") != COMPUTE_CAPABILITY:
            self.logger.log(Logger.ERROR, f"The engine plan file is generated on an incompatible device "
                                          f"({header.get('device')}, {header.get('compute_capability')}); "
                                          f"this is {DEVICE_NAME} {COMPUTE_CAPABILITY}, please rebuild.")
            return None
        try:
            return ICudaEngine(header, onnx, self.logger)
        except ValueError as exc:
            self.logger.log(Logger.ERROR, f"corrupt engine: {exc}")
            return None


class ICudaEngine:
    """I/O tensors, types and profile shapes of one engine, and its ONNX Runtime session."""

    def __init__(self, header: dict, onnx: bytes, logger: Logger) -> None:
        import onnxruntime as ort

        self.header, self.logger = header, logger
        self.io = {t["name"]: t for t in header["io"]}
        self.names = [t["name"] for t in header["io"]]
        self.profiles = header["profiles"]
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = 2
        try:
            self.session = ort.InferenceSession(onnx, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ValueError(f"the ONNX inside does not load ({exc})") from None
        graph = {a.name: ("input", a.type) for a in self.session.get_inputs()}
        graph.update({a.name: ("output", a.type) for a in self.session.get_outputs()})
        for name, tensor in self.io.items():
            if graph.get(name, (None, None))[0] != tensor["mode"] or _ONNX_TYPES.get(graph[name][1]) != tensor["dtype"]:
                raise ValueError(f"tensor {name} is {graph.get(name)} in the ONNX, {tensor} in the header")
        self.name = str(header.get("onnx_file", ""))  # launch counts are kept per ONNX file
        self._shape_cache: dict[tuple, dict[str, tuple[int, ...]]] = {}
        _LIVE["engines"] += 1

    def __del__(self) -> None:
        _LIVE["engines"] -= 1

    @property
    def num_io_tensors(self) -> int:
        return len(self.names)

    @property
    def num_optimization_profiles(self) -> int:
        return len(self.profiles)

    def get_tensor_name(self, index: int) -> str:
        if not 0 <= index < len(self.names):
            raise IndexError(f"I/O tensor index {index} out of range (engine has {len(self.names)})")
        return self.names[index]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        tensor = self.io.get(name)
        return TensorIOMode.NONE if tensor is None else TensorIOMode.INPUT if tensor["mode"] == "input" \
            else TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name: str) -> DataType:
        return DataType[self.io[name]["dtype"]]

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.io[name]["shape"]) if name in self.io else ()

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[tuple[int, ...]]:
        if self.get_tensor_mode(name) != TensorIOMode.INPUT or not 0 <= profile_index < len(self.profiles):
            self.logger.log(Logger.ERROR, f"getProfileShape: {name} is not an input of profile {profile_index}")
            return []
        spec = self.profiles[profile_index][name]
        return [tuple(spec["min"]), tuple(spec["opt"]), tuple(spec["max"])]

    def create_execution_context(self) -> IExecutionContext:
        return IExecutionContext(self)

    def output_shapes(self, inputs: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
        """Output shapes for input shapes (TensorRT infers them at set_input_shape): one run on zeros, cached."""
        key = tuple(sorted(inputs.items()))
        if key not in self._shape_cache:
            feeds: dict[str, np.ndarray] = {n: np.zeros(s, nptype(self.get_tensor_dtype(n))) for n, s in inputs.items()}
            outs = self.session.run(None, feeds)
            self._shape_cache[key] = {a.name: tuple(o.shape) for a, o in zip(self.session.get_outputs(), outs)}
        return self._shape_cache[key]


class IExecutionContext:
    """Shapes and addresses bound per tensor; ``execute_async_v3`` checks them all, then computes."""

    def __init__(self, engine: ICudaEngine) -> None:
        self.engine = engine
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}
        _LIVE["contexts"] += 1

    def __del__(self) -> None:
        _LIVE["contexts"] -= 1

    def _error(self, message: str) -> bool:
        self.engine.logger.log(Logger.ERROR, message)
        return False

    def set_input_shape(self, name: str, shape: Sequence[int]) -> bool:
        engine = self.engine
        if engine.get_tensor_mode(name) != TensorIOMode.INPUT:
            return self._error(f"setInputShape: {name!r} is not an input tensor")
        shape = tuple(int(d) for d in shape)
        declared = engine.get_tensor_shape(name)
        if len(shape) != len(declared) or any(d != s for d, s in zip(declared, shape) if d != -1):
            return self._error(f"setInputShape: {name} {shape} does not match the network's dims {declared}")
        spec = engine.profiles[0][name]
        if not all(lo <= d <= hi for d, lo, hi in zip(shape, spec["min"], spec["max"])):
            return self._error(f"setInputShape: {name} {shape} is outside the optimization profile "
                               f"{tuple(spec['min'])}..{tuple(spec['max'])}")
        self.shapes[name] = shape
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        engine = self.engine
        mode = engine.get_tensor_mode(name)
        if mode == TensorIOMode.INPUT:
            return self.shapes.get(name, engine.get_tensor_shape(name))
        inputs = [n for n in engine.names if engine.get_tensor_mode(n) == TensorIOMode.INPUT]
        if mode == TensorIOMode.NONE or any(n not in self.shapes for n in inputs):
            return engine.get_tensor_shape(name)  # -1 where not yet known, as TensorRT reports it
        return engine.output_shapes({n: self.shapes[n] for n in inputs})[name]

    def set_tensor_address(self, name: str, memory: int) -> bool:
        if self.engine.get_tensor_mode(name) == TensorIOMode.NONE:
            return self._error(f"setTensorAddress: {name!r} is not an I/O tensor of this engine")
        if int(memory) % ALIGNMENT:
            return self._error(f"setTensorAddress: the address {int(memory):#x} of {name} is not "
                               f"{ALIGNMENT}-byte aligned")
        self.addresses[name] = int(memory)
        return True

    def get_tensor_address(self, name: str) -> int:
        return self.addresses.get(name, 0)

    def execute_async_v3(self, stream_handle: int) -> bool:
        engine = self.engine
        if int(stream_handle) not in DEVICE.streams:
            return self._error(f"enqueueV3: stream {int(stream_handle):#x} is not a live CUDA stream")
        shapes = {}
        for name in engine.names:
            shape = self.get_tensor_shape(name)
            if any(d < 0 for d in shape):
                return self._error(f"enqueueV3: the shape of {name} is not specified (call set_input_shape)")
            address = self.addresses.get(name, 0)
            if not address:
                return self._error(f"enqueueV3: {name} has no address (call set_tensor_address)")
            nbytes = int(np.prod(shape)) * np.dtype(nptype(engine.get_tensor_dtype(name))).itemsize
            if nbytes and not DEVICE.holds(address, nbytes):
                return self._error(f"enqueueV3: {nbytes} bytes of {name} at {address:#x} are not inside device "
                                   "memory (illegal memory access)")
            shapes[name] = (shape, nbytes)
        feeds: dict[str, np.ndarray] = {}
        for name, (shape, nbytes) in shapes.items():
            if engine.get_tensor_mode(name) == TensorIOMode.INPUT:
                dtype = np.dtype(nptype(engine.get_tensor_dtype(name)))
                raw = np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(self.addresses[name])) \
                    if nbytes else np.zeros(0, np.uint8)
                feeds[name] = raw.view(dtype).reshape(shape).copy()
        outputs = engine.session.run(None, feeds)
        for meta, value in zip(engine.session.get_outputs(), outputs):
            shape, nbytes = shapes[meta.name]
            value = np.ascontiguousarray(value, nptype(engine.get_tensor_dtype(meta.name)))
            if value.shape != shape:
                return self._error(f"enqueueV3: {meta.name} came out {value.shape}, inferred {shape}")
            if nbytes:
                ctypes.memmove(self.addresses[meta.name], value.ctypes.data, nbytes)
        LAUNCHES[engine.name] += 1
        return True


__all__ = ["MAGIC", "ICudaEngine", "IExecutionContext", "Runtime"]
