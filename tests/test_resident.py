"""Device-resident inference proved on the CPU: ONNX Runtime IOBinding on host pointers, same plan, same offsets.

The layout (engines/frame_layout.py) and the runner (engines/resident.py) are the code the
TensorRT path runs; only the executor differs (IOBinding instead of set_tensor_address).
A wrong offset, a branch writing over the trunk's rows or a missing upload shows up as
embeddings that differ from the package's own graphs on ONNX Runtime.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from btnet_edge.errors import BackendError
from btnet_edge.trt_build.features import simulated_features
from btnet_edge.trt_build.targets import load_target

pytest.importorskip("onnx", reason="planning writes the uint8-input graphs: needs onnx")

COUNTS = [(2, 1, 3, 1), (0, 2, 0, 1), (1, 0, 0, 0), (0, 0, 0, 2), (0, 0, 0, 0), (3, 0, 2, 0), (0, 4, 4, 4)]


def _plan(package, folder, form, version="10.3", precision="fp32"):
    from btnet_edge.trt_build.plan import plan_engines

    target = replace(load_target("desktop-fp16"), trunk_form=form, precision=precision)
    target = replace(target, detector=replace(target.detector, build=False))
    return json.loads(json.dumps(plan_engines(package, target, simulated_features(version), folder)))


def _folder(plan):
    from btnet_edge.trt_runtime.engine_folder import engine_folder_from_json

    return engine_folder_from_json(plan)


@pytest.fixture(scope="module")
def reference(tiny_package):
    from btnet_edge.package.loader import load_package
    from btnet_edge.pipeline.preprocess import preprocess
    from btnet_edge.pipeline.runner import PackageRunner, backend_factory

    package = load_package(tiny_package)
    runner = PackageRunner(package, backend_factory(package))
    return lambda groups: runner.embed({r: preprocess(g, package.manifest.preprocess, r) for r, g in groups.items()})


def _groups(counts, seed):
    rng = np.random.default_rng(seed)
    return {r: rng.integers(0, 256, (n, r, r, 3), dtype=np.uint8) for r, n in zip((112, 28, 14, 7), counts)}


@pytest.mark.parametrize("form", ["merged", "segments"])
def test_resident_runner_matches_the_package(tiny_package, tmp_path, reference, form):
    from btnet_edge.trt_runtime.resident import HostMemory, OrtExecutor, ResidentRunner

    plan = _plan(tiny_package, tmp_path, form)
    runner = ResidentRunner(_folder(plan), OrtExecutor(_folder(plan)), HostMemory())
    for seed, counts in enumerate(COUNTS):
        groups = _groups(counts, seed)
        got, want = runner.embed(groups), reference(groups)
        for r, n in zip((112, 28, 14, 7), counts):
            assert got[r].shape == want[r].shape == (n, plan["embedding_size"])
            if n:
                assert np.abs(got[r] - want[r]).max() < 1e-4, (form, counts, r)
        used = sum(1 for n in counts if n)
        stats = runner.stats
        if not used:
            assert (stats.htod_copies, stats.dtoh_copies, stats.launches, stats.syncs) == (0, 0, 0, 0)
            continue
        # the whole bus budget of a call: one upload of uint8 crops, one download of embeddings, one sync
        assert (stats.htod_copies, stats.dtoh_copies, stats.syncs) == (1, 1, 1)
        assert stats.dtoh_bytes == sum(counts) * plan["embedding_size"] * 4
        assert stats.htod_bytes < sum(n * r * r * 3 for r, n in zip((112, 28, 14, 7), counts)) + 4 * 256
        branches = sum(1 for n in counts[1:] if n)
        if form == "merged":
            assert stats.launches == branches + 1  # the trunk runs once, empty inputs at batch 0
        else:
            reached = sum(1 for k in range(4) if sum(counts[:k + 1]))
            assert stats.launches == branches + reached  # a segment nothing reaches is not launched
    runner.close()


def test_segment_offsets_put_implants_after_the_trunk_rows(tiny_package, tmp_path):
    from btnet_edge.trt_runtime.frame_layout import LayoutPlanner

    planner = LayoutPlanner(_folder(_plan(tiny_package, tmp_path, "segments")))
    frame = planner.layout({112: 2, 28: 1, 14: 3, 7: 1})
    launches = {launch.engine: launch for launch in frame.launches}
    per_face_28 = 16 * 28 * 28 * 4
    branch = launches["branch_28"].outputs["implant_28"]
    seg0 = launches["trunk_seg0_112"].outputs["features_28"]
    seg1 = launches["trunk_seg1_28"].inputs["merged_28"]
    assert branch.buffer == seg0.buffer == seg1.buffer == "merged_28"
    assert (seg0.offset, seg0.shape[0]) == (0, 2) and branch.offset == 2 * per_face_28 and seg1.shape[0] == 3
    assert launches["branch_14"].outputs["implant_14"].offset == 3 * 32 * 14 * 14 * 4
    full = planner.layout(planner.max_faces)  # every buffer holds the largest call the profiles allow
    for launch in full.launches:
        for slot in (*launch.inputs.values(), *launch.outputs.values()):
            assert slot.offset + slot.nbytes <= planner.capacity[slot.buffer], (launch.engine, slot)


def test_merged_layout_writes_implants_into_trunk_inputs(tiny_package, tmp_path):
    from btnet_edge.trt_runtime.frame_layout import LayoutPlanner

    planner = LayoutPlanner(_folder(_plan(tiny_package, tmp_path, "merged")))
    frame = planner.layout({112: 0, 28: 2, 7: 1})
    branch = frame.launches[0]
    trunk = frame.launches[-1]
    assert [launch.engine for launch in frame.launches] == ["branch_28", "branch_7", "trunk"]
    assert trunk.inputs["implant_28"] == branch.outputs["implant_28"]  # same buffer, same offset: no copy
    assert trunk.inputs["image_112"].shape == (0, 112, 112, 3) and trunk.inputs["implant_14"].shape[0] == 0
    with pytest.raises(BackendError, match="profile max"):
        planner.layout({7: planner.max_faces[7] + 1})


def test_float_engines_are_refused(tiny_package, tmp_path):
    from btnet_edge.trt_runtime.frame_layout import LayoutPlanner

    plan = _plan(tiny_package, tmp_path, "merged")
    with pytest.raises(BackendError, match="uint8_bgr"):
        LayoutPlanner(_folder({**plan, "input_format": "float"}))


def test_strongly_typed_fp16_graphs_agree_by_cosine(tiny_package, tmp_path, reference):
    """The FP16 uint8-input graphs TensorRT 11 and TensorRT for RTX parse, run by the same runner."""
    from btnet_edge.trt_runtime.resident import HostMemory, OrtExecutor, ResidentRunner

    plan = _plan(tiny_package, tmp_path, "merged", version="11.4", precision="fp16")
    assert all(e["onnx"].endswith(".u8.fp16.onnx") for e in plan["engines"])
    runner = ResidentRunner(_folder(plan), OrtExecutor(_folder(plan)), HostMemory())
    groups = _groups((3, 3, 3, 3), 7)
    got, want = runner.embed(groups), reference(groups)
    for r in groups:
        cosine = (got[r] * want[r]).sum(1) / (np.linalg.norm(got[r], axis=1) * np.linalg.norm(want[r], axis=1))
        assert cosine.min() >= 0.999, (r, cosine)


def test_detector_uint8_graph_matches_host_preprocessing(tmp_path):
    """RetinaFace with (x - mean) and NCHW inside the graph == the host blob it replaces (padding = mean colour)."""
    import onnxruntime as ort

    from btnet_edge.trt_build.input_graph import write_uint8_input
    from btnet_edge.trt_build.plan import DETECTOR_MEAN_BGR, detector_onnx_bytes

    source = tmp_path / "det.onnx"
    source.write_bytes(detector_onnx_bytes())
    u8 = write_uint8_input(source, tmp_path / "det.u8.onnx", "input", DETECTOR_MEAN_BGR, (1.0, 1.0, 1.0), "BGR")
    image = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    blob = (image.astype(np.float32) - np.float32(DETECTOR_MEAN_BGR)).transpose(2, 0, 1)[None]
    want = ort.InferenceSession(str(source)).run(None, {"input": blob})
    got = ort.InferenceSession(str(u8)).run(None, {"input": image[None]})
    for a, b in zip(got, want):
        assert a.shape == b.shape and np.abs(a - b).max() < 1e-4


def test_empty_outputs_with_dynamic_non_batch_dims():
    """A call with no faces returns zero rows without a launch, also for outputs like the detector's anchors."""
    from btnet_edge.trt_runtime.engine_backend import empty_outputs

    specs = {"input": (True, np.dtype(np.uint8), (1, -1, -1, 3)), "conf": (False, np.dtype(np.float32), (1, -1, 2)),
             "implant_7": (False, np.dtype(np.float32), (-1, 64, 7, 7))}
    out = empty_outputs(specs)
    assert set(out) == {"conf", "implant_7"}
    assert out["conf"].shape == (0, 0, 2) and out["implant_7"].shape == (0, 64, 7, 7)


@pytest.mark.fixtures
def test_detector_on_the_uint8_engine_graph_finds_the_same_faces(tmp_path):
    """RetinaFace over the detector graph the engine is built from (uint8 frame in, mean inside) == the default."""
    import cv2

    from btnet_edge.backends.ort import OrtBackend
    from btnet_edge.pipeline.detectors.retinaface import RetinaFaceDetector
    from btnet_edge.trt_build.input_graph import write_uint8_input
    from btnet_edge.trt_build.plan import DETECTOR_MEAN_BGR, detector_onnx_bytes
    from tests.conftest import FIXTURES

    scene = FIXTURES / "images" / "scenes" / "t1.jpg"
    if not scene.is_file():
        pytest.skip(f"fixtures absent: {scene}")
    image = cv2.imread(str(scene))
    source = tmp_path / "det.onnx"
    source.write_bytes(detector_onnx_bytes())
    u8 = write_uint8_input(source, tmp_path / "det.u8.onnx", "input", DETECTOR_MEAN_BGR, (1.0, 1.0, 1.0), "BGR")
    want = RetinaFaceDetector().detect(image)
    got = RetinaFaceDetector(backend=OrtBackend(u8)).detect(image)
    assert len(want) == len(got) and sum(d.bbox[2] - d.bbox[0] > 90 for d in want) == 6  # t1's six people
    for a, b in zip(sorted(want, key=lambda d: d.bbox[0]), sorted(got, key=lambda d: d.bbox[0])):
        assert np.abs(np.asarray(a.bbox) - np.asarray(b.bbox)).max() < 0.5 and abs(a.score - b.score) < 1e-4


@pytest.mark.fixtures
def test_recognizer_on_the_resident_runner(tiny_package, tmp_path):
    """The Recognizer hands uint8 crops to a resident runner and gets the embeddings the per-graph runner gives."""
    import cv2

    from btnet_edge.pipeline.recognizer import Recognizer
    from btnet_edge.trt_runtime.resident import open_resident
    from tests.conftest import FIXTURES

    scene = FIXTURES / "images" / "scenes" / "t1.jpg"
    if not scene.is_file():
        pytest.skip(f"fixtures absent: {scene}")
    (tmp_path / "engines.json").write_text(json.dumps(_plan(tiny_package, tmp_path, "merged")))
    image = cv2.imread(str(scene))
    with Recognizer(tiny_package) as reference, \
            Recognizer(tiny_package, runner=open_resident(tmp_path, "onnxruntime")) as resident:
        want, got = reference.get(image), resident.get(image)
        assert resident.runner.stats.htod_copies == 1 and resident.runner.stats.dtoh_copies == 1
    assert len(want) == len(got) and sum(f.face_size > 90 for f in want) == 6  # t1's six people
    for a, b in zip(want, got):
        assert np.abs(a.embedding - b.embedding).max() < 1e-4


@pytest.mark.fixtures
@pytest.mark.parametrize("scene", ["scenes/t1.jpg", "unlabeled/crowd_t2.jpg"])
def test_detector_top_k_graph_finds_the_same_faces(tmp_path, scene):
    """The K best anchors picked inside the graph (what the detector engine downloads) decode to the same faces."""
    import cv2

    from btnet_edge.backends.ort import OrtBackend
    from btnet_edge.pipeline.detectors.retinaface import RetinaFaceDetector
    from btnet_edge.trt_build.detector_graph import anchor_count, top_anchors
    from btnet_edge.trt_build.input_graph import save_if_changed, uint8_input
    from btnet_edge.trt_build.plan import DETECTOR_MEAN_BGR, detector_onnx_bytes
    from tests.conftest import FIXTURES

    path = FIXTURES / "images" / scene
    if not path.is_file():
        pytest.skip(f"fixtures absent: {path}")
    image = cv2.imread(str(path))
    scale = min(1.0, 1920 / max(image.shape[:2]))  # the shipped targets' largest detector input
    image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    onnx = pytest.importorskip("onnx")
    u8 = uint8_input(onnx.load_from_string(detector_onnx_bytes()), "input", DETECTOR_MEAN_BGR, (1.0, 1.0, 1.0), "BGR")
    graph = save_if_changed(top_anchors(u8, 3000), tmp_path / "det.top.onnx")
    want = RetinaFaceDetector().detect(image)
    with OrtBackend(graph) as backend:
        got = RetinaFaceDetector(backend=backend).detect(image)
        rows = backend.infer({"input": np.full((1, 320, 320, 3), 117, np.uint8)})
    assert len(got) == len(want) >= 6
    for a, b in zip(sorted(want, key=lambda d: tuple(d.bbox)), sorted(got, key=lambda d: tuple(d.bbox))):
        assert np.abs(np.asarray(a.bbox) - np.asarray(b.bbox)).max() < 0.5 and abs(a.score - b.score) < 1e-4
    assert rows["loc"].shape == (1, 3000, 4) and rows["anchor_index"].dtype == np.int32
    assert rows["anchor_index"].max() < anchor_count(320, 320)


def test_top_k_must_fit_the_smallest_input():
    from btnet_edge.errors import ConfigError
    from btnet_edge.trt_build.targets import target_from_dict

    base = {"name": "t", "workspace_mb": 64, "batch": {"default": {"min": 1, "opt": 1, "max": 2}}}
    with pytest.raises(ConfigError, match="top_k"):
        target_from_dict({**base, "detector": {"top_k": 5000, "min_hw": [320, 320]}})  # 4200 anchors at 320x320
    with pytest.raises(ConfigError, match="batch = 1"):
        target_from_dict({**base, "detector": {"top_k": 100, "batch": 2}})
