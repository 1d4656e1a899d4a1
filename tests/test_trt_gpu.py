"""TensorRT integration: build, load and run engines and compare them with ONNX Runtime.

Runs only where TensorRT, cuda-python (or pycuda) and an NVIDIA GPU exist;
elsewhere every test skips and says which of them is missing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from btnet_edge._deps import available


def _missing() -> str | None:
    """Why these tests cannot run here, or None (checked at collection, so no fixture is built in vain)."""
    if not available("tensorrt"):
        return ("TensorRT is not installed here (JetPack on Jetson, NVIDIA's pip index on desktop: "
                "docs/tensorrt.md); GPU integration tests skipped")
    if not (available("cuda.bindings.runtime") or available("cuda.cudart") or available("pycuda.driver")):
        return 'neither cuda-python nor pycuda is installed (pip install "btnet-edge[trt]")'
    return None


pytestmark = [pytest.mark.gpu, pytest.mark.skipif(_missing() is not None, reason=str(_missing()))]

ROOT = Path(__file__).resolve().parents[1]
SMALL_TARGET = """
name = "gpu-test"
precision = "fp16"
workspace_mb = 512
[batch.default]
min = 1
opt = 2
max = 8
[detector]
batch = 1
min_hw = [320, 320]
opt_hw = [480, 640]
max_hw = [736, 1280]
"""


@pytest.fixture(scope="session")
def gpu():
    """This machine's TensorRT and GPU; a skip only when no driver or GPU answers.

    A driver that answers but is too old for the installed cuda-python (cudaErrorInsufficientDriver)
    fails here: skipping would hide a broken install.
    """
    from btnet_edge.errors import NoGpuError
    from btnet_edge.trt_runtime.cache_key import runtime_env

    try:
        return runtime_env()
    except NoGpuError as exc:
        pytest.skip(f"no usable NVIDIA GPU: {exc}")


@pytest.fixture(scope="module")
def built(gpu, tiny_package, tmp_path_factory):
    """Engines of the tiny package for the installed TensorRT, with a small target to keep builds short."""
    from btnet_edge._deps import require
    from btnet_edge.trt_build.builder import build_all
    from btnet_edge.trt_build.features import features_of
    from btnet_edge.trt_build.plan import plan_engines
    from btnet_edge.trt_build.targets import load_target

    folder = tmp_path_factory.mktemp("engines")
    (folder / "gpu-test.toml").write_text(SMALL_TARGET)
    plan = plan_engines(tiny_package, load_target(folder / "gpu-test.toml"), features_of(require("tensorrt")), folder)
    report = build_all(plan, folder)
    return plan, folder, report


def _cos(a, b):
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _crops(count, r, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, r, r, 3), dtype=np.uint8)


def _branch_reference(package_dir, r, crops):
    from btnet_edge.backends.ort import OrtBackend
    from btnet_edge.package.loader import load_package
    from btnet_edge.pipeline.preprocess import preprocess

    spec = load_package(package_dir).manifest.preprocess
    with OrtBackend(Path(package_dir) / f"branch_{r}.onnx") as backend:
        return backend.infer({f"image_{r}": preprocess(crops, spec, r)})[f"implant_{r}"]


def test_build_writes_engines_keys_and_manifest(built, gpu):
    plan, folder, report = built
    assert [b["name"] for b in report["built"]] == [e["name"] for e in plan["engines"]]
    manifest = json.loads((folder / "engines.json").read_text())
    assert manifest["built_on"]["gpu_name"] == gpu.gpu_name
    for entry in manifest["engines"]:
        assert (folder / entry["engine"]).stat().st_size > 0
        assert entry["key"]["onnx_sha256"] == entry["sha256"] and entry["key"]["trt_version"] == gpu.trt_version
    assert Path(report["timing_cache"]).is_file()


def test_second_build_rebuilds_nothing(built):
    from btnet_edge.trt_build.builder import build_all

    plan, folder, _ = built
    again = build_all(plan, folder)
    assert again["built"] == [] and again["fresh"] == [e["name"] for e in plan["engines"]]


def test_branch_engines_match_onnx_runtime(built, tiny_package):
    """uint8 crops in, normalisation inside the engine; FP16 accepted by cosine, never by elementwise tolerance."""
    from btnet_edge.trt_runtime.engine_backend import TrtBackend

    _plan, folder, _ = built
    for r in (28, 14, 7):
        crops = _crops(5, r)
        with TrtBackend(folder / f"branch_{r}.engine") as engine:
            got = engine.infer({f"image_{r}": crops})[f"implant_{r}"]
            again = engine.infer({f"image_{r}": crops[:2]})[f"implant_{r}"]  # buffers reused, smaller batch
            runs = engine.runs
            empty = engine.infer({f"image_{r}": crops[:0]})[f"implant_{r}"]
        want = _branch_reference(tiny_package, r, crops)
        assert _cos(got, want).min() >= 0.999 and _cos(again, got[:2]).min() >= 0.9999
        assert empty.shape == (0, *want.shape[1:]) and runs + 1 == engine.runs


def test_merged_trunk_runs_with_empty_inputs(built, tiny_package):
    """The min-0 profiles: does this TensorRT run a merged trunk whose inputs are partly empty (batch 0)?"""
    from btnet_edge.backends.ort import OrtBackend
    from btnet_edge.package.loader import load_package
    from btnet_edge.pipeline.preprocess import preprocess
    from btnet_edge.trt_runtime.engine_backend import TrtBackend

    plan, folder, _ = built
    assert plan["trunk"]["form"] == "merged"
    manifest = load_package(tiny_package).manifest
    rng = np.random.default_rng(5)
    implants = {t.name: rng.standard_normal((2, *t.shape)).astype(np.float32) for t in manifest.trunk.inputs[1:]}
    for empty in ("image_112", "implant_28", "implant_14", "implant_7"):
        crops = _crops(0 if empty == "image_112" else 2, 112, seed=6)
        feeds = {name: (value[:0] if name == empty else value) for name, value in implants.items()}
        with TrtBackend(folder / "trunk.engine") as engine:
            got = engine.infer({"image_112": crops, **feeds})["embedding"]
        with OrtBackend(Path(tiny_package) / "trunk.onnx") as reference:
            want = reference.infer({"image_112": preprocess(crops, manifest.preprocess, 112), **feeds})["embedding"]
        assert got.shape == want.shape and _cos(got, want).min() >= 0.999, empty


def test_resident_runner_on_tensorrt(built, tiny_package):
    """The device-resident path the Recognizer runs: one upload, one download, engines chained on the GPU."""
    from btnet_edge.package.loader import load_package
    from btnet_edge.trt_build.check import compare, ort_reference, random_inputs, resident_embedder
    from btnet_edge.trt_runtime.resident import open_resident

    _, folder, _ = built
    package = load_package(tiny_package)
    runner = open_resident(folder, "tensorrt")
    try:
        reference, _ = ort_reference(package)
        rows = compare(reference, resident_embedder(runner), random_inputs(package.manifest, 6, seed=2), "random")
        assert (runner.stats.htod_copies, runner.stats.dtoh_copies, runner.stats.syncs) == (1, 1, 1)
    finally:
        runner.close()
    assert {row["resolution"] for row in rows} == {112, 28, 14, 7} and all(row["passed"] for row in rows), rows


def test_detector_engine_runs(built):
    from btnet_edge.trt_runtime.engine_backend import TrtBackend

    _, folder, _ = built
    with TrtBackend(folder / "detector_retinaface.engine") as engine:
        out = engine.infer({"input": np.full((1, 480, 640, 3), 117, np.uint8)})
    assert set(out) == {"loc", "conf", "landmarks"}


def test_stale_key_rebuilds_when_onnx_is_at_hand(built, tmp_path):
    import shutil

    from btnet_edge.errors import EngineMismatchError
    from btnet_edge.trt_build.builder import refresh_stale_engines
    from btnet_edge.trt_runtime.cache_key import key_path, load_sidecar, save_key
    from btnet_edge.trt_runtime.engine_backend import TrtBackend

    _, folder, _ = built
    copy = tmp_path / "engines"
    shutil.copytree(folder, copy)
    engine = copy / "branch_7.engine"
    key, entry = load_sidecar(engine)
    save_key(engine, replace(key, gpu_name="Some Other GPU"), entry)
    with pytest.raises(EngineMismatchError, match="Some Other GPU"):  # the runtime refuses, naming both GPUs
        TrtBackend(engine).load()
    assert refresh_stale_engines(copy) == ["branch_7"]  # what the CLI does first
    with TrtBackend(engine) as backend:
        backend.infer({"image_7": _crops(1, 7)})
    assert load_sidecar(engine)[0].gpu_name == key.gpu_name and key_path(engine).is_file()


def test_strongly_typed_path(gpu, tiny_package, tmp_path):
    """The FP16 ONNX path of TensorRT 11, exercised wherever the STRONGLY_TYPED flag exists (10.x too)."""
    from btnet_edge._deps import require
    from btnet_edge.trt_build.builder import build_all
    from btnet_edge.trt_build.features import features_of
    from btnet_edge.trt_build.plan import plan_engines
    from btnet_edge.trt_build.targets import load_target
    from btnet_edge.trt_runtime.engine_backend import TrtBackend

    features = features_of(require("tensorrt"))
    if not features.strongly_typed_flag:
        pytest.skip(f"TensorRT {features.version} has no strongly typed networks")
    (tmp_path / "t.toml").write_text(SMALL_TARGET.replace("[detector]", "[detector]\nbuild = false"))
    plan = plan_engines(tiny_package, load_target(tmp_path / "t.toml"), replace(features, builder_flag_fp16=False),
                        tmp_path)
    assert plan["precision_path"] == "strongly_typed_fp16_onnx"
    build_all(plan, tmp_path)
    crops = _crops(4, 28, seed=3)
    with TrtBackend(tmp_path / "branch_28.engine") as engine:
        got = engine.infer({"image_28": crops})["implant_28"]
    assert got.dtype == np.float32 and _cos(got, _branch_reference(tiny_package, 28, crops)).min() >= 0.999


def test_check_cli_passes_on_mfn(gpu, mfn_package, tmp_path):
    out = tmp_path / "engines"
    (tmp_path / "t.toml").write_text(SMALL_TARGET.replace("[detector]", "[detector]\nbuild = false"))
    build = subprocess.run([sys.executable, str(ROOT / "tools" / "build_engines.py"), str(mfn_package), "--target",
                            str(tmp_path / "t.toml"), "--out", str(out)], capture_output=True, text=True, timeout=1200)
    assert build.returncode == 0, build.stderr
    faces = ROOT.parent / "shared" / "fixtures" / "images" / "people"
    args = ["check", str(mfn_package), "--engines", str(out), "--json", "--samples", "8"]
    if faces.is_dir():
        args += ["--faces", str(faces)]
    check = subprocess.run([sys.executable, "-m", "btnet_edge", *args], capture_output=True, text=True, timeout=600)
    assert check.returncode == 0, check.stdout + check.stderr
    rows = json.loads(check.stdout)["rows"]
    assert {row["resolution"] for row in rows} == {112, 28, 14, 7} and all(row["passed"] for row in rows)
