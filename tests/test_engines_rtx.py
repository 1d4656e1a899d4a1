"""Real engine builds on every CI run: TensorRT for RTX builds ahead of time without a GPU.

``tensorrt-rtx-cu12`` (dev extra, PyPI) runs the real ONNX parser, optimization profiles
(min-0 merged trunk included), strongly typed FP16 graphs and builder settings of
:mod:`btnet_edge.trt_build.builder`, the same code path as TensorRT 8.6-11 on Jetson and
desktop. Running the engines needs an RTX GPU (tests/test_trt_gpu.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from btnet_edge.trt_build.targets import load_target

pytest.importorskip("onnx", reason="planning writes ONNX graphs: needs onnx")
trt = pytest.importorskip("tensorrt_rtx", reason="TensorRT for RTX is not installed (pip install tensorrt-rtx-cu12, "
                                                 "in the dev extra on x86-64 Linux and Windows)")

ENGINES = ["branch_28", "branch_14", "branch_7", "trunk", "detector_retinaface"]


def _build(package: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "btnet_edge", "build", str(package), "--target", "desktop-rtx",
                           "--out", str(out), *extra], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def rtx_build(tiny_package, tmp_path_factory):
    out = tmp_path_factory.mktemp("rtx")
    result = _build(tiny_package, out)
    return out, result


def test_cli_builds_every_engine_without_a_gpu(rtx_build):
    out, result = rtx_build
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "engines.json").read_text())
    assert [e["name"] for e in manifest["engines"]] == ENGINES
    assert manifest["tensorrt"]["module"] == "tensorrt_rtx" and manifest["trunk"]["form"] == "merged"
    for entry in manifest["engines"]:
        engine = out / entry["engine"]
        assert engine.stat().st_size > 100_000, entry["name"]  # real serialized engines, weights inside
        assert entry["key"]["onnx_sha256"] == entry["sha256"] and entry["key"]["trt_version"] == trt.__version__
        assert entry["key"]["gpu_name"].startswith("any")  # ahead of time: portable across RTX GPUs
        assert entry["precision_path"] == "strongly_typed_fp16_onnx" and ".u8." in entry["onnx"]
        assert entry["onnx"].endswith(".fp16.onnx")
    trunk = next(e for e in manifest["engines"] if e["name"] == "trunk")
    assert all(s["min"][0] == 0 for s in trunk["profiles"][0].values())  # TensorRT accepted min-0 profiles
    assert trunk["profiles"][0]["image_112"]["max"][1:] == [112, 112, 3]  # uint8 NHWC crops
    detector = next(e for e in manifest["engines"] if e["name"] == "detector_retinaface")
    assert detector["outputs"] == ["loc", "conf", "landmarks", "anchor_index"]  # top-K anchors picked in the engine
    assert not list(out.glob("*.tmp"))


def test_second_build_rebuilds_nothing(rtx_build, tiny_package):
    out, _ = rtx_build
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.engine")}
    again = _build(tiny_package, out)
    assert again.returncode == 0, again.stderr
    assert "built 0, up to date 5" in again.stdout
    assert before == {p.name: p.stat().st_mtime_ns for p in out.glob("*.engine")}


def test_segments_and_fp32_build(tiny_package, tmp_path):
    """The fallback trunk form in FP32 through build_all."""
    from btnet_edge.trt_build.builder import build_all
    from btnet_edge.trt_build.features import features_of
    from btnet_edge.trt_build.plan import plan_engines

    target = replace(load_target("desktop-rtx"), trunk_form="segments", precision="fp32")
    target = replace(target, detector=replace(target.detector, build=False))
    plan = plan_engines(tiny_package, target, features_of(trt), tmp_path)
    report = build_all(plan, tmp_path)
    names = [b["name"] for b in report["built"]]
    assert names == ["branch_28", "branch_14", "branch_7", "trunk_seg0_112", "trunk_seg1_28", "trunk_seg2_14",
                     "trunk_seg3_7"]
    assert all(b["bytes"] > 10_000 for b in report["built"])
    assert {e["precision_path"] for e in plan["engines"]} == {"fp32"}


def test_turing_builds_with_an_fp16_head(tiny_package, tmp_path):
    """RTX 20xx: TensorRT for RTX compiles no FP32 GEMM for SM 7.5 (found by building here), so the head is FP16."""
    from btnet_edge.trt_build.builder import build_all
    from btnet_edge.trt_build.features import features_of
    from btnet_edge.trt_build.plan import plan_engines

    target = replace(load_target("desktop-rtx"), compute_capabilities=("7.5",))
    target = replace(target, detector=replace(target.detector, build=False))
    plan = plan_engines(tiny_package, target, features_of(trt), tmp_path)
    trunk = next(e for e in plan["engines"] if e["name"] == "trunk")
    assert trunk["fp16"]["fp32_nodes"] == [] and trunk["settings"]["compute_capabilities"] == ["7.5"]
    assert [b["name"] for b in build_all(plan, tmp_path)["built"]] == ["branch_28", "branch_14", "branch_7", "trunk"]


@pytest.mark.fixtures
def test_real_mobilefacenet_package_builds(mfn_package, tmp_path):
    """The real MobileFaceNet network (depthwise convs, ReLU6, BN folding) through the parser and builder."""
    result = _build(mfn_package, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "built 5, up to date 0" in result.stdout
    assert (tmp_path / "trunk.engine").stat().st_size > 1_000_000  # FP16 weights of a 1 M-parameter trunk


def test_rtx_target_rejects_tensorrt_only_fields():
    from btnet_edge.errors import ConfigError
    from btnet_edge.trt_build.targets import target_from_dict

    base = {"name": "t", "workspace_mb": 64, "batch": {"default": {"min": 1, "opt": 1, "max": 2}}}
    with pytest.raises(ConfigError, match="dla_core"):
        target_from_dict({**base, "runtime": "tensorrt_rtx", "dla_core": 0})
    with pytest.raises(ConfigError, match="compute_capabilities"):
        target_from_dict({**base, "compute_capabilities": ["8.6"]})  # TensorRT proper builds for its own GPU
    with pytest.raises(ConfigError, match="compute_capabilities"):
        target_from_dict({**base, "runtime": "tensorrt_rtx", "compute_capabilities": ["9.9"]})
    with pytest.raises(ConfigError, match="Turing"):
        target_from_dict({**base, "runtime": "tensorrt_rtx", "compute_capabilities": ["7.5"], "precision": "fp32"})


def test_parsed_io_is_what_the_runtime_binds(rtx_build, tiny_package, tmp_path):
    """The builder checks the parsed network's I/O names and types against the plan before building."""
    from btnet_edge.errors import BackendError
    from btnet_edge.trt_build.builder import build_engine

    out, _ = rtx_build
    manifest = json.loads((out / "engines.json").read_text())
    trunk = next(e for e in manifest["engines"] if e["name"] == "trunk")
    io = build_engine(trunk, trt=trt).io
    assert io["image_112"] == {"mode": "input", "dtype": "uint8", "shape": [-1, 112, 112, 3]}
    assert io["implant_7"]["dtype"] == io["embedding"]["dtype"] == "float32" and io["embedding"]["mode"] == "output"
    with pytest.raises(BackendError, match="uint8 crops and float32"):
        build_engine({**trunk, "input_format": "float"}, trt=trt)  # a float plan over a uint8 graph
    with pytest.raises(BackendError, match="plan expects"):
        build_engine({**trunk, "outputs": ["features"]}, trt=trt)


def test_check_without_a_gpu_says_so(rtx_build, tiny_package):
    """btnet-edge check on built engines where no driver answers: exit 1, the reason, no traceback."""
    from btnet_edge.trt_runtime.device_memory import driver_cuda_version

    if driver_cuda_version() is not None:
        pytest.skip("this machine has an NVIDIA driver: tests/test_trt_gpu.py runs check for real")
    out, _ = rtx_build
    result = subprocess.run([sys.executable, "-m", "btnet_edge", "check", str(tiny_package), "--engines", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "no NVIDIA driver" in result.stderr and "Traceback" not in result.stderr
