"""What runs on a GPU without TensorRT: cuda_mem for real, and PyTorch CUDA FP16 against ONNX Runtime FP32.

Marker ``gpu``. Each test skips with the reason when its piece is missing (no NVIDIA driver,
no cuda-python, no CUDA build of PyTorch); a driver that answers but refuses the installed
cuda-python fails instead (NoGpuError is the only skip). Latency is measured by the benchmark
command, not here: ``btnet-edge bench PKG --backend torch --device cuda --fp16 --json out.json``
(test_bench_command_on_cuda only checks that it runs and reports every resolution).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def memory():
    pytest.importorskip("cuda.bindings.runtime", reason="cuda-python is not installed")
    from btnet_edge.errors import NoGpuError
    from btnet_edge.trt_runtime.device_memory import CudaPythonMemory

    cuda = CudaPythonMemory()
    try:
        cuda.device_properties(0)
    except NoGpuError as exc:
        pytest.skip(f"no usable NVIDIA GPU: {exc}")
    return cuda


@pytest.fixture(scope="module")
def torch_cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip(f"PyTorch {torch.__version__} has no CUDA device here (CPU build or no GPU)")
    return torch


def test_cuda_mem_round_trip_on_one_stream(memory):
    name, capability, sm_count = memory.device_properties(0)
    assert name and float(capability) >= 5.0 and sm_count > 0
    nbytes = 3 * 1024 * 1024 + 7
    device = memory.malloc(nbytes)
    source, source_handle = memory.host_empty(nbytes)
    back, back_handle = memory.host_empty(nbytes)
    stream = memory.stream_create()
    try:
        assert memory.stream_handle(stream) == int(stream) != 0
        source[:] = np.random.default_rng(0).integers(0, 256, nbytes, dtype=np.uint8)
        back[:] = 0
        memory.htod_async(device, source, nbytes, stream)
        memory.dtoh_async(back, device, nbytes, stream)
        memory.synchronize(stream)
        assert np.array_equal(source, back)
    finally:
        memory.stream_destroy(stream)
        memory.free(device)
        memory.host_free(source_handle)
        memory.host_free(back_handle)


def test_cuda_mem_from_another_thread(memory):
    """Device memory calls work from a thread other than the one that set CUDA up (camera/server threads)."""
    import threading

    errors = []

    def work() -> None:
        try:
            ptr = memory.malloc(1024)
            memory.free(ptr)
        except Exception as exc:  # reported below with its message
            errors.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert not errors, errors


@pytest.mark.fixtures
def test_torch_cuda_fp16_matches_onnx_runtime_fp32(torch_cuda, mfn_package):
    """The real MobileFaceNet package: mean cosine >= 0.999 per resolution, FP16 on the GPU vs FP32 on the CPU."""
    from btnet_edge.backends.torch_backend import TorchBackend
    from btnet_edge.package.loader import load_package
    from btnet_edge.trt_build.check import compare, embedder, ort_reference, random_inputs

    package = load_package(mfn_package)
    manifest = package.manifest
    branches = {b.resolution: TorchBackend(package, b.file, device="cuda", fp16=True) for b in manifest.branches}
    trunk = TorchBackend(package, manifest.trunk.file, device="cuda", fp16=True)
    reference, _ = ort_reference(package)
    rows = compare(reference, embedder(manifest, branches, trunk), random_inputs(manifest, 16, seed=4), "random")
    assert {row["resolution"] for row in rows} == {112, 28, 14, 7}
    assert all(row["passed"] for row in rows), rows


def test_bench_command_on_cuda(torch_cuda, tiny_package, tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run([sys.executable, "-m", "btnet_edge", "bench", str(tiny_package), "--backend", "torch",
                             "--device", "cuda", "--fp16", "--batch", "1,16", "--repeats", "3", "--min-time-s", "0.2",
                             "--no-mixed", "--quiet", "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report and "cuda" in json.dumps(report)
