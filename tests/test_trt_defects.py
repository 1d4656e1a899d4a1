"""The defects a first real TensorRT run would hit (issue 19), each with a test that fails without its fix.

They run on the TensorRT stand-in (btnet_edge.testing.trt_standin): real engine builds by
TensorRT for RTX, a runtime that refuses what NvInferRuntime.h refuses. docs/tensorrt.md has
the defect -> test table.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from tests.conftest import FIXTURES, needs_fixtures

pytest.importorskip("onnx", reason="planning writes ONNX graphs: needs onnx")

ROOT = Path(__file__).resolve().parents[1]
SCENE = FIXTURES / "images" / "scenes" / "obama-720p.jpg"


@pytest.fixture(scope="module")
def reference(tiny_package):
    """The package's own graphs on ONNX Runtime, fed uint8 crops like the device-resident runner."""
    from btnet_edge.package.loader import load_package
    from btnet_edge.pipeline.preprocess import preprocess
    from btnet_edge.pipeline.runner import PackageRunner, backend_factory

    package = load_package(tiny_package)
    runner = PackageRunner(package, backend_factory(package))
    return lambda groups: runner.embed({r: preprocess(g, package.manifest.preprocess, r) for r, g in groups.items()})


def _groups(counts, seed=0):
    rng = np.random.default_rng(seed)
    return {r: rng.integers(0, 256, (n, r, r, 3), dtype=np.uint8) for r, n in counts.items()}


def _assert_same(got, want):
    for r in want:
        assert got[r].shape == want[r].shape
        if len(want[r]):
            assert np.abs(got[r] - want[r]).max() < 1e-4, r


# 1. the detector engine's profile does not hold the detection plan's inputs -------------------------------

@pytest.mark.parametrize("hw", [(480, 640), (720, 1280), (1080, 1920), (2160, 3840), (200, 640), (1001, 333)])
def test_1_fitted_passes_fit_the_detector_profile(hw):
    from btnet_edge.pipeline.detect_plan import DetectPlan, fit_passes, tile_spans

    height, width = hw
    for max_hw in ((1088, 1920), (736, 1280), (1920, 1920)):
        for step in fit_passes(DetectPlan().passes(height, width), height, width, max_hw):
            sh, sw = round(height * step.scale), round(width * step.scale)
            rows = [e - s for s, e, *_ in tile_spans(sh, step.tile_height or step.tile, step.overlap)] \
                if step.tile else [sh]
            cols = [e - s for s, e, *_ in tile_spans(sw, step.tile, step.overlap)] if step.tile else [sw]
            assert -(-max(rows) // 32) * 32 <= max_hw[0] and -(-max(cols) // 32) * 32 <= max_hw[1], (hw, step)


@pytest.fixture(scope="module")
def jetson_detector(tiny_package, tmp_path_factory):
    """The Jetson target's detector engine (max 736x1280, min 320) on the stand-in."""
    pytest.importorskip("tensorrt_rtx")
    from btnet_edge.testing import trt_standin
    from btnet_edge.trt_build.builder import build_all
    from btnet_edge.trt_build.features import features_of
    from btnet_edge.trt_build.plan import plan_engines
    from btnet_edge.trt_build.targets import load_target

    os.environ["BTNET_TRT_STANDIN"] = "1"
    try:
        out = tmp_path_factory.mktemp("jetson-detector")
        target = replace(load_target("jetson-orin-fp16"), dla_core=None)
        plan = plan_engines(tiny_package, target, features_of(trt_standin), out)
        plan = {**plan, "engines": [e for e in plan["engines"] if e["kind"] == "detector"]}
        build_all(plan, out, trt=trt_standin)
    finally:
        del os.environ["BTNET_TRT_STANDIN"]
    return out


@needs_fixtures(SCENE)
@pytest.mark.parametrize("size", [(640, 480), (1280, 720), (640, 200)])
def test_1_detector_engine_runs_every_frame_size(trt_standin, jetson_detector, size):
    """640x480 and 720p enlarged passes exceed max 736x1280; a 640x200 coarse pass is under min 320."""
    from btnet_edge.pipeline.config import detector_for

    frame = cv2.resize(cv2.imread(str(SCENE)), size, interpolation=cv2.INTER_AREA)
    engine = detector_for(backend="tensorrt", engines=jetson_detector)
    onnx = detector_for()
    try:
        got, want = engine.detect(frame), onnx.detect(frame)
    finally:
        engine.close()
        onnx.close()
    assert len(got) == len(want) >= (1 if size[1] >= 480 else 0)
    for a, b in zip(got, want):
        assert np.abs(a.bbox - b.bbox).max() < 3.0


# 2. the CLI uses the detector engine ---------------------------------------------------------------------

@needs_fixtures(SCENE)
def test_2_cli_run_uses_the_detector_engine(trt_standin, standin_engines, tiny_package, tmp_path, capsys):
    from btnet_edge.cli.main import main

    trt_standin.LAUNCHES.clear()
    out = tmp_path / "run.json"
    code = main(["run", str(tiny_package), str(SCENE), "--backend", "tensorrt", "--engines", str(standin_engines),
                 "--json", str(out), "--quiet"])
    assert code == 0
    detector = json.loads((standin_engines / "engines.json").read_text())["engines"][-1]
    assert trt_standin.LAUNCHES[Path(detector["onnx"]).name] >= 2  # coarse + enlarged passes on the engine
    assert trt_standin.LAUNCHES["trunk.u8.onnx"] == 1
    assert len(json.loads(out.read_text())["images"][0]["faces"]) == 1


# 3 and 6. batches split by the profiles; the most faces per call is the smaller of branch and trunk max ------

@pytest.fixture(scope="module")
def small_engines(tiny_package, tmp_path_factory):
    """Engines whose trunk takes fewer 28 px faces (3) than branch_28 (8), and 4 faces at 112 px."""
    pytest.importorskip("tensorrt_rtx")
    from btnet_edge.testing import trt_standin
    from btnet_edge.trt_build.builder import build_all
    from btnet_edge.trt_build.features import features_of
    from btnet_edge.trt_build.plan import plan_engines
    from btnet_edge.trt_build.targets import BatchRange, load_target

    os.environ["BTNET_TRT_STANDIN"] = "1"  # runtime_env and the builder on the stand-in GPU
    try:
        out = tmp_path_factory.mktemp("small-engines")
        target = load_target("desktop-fp16")
        target = replace(target, default_batch=BatchRange(1, 2, 8), branch_batch={},
                         trunk_batch={"image_112": BatchRange(1, 2, 4), "implant_28": BatchRange(1, 2, 3)},
                         detector=replace(target.detector, build=False))
        plan = plan_engines(tiny_package, target, features_of(trt_standin), out)
        build_all(plan, out, trt=trt_standin)
    finally:
        del os.environ["BTNET_TRT_STANDIN"]
    return out


def test_6_max_faces_is_the_smaller_of_branch_and_trunk(small_engines):
    from btnet_edge.trt_runtime.engine_folder import read_engine_folder
    from btnet_edge.trt_runtime.frame_layout import LayoutPlanner

    planner = LayoutPlanner(read_engine_folder(small_engines))
    assert planner.max_faces == {112: 4, 28: 3, 14: 8, 7: 8}


def test_3_and_6_more_faces_than_a_profile_holds_are_split(trt_standin, small_engines, reference):
    from btnet_edge.trt_runtime.resident import open_resident

    runner = open_resident(small_engines, "tensorrt")
    try:
        groups = _groups({112: 9, 28: 7, 14: 17, 7: 1})
        got = runner.embed(groups)
        assert runner.stats.calls == 3  # ceil(17 / 8) at 14 px, ceil(9 / 4) at 112, ceil(7 / 3) at 28
        assert runner.stats.htod_copies == runner.stats.dtoh_copies == runner.stats.syncs == 3
    finally:
        runner.close()
    _assert_same(got, reference(groups))


def test_3_per_graph_backend_splits_rows_of_one_and_several_inputs(trt_standin, small_engines, tiny_package):
    """TrtBackend (engines used one by one): a branch's rows, and the merged trunk's four inputs."""
    import onnxruntime as ort

    from btnet_edge.package.loader import load_package
    from btnet_edge.trt_runtime.engine_backend import TrtBackend

    manifest = load_package(tiny_package).manifest
    trunk = TrtBackend(small_engines / "trunk.engine")
    try:
        rng = np.random.default_rng(1)
        feeds = {"image_112": rng.integers(0, 256, (9, 112, 112, 3), dtype=np.uint8)}
        for t in manifest.trunk.inputs[1:]:
            feeds[t.name] = rng.standard_normal((5 if t.name == "implant_28" else 2, *t.shape)).astype(np.float32)
        got = trunk.infer(feeds)["embedding"]
        want = ort.InferenceSession(str(small_engines / "trunk.u8.onnx"), providers=["CPUExecutionProvider"]).run(
            None, feeds)[0]
        assert trunk.copies["syncs"] == 3  # 9 faces at 112 with max 4: three calls
    finally:
        trunk.close()
    assert got.shape == want.shape and np.abs(got - want).max() < 1e-4


# 4. pycuda: the context stack is empty between calls, on every thread -------------------------------------

class _StrictPycuda:
    """pycuda.driver's context rules (pycuda/src/cpp/cuda.hpp): calls need a current context; the stack must be
    empty at module cleanup, else pycuda aborts the process."""

    class LogicError(RuntimeError):
        pass

    def __init__(self):
        self.local = threading.local()
        self.threads = []
        driver = self

        class Context:
            def push(self):
                driver._stack().append(self)

            @staticmethod
            def pop():
                if not driver._stack():
                    raise driver.LogicError("cannot pop non-current context")
                driver._stack().pop()

        class Device:
            def __init__(self, n):
                self.n = n

            def retain_primary_context(self):
                return Context()

            def compute_capability(self):
                driver._need()
                return (8, 7)

            def name(self):
                return "Orin"

            def get_attribute(self, attribute):
                driver._need()
                return 16

        class Allocation(int):
            def free(self):
                driver._need()

        class Stream:
            handle = 0x77

            def synchronize(self):
                driver._need()

        self.Context, self.Device, self.Stream = Context, Device, Stream
        self.device_attribute = SimpleNamespace(MULTIPROCESSOR_COUNT=0)
        self.mem_alloc = lambda n: (self._need(), Allocation(0x1000))[1]
        self.pagelocked_empty = lambda n, dtype: (self._need(), np.zeros(n, dtype))[1]
        self.memcpy_htod_async = self.memcpy_dtoh_async = lambda *a: self._need()
        self.memcpy_dtod_async = lambda *a: self._need()

    def init(self):
        pass

    def _stack(self):
        if not hasattr(self.local, "stack"):
            self.local.stack = []
            self.threads.append(self.local.stack)
        return self.local.stack

    def _need(self):
        if not self._stack():
            raise self.LogicError("invalid device context - no currently active context?")


def test_4_pycuda_pops_the_context_it_pushes(monkeypatch):
    from btnet_edge.trt_runtime import device_memory

    strict = _StrictPycuda()
    monkeypatch.setattr(device_memory, "require", lambda name, **_: strict)
    memory = device_memory.PycudaMemory()

    def work():
        memory.device_properties(0)
        ptr = memory.malloc(1024)
        stream = memory.stream_create()
        host, _ = memory.host_empty(1024)
        memory.htod_async(ptr, host, 1024, stream)
        memory.dtod_async(ptr, ptr, 1024, stream)
        memory.synchronize(stream)
        memory.free(ptr)

    work()
    worker = threading.Thread(target=work)  # a camera or server thread
    worker.start()
    worker.join()
    assert len(strict.threads) == 2 and all(stack == [] for stack in strict.threads)  # nothing left at cleanup


# 5. set_tensor_address is checked; implant rows at unaligned offsets are staged ------------------------------

def _segment_plan(per_face_shape):
    """An in-memory segments plan whose 28 px implant is ``per_face_shape`` (float32)."""
    from btnet_edge.trt_runtime.engine_folder import engine_folder_from_json

    def profile(name, shape, high):
        return [{name: {"min": [1, *shape], "opt": [1, *shape], "max": [high, *shape]}}]

    def engine(name, kind, inp, out, shape, high, fmt="float"):
        return {"name": name, "kind": kind, "engine": f"{name}.engine", "onnx": f"{name}.onnx", "sha256": "0",
                "inputs": [inp], "outputs": [out], "profiles": profile(inp, shape, high), "input_format": fmt,
                "precision_path": "fp32"}

    return engine_folder_from_json({
        "package_name": "p", "embedding_size": 8, "input_format": "uint8_bgr",
        "trunk": {"form": "segments", "segments": [
            {"index": 0, "engine": "seg0", "input": "image_112", "output": "out0", "resolution": 112},
            {"index": 1, "engine": "seg1", "input": "merged_28", "output": "embedding", "resolution": 28,
             "concat": ["out0", "implant_28"]}]},
        "trunk_inputs": [{"name": "image_112", "shape": [3, 112, 112], "resolution": 112},
                         {"name": "implant_28", "shape": list(per_face_shape), "resolution": 28}],
        "engines": [engine("branch_28", "branch", "crops_28", "implant_28", [28, 28, 3], 8, "uint8_bgr"),
                    engine("seg0", "trunk_segment", "image_112", "out0", [112, 112, 3], 8, "uint8_bgr"),
                    engine("seg1", "trunk_segment", "merged_28", "embedding", list(per_face_shape), 16)]})


def test_5_every_bound_address_is_aligned():
    from btnet_edge.trt_runtime.frame_layout import ALIGN_BYTES, Copy, LayoutPlanner

    planner = LayoutPlanner(_segment_plan((3, 5, 5)))  # 300 bytes a face: 3 faces before start at byte 900
    frame = planner.layout({112: 3, 28: 2})
    launches = [s for s in frame.launches if not isinstance(s, Copy)]
    copies = [s for s in frame.launches if isinstance(s, Copy)]
    for launch in launches:
        for slot in (*launch.inputs.values(), *launch.outputs.values()):
            assert slot.offset % ALIGN_BYTES == 0, (launch.engine, slot)
    assert len(copies) == 1 and copies[0].target.offset == 900 and copies[0].source.offset == 0
    order = [getattr(s, "engine", "copy") for s in frame.launches]
    assert order.index("copy") == order.index("branch_28") + 1 < order.index("seg1")
    aligned = LayoutPlanner(_segment_plan((16, 28, 28))).layout({112: 3, 28: 2})
    assert not any(isinstance(s, Copy) for s in aligned.launches)  # 50176 bytes a face: no copy needed


def test_5_a_refused_address_is_an_error_not_a_stale_binding(trt_standin, standin_engines):
    from btnet_edge.errors import BackendError
    from btnet_edge.testing.trt_standin.device import MEMORY
    from btnet_edge.trt_runtime.engine_folder import read_engine_folder
    from btnet_edge.trt_runtime.frame_layout import Launch, Slot
    from btnet_edge.trt_runtime.resident import TrtExecutor

    folder = read_engine_folder(standin_engines)
    executor = TrtExecutor(folder, MEMORY)
    stream = MEMORY.stream_create()
    base = {"crops": MEMORY.malloc(4096 * 8), "out": MEMORY.malloc(50176 * 4)}
    try:
        launch = Launch("branch_28", {"input_28": Slot("crops", 4, (1, 28, 28, 3), "uint8")},
                        {folder.entry("branch_28").outputs[0]: Slot("out", 0, (1, 16, 28, 28), "float32")})
        name = folder.entry("branch_28").inputs[0]
        launch = replace(launch, inputs={name: launch.inputs["input_28"]})
        with pytest.raises(BackendError, match="refused address"):
            executor.launch(launch, base, stream)
    finally:
        for ptr in base.values():
            MEMORY.free(ptr)
        MEMORY.stream_destroy(stream)
        executor.close()


def test_5_segments_on_the_standin_match_the_package(trt_standin, tiny_package, tmp_path, reference):
    from btnet_edge.trt_build.builder import build_all
    from btnet_edge.trt_build.features import features_of
    from btnet_edge.trt_build.plan import plan_engines
    from btnet_edge.trt_build.targets import load_target
    from btnet_edge.trt_runtime.resident import open_resident

    target = replace(load_target("desktop-fp16"), trunk_form="segments")
    target = replace(target, detector=replace(target.detector, build=False))
    build_all(plan_engines(tiny_package, target, features_of(trt_standin), tmp_path), tmp_path, trt=trt_standin)
    runner = open_resident(tmp_path, "tensorrt")
    try:
        for seed, counts in enumerate(({112: 2, 28: 1, 14: 3, 7: 1}, {112: 0, 28: 2, 14: 0, 7: 1})):
            groups = _groups(counts, seed)
            _assert_same(runner.embed(groups), reference(groups))
    finally:
        runner.close()


# 7. partial failures release what they took; one logger per module; gpu_checks.sh fails on any step ---------

def test_7_a_failed_open_leaks_no_stream_or_engine(trt_standin, standin_engines, tmp_path):
    import gc

    from btnet_edge.errors import BackendError
    from btnet_edge.testing.trt_standin import _LIVE
    from btnet_edge.testing.trt_standin.device import live
    from btnet_edge.trt_runtime.resident import open_resident

    broken = tmp_path / "engines"
    shutil.copytree(standin_engines, broken)
    (broken / "trunk.engine").write_bytes(b"truncated")  # the last engine to load fails after the branches did
    gc.collect()
    before, engines = live(), _LIVE["engines"]
    with pytest.raises(BackendError, match="cannot deserialize"):
        open_resident(broken, "tensorrt")
    gc.collect()
    assert live() == before and _LIVE["engines"] == engines


def test_7_one_logger_per_module(trt_standin):
    import tensorrt_rtx

    from btnet_edge.trt_runtime.compat import trt_logger

    assert isinstance(trt_logger(trt_standin), trt_standin.Logger)
    assert isinstance(trt_logger(tensorrt_rtx), tensorrt_rtx.Logger)  # not the stand-in's, made first
    assert trt_logger(tensorrt_rtx) is trt_logger(tensorrt_rtx)


def test_7_gpu_checks_fails_when_a_step_fails(tmp_path):
    """A failing export (or bench) step fails the script even when pytest passed."""
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "python3").write_text('#!/bin/sh\ncase "$*" in\n  *"btnet_edge export"*) exit 3;;\n  *) exit 0;;\nesac\n')
    (shim / "python3").chmod(0o755)
    (shim / "nvidia-smi").write_text("#!/bin/sh\necho GPU\n")
    (shim / "nvidia-smi").chmod(0o755)
    env = {**os.environ, "PATH": f"{shim}:{os.environ['PATH']}"}
    result = subprocess.run(["bash", str(ROOT / "tools" / "gpu_checks.sh"), str(tmp_path / "out")], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "export" in result.stdout + result.stderr
