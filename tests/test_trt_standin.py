"""The TensorRT stand-in refuses what TensorRT refuses (NvInferRuntime.h) and computes what the ONNX computes.

A stand-in that accepted more than TensorRT would hide the defects it exists to find, so each
rule of DESIGN.md ("What a TensorRT stand-in must enforce") has a test here.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("onnx", reason="planning writes ONNX graphs: needs onnx")


@pytest.fixture
def branch(trt_standin, standin_engines):
    """The stand-in engine of branch_28 deserialized, with a context and the folder's entry."""
    from btnet_edge.trt_runtime.engine_folder import read_engine_folder

    entry = read_engine_folder(standin_engines).entry("branch_28")
    runtime = trt_standin.Runtime(trt_standin.Logger())
    engine = runtime.deserialize_cuda_engine((standin_engines / entry.engine).read_bytes())
    assert engine is not None
    return trt_standin, engine, engine.create_execution_context(), entry, runtime


def test_engine_carries_the_plan_profiles_and_parsed_io(branch, standin_engines):
    trt, engine, _, entry, _ = branch
    name = entry.inputs[0]
    assert engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
    assert engine.get_tensor_dtype(name) == trt.DataType.UINT8  # uint8 BGR crops, as the plan says
    assert engine.get_tensor_dtype(entry.outputs[0]) == trt.DataType.FLOAT
    assert engine.get_tensor_shape(name) == (-1, 28, 28, 3)
    low, opt, high = engine.get_tensor_profile_shape(name, 0)
    assert (low, opt, high) == tuple(tuple(v) for v in (entry.profile(name).min, entry.profile(name).opt,
                                                         entry.profile(name).max))
    manifest = json.loads((standin_engines / "engines.json").read_text())
    assert manifest["built_on"]["gpu_name"].startswith("TensorRT stand-in")


def test_deserialize_refuses_other_files_versions_and_gpus(branch, standin_engines):
    trt, _, _, entry, runtime = branch
    data = (standin_engines / entry.engine).read_bytes()
    header, onnx = trt.read_engine(data)
    assert runtime.deserialize_cuda_engine(b"not an engine") is None
    assert runtime.deserialize_cuda_engine(trt.write_engine({**header, "tensorrt_version": "10.4.0"}, onnx)) is None
    assert runtime.deserialize_cuda_engine(trt.write_engine({**header, "device": "NVIDIA H200"}, onnx)) is None
    wrong_type = [dict(t, dtype="FLOAT") if t["mode"] == "input" else t for t in header["io"]]
    assert runtime.deserialize_cuda_engine(trt.write_engine({**header, "io": wrong_type}, onnx)) is None
    assert any("incompatible device" in e for e in runtime.logger.errors)


def test_set_input_shape_holds_to_the_profile_and_static_dims(branch):
    _, _, context, entry, _ = branch
    name, high = entry.inputs[0], entry.profile(entry.inputs[0]).max[0]
    assert context.set_input_shape(name, (high, 28, 28, 3)) is True
    assert context.set_input_shape(name, (high + 1, 28, 28, 3)) is False  # above the profile's max
    assert context.set_input_shape(name, (0, 28, 28, 3)) is False  # the branch profile's min is 1
    assert context.set_input_shape(name, (2, 28, 28, 4)) is False  # a static dim of the network
    assert context.set_input_shape(entry.outputs[0], (2, 16, 28, 28)) is False  # not an input
    assert context.get_tensor_shape(name) == (high, 28, 28, 3)  # a refused shape leaves the last good one


def test_addresses_must_be_aligned_known_and_inside_device_memory(branch):
    _, _, context, entry, _ = branch
    from btnet_edge.testing.trt_standin.device import MEMORY

    name, out = entry.inputs[0], entry.outputs[0]
    stream = MEMORY.stream_create()
    crops, features = MEMORY.malloc(2 * 28 * 28 * 3), MEMORY.malloc(2 * 16 * 28 * 28 * 4)
    try:
        assert context.set_input_shape(name, (2, 28, 28, 3))
        assert context.set_tensor_address(name, crops + 4) is False  # not 256-byte aligned
        assert context.set_tensor_address("no_such_tensor", crops) is False
        assert context.set_tensor_address(name, crops) is True
        assert context.execute_async_v3(int(stream)) is False  # the output has no address
        host = np.zeros(2 * 16 * 28 * 28 * 4 + 256, np.uint8)
        assert context.set_tensor_address(out, host.ctypes.data + (-host.ctypes.data % 256)) is True
        assert context.execute_async_v3(int(stream)) is False  # host memory is not device memory
        assert context.set_tensor_address(out, features) is True
        assert context.execute_async_v3(12345) is False  # not a stream
        assert context.set_input_shape(name, (3, 28, 28, 3))
        assert context.execute_async_v3(int(stream)) is False  # 3 faces overflow the 2-face buffers
        assert context.set_input_shape(name, (2, 28, 28, 3))
        assert context.execute_async_v3(int(stream)) is True
    finally:
        MEMORY.free(crops)
        MEMORY.free(features)
        MEMORY.stream_destroy(stream)
    with pytest.raises(Exception, match="cudaFree"):
        MEMORY.free(crops)  # freed twice


def test_it_computes_what_the_onnx_computes(branch):
    import onnxruntime as ort

    _, _, context, entry, _ = branch
    from btnet_edge.testing.trt_standin.device import MEMORY

    crops = np.random.default_rng(0).integers(0, 256, (5, 28, 28, 3), dtype=np.uint8)
    want = ort.InferenceSession(str(entry.onnx), providers=["CPUExecutionProvider"]).run(
        None, {entry.inputs[0]: crops})[0]
    stream = MEMORY.stream_create()
    src, dst = MEMORY.malloc(crops.nbytes), MEMORY.malloc(want.nbytes)
    host = np.zeros(want.nbytes, np.uint8)
    try:
        MEMORY.htod_async(src, crops.reshape(-1).view(np.uint8), crops.nbytes, stream)
        assert context.set_input_shape(entry.inputs[0], crops.shape)
        assert context.get_tensor_shape(entry.outputs[0]) == want.shape  # shape inference before the launch
        assert context.set_tensor_address(entry.inputs[0], src) and context.set_tensor_address(entry.outputs[0], dst)
        assert context.execute_async_v3(int(stream))
        MEMORY.dtoh_async(host, dst, want.nbytes, stream)
        MEMORY.synchronize(stream)
    finally:
        MEMORY.free(src)
        MEMORY.free(dst)
        MEMORY.stream_destroy(stream)
    assert np.array_equal(host.view(np.float32).reshape(want.shape), want)


def test_a_build_tensorrt_for_rtx_refuses_is_refused(trt_standin, standin_engines):
    """The builder is real: a profile the parsed network cannot take fails the build."""
    from btnet_edge.errors import BackendError
    from btnet_edge.trt_build.builder import build_engine
    from btnet_edge.trt_runtime.engine_folder import read_engine_folder

    entry = dict(read_engine_folder(standin_engines).entry("branch_28").raw)
    name = entry["inputs"][0]
    entry["profiles"] = [{name: {"min": [1, 28, 28, 3], "opt": [2, 28, 28, 3], "max": [4, 30, 28, 3]}}]
    with pytest.raises(BackendError, match="failed to build"):
        build_engine(entry, trt=trt_standin)
