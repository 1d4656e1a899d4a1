"""cuda_mem without a GPU: the stream handle TensorRT gets, and the errors a missing or mismatched driver gives."""

from __future__ import annotations

import types

import pytest

from btnet_edge.errors import BackendError, NoGpuError
from btnet_edge.trt_runtime.device_memory import CudaPythonMemory, driver_cuda_version, driver_problem

runtime = pytest.importorskip("cuda.bindings.runtime", reason="cuda-python is not installed (dev extra)")


def test_stream_handle_is_the_handle_not_the_object_address():
    stream = runtime.cudaStream_t(init_value=0x1234)
    assert stream.getPtr() != 0x1234  # the address of the Python object's storage: what the old code passed
    assert CudaPythonMemory().stream_handle(stream) == 0x1234


def test_driver_too_old_for_the_bindings_says_which_major():
    problem = driver_problem(12020, "13.0.3")  # JetPack 6.0 (CUDA 12.2) with cuda-python 13
    assert type(problem) is BackendError  # a real failure: GPU tests must fail on it, not skip
    assert "CUDA 12.2" in str(problem) and 'cuda-python==12.*' in str(problem) and "13.0.3" in str(problem)


def test_no_driver_is_a_no_gpu_error():
    assert isinstance(driver_problem(None, "12.9.0"), NoGpuError)


@pytest.mark.skipif(driver_cuda_version() is not None, reason="this machine has an NVIDIA driver")
def test_without_driver_cuda_calls_raise_no_gpu_error():
    """Real cuda-python on a machine without libcuda: cudaErrorInsufficientDriver (35) becomes NoGpuError."""
    with pytest.raises(NoGpuError, match="no NVIDIA driver"):
        CudaPythonMemory().device_properties(0)


def test_runtime_error_of_old_bindings_is_wrapped():
    """cuda-python 12 before 12.6 raises RuntimeError (not an error code) when libcuda is missing."""
    memory = CudaPythonMemory()

    def missing(*_: object) -> None:
        raise RuntimeError("Function cuGetProcAddress not found")

    memory.rt = types.SimpleNamespace(cudaMalloc=missing, cudaError_t=runtime.cudaError_t)
    with pytest.raises(BackendError, match="cuGetProcAddress"):
        memory.malloc(16)
