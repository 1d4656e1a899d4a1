"""The C++ runtime (cpp/, top-level CMakeLists.txt): built with cmake, unit-tested with ctest, and held to the
Python runtime on the fixture photos: same faces (the same detection plan), same branches and routes,
embeddings at cosine >= 0.9999, the same `run --json` contract, and the same clear errors on bad packages,
images and galleries.

Skips with a reason where no C++ toolchain, OpenCV/nlohmann-json/SQLite headers or ONNX Runtime SDK can be
found; tools/setup_dev.sh installs them, and in CI (CI=true) or with BTNET_REQUIRE_CPP=1 those skips are failures.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from .conftest import FIXTURES, ROOT, needs_fixtures

BUILD = ROOT / "build" / "cpp"
# The C++ runtime has the still-image plan without the checks of enlarged-only boxes (docs/cpp.md): Python is
# compared with those checks off.
UNCHECKED = {"second_look": False, "face_cues": False}


def _cpp_plan():
    from btnet_edge.pipeline.detect_plan import DetectPlan

    return DetectPlan(**UNCHECKED)
APP = BUILD / "btnet-edge-run"
SCENES = FIXTURES / "images" / "scenes"
PEOPLE = FIXTURES / "images" / "people"
SCRFD = FIXTURES / "models" / "scrfd_500m_kps.onnx"
YUNET = FIXTURES / "models" / "yunet_s_640_640.onnx"
MIN_COSINE = 0.9999


def _unavailable(reason: str):
    if os.environ.get("BTNET_REQUIRE_CPP") == "1" or os.environ.get("CI") == "true":
        pytest.fail(f"C++ runtime required (CI=true or BTNET_REQUIRE_CPP=1) but {reason}; run tools/setup_dev.sh")
    pytest.skip(reason)


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)


@pytest.fixture(scope="session")
def cpp_app() -> Path:
    """Configure and build the C++ runtime into build/cpp (incremental), or skip saying what is missing."""
    for tool in ("cmake", "c++"):
        if shutil.which(tool) is None:
            _unavailable(f"no {tool} on PATH (apt-get install cmake g++)")
    sdk = os.environ.get("ONNXRUNTIME_ROOT")
    if not sdk:
        made = _run([ROOT / "cpp" / "scripts" / "make_ort_sdk.sh"])
        if made.returncode != 0:
            _unavailable(f"cannot assemble the ONNX Runtime SDK: {made.stderr.strip()[-300:]}")
        sdk = made.stdout.strip().splitlines()[-1]
    configured = _run(["cmake", "-S", ROOT, "-B", BUILD, f"-DONNXRUNTIME_ROOT={sdk}", "-DCMAKE_BUILD_TYPE=Release"])
    if configured.returncode != 0:
        _unavailable("cmake cannot configure the C++ runtime (apt-get install libopencv-dev nlohmann-json3-dev "
                     f"libsqlite3-dev libssl-dev): {configured.stderr.strip()[-400:]}")
    built = _run(["cmake", "--build", BUILD, "-j", str(os.cpu_count() or 2)])
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return APP


@pytest.fixture(scope="session")
def retinaface_onnx(tmp_path_factory) -> Path:
    """The bundled RetinaFace written to a file, as cpp/scripts/write_retinaface_onnx.py does for users."""
    from btnet_edge.pipeline.detectors.retinaface import bundled_weights

    path = tmp_path_factory.mktemp("det") / "retinaface.onnx"
    path.write_bytes(bundled_weights())
    return path


@pytest.fixture(scope="session")
def mixed_frames(tmp_path_factory) -> list[Path]:
    """Fixture photos plus t1.jpg shrunk so its 6 faces fall to every branch (about 30, 17, 9 and 6 px)."""
    if not SCENES.is_dir():
        pytest.skip(f"fixtures absent: {SCENES} (set BTNET_FIXTURES)")
    folder = tmp_path_factory.mktemp("frames")
    t1 = cv2.imread(str(SCENES / "t1.jpg"))
    frames = [SCENES / "t1.jpg", SCENES / "obama_and_biden.jpg", PEOPLE / "biden" / "biden1.jpg"]
    for scale in (0.25, 0.12, 0.07, 0.05):
        path = folder / f"t1_x{scale}.png"
        cv2.imwrite(str(path), cv2.resize(t1, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))
        frames.append(path)
    return frames


def _cpp_json(app: Path, package: Path, inputs: list[Path], detector: Path, tmp_path: Path, *extra: str) -> dict:
    out = tmp_path / "cpp.json"
    done = _run([app, package, *inputs, "--detector", detector, "--json", out, *extra])
    assert done.returncode == 0, done.stderr
    return json.loads(out.read_text())


def test_ctest_unit_tests_pass(cpp_app):
    done = _run(["ctest", "--test-dir", BUILD, "--output-on-failure"])
    assert done.returncode == 0, done.stdout[-3000:]
    assert "100% tests passed" in done.stdout


def _assert_same_faces(python_faces, cpp_faces, where: str) -> list[int]:
    assert len(cpp_faces) == len(python_faces), f"{where}: C++ found {len(cpp_faces)} faces, Python {len(python_faces)}"
    resolutions = []
    for face, theirs in zip(python_faces, cpp_faces):
        ours = face.to_json()
        assert (theirs["resolution"], theirs["route"]) == (ours["resolution"], ours["route"]), where
        np.testing.assert_allclose(theirs["bbox"], ours["bbox"], atol=0.02, err_msg=where)
        np.testing.assert_allclose(theirs["kps"], ours["kps"], atol=0.02, err_msg=where)
        assert abs(theirs["det_score"] - ours["det_score"]) <= 2e-4, where
        embedding = np.asarray(theirs["embedding"], np.float64)
        assert embedding.shape == face.embedding.shape
        cosine = embedding @ face.embedding / np.linalg.norm(embedding) / np.linalg.norm(face.embedding)
        assert cosine >= MIN_COSINE, f"{where}: face at {ours['bbox']} ({ours['resolution']} px) cosine {cosine:.6f}"
        resolutions.append(ours["resolution"])
    return resolutions


@pytest.mark.fixtures
@needs_fixtures(SCENES)
@pytest.mark.parametrize("branches", ["trained", "all"])
def test_cpp_embeddings_equal_python(cpp_app, mfn_package, retinaface_onnx, mixed_frames, tmp_path, branches):
    """Same faces, routes and embeddings as the Python Recognizer on every branch (MobileFaceNet + flip TTA).

    The fixture package's branches are only initialised from the trunk: by default ("trained") both runtimes
    upsample those faces for the trunk; "all" runs the branches themselves.
    """
    from btnet_edge import Recognizer
    from btnet_edge.pipeline.image import read_image

    document = _cpp_json(cpp_app, mfn_package, mixed_frames, retinaface_onnx, tmp_path, "--embeddings",
                         "--branches", branches)
    assert [entry["path"] for entry in document["images"]] == [str(p) for p in mixed_frames]
    used = set()
    with Recognizer(mfn_package, branches=branches, det_plan=_cpp_plan()) as recognizer:
        for path, entry in zip(mixed_frames, document["images"]):
            used.update(_assert_same_faces(recognizer.get(read_image(path)), entry["faces"], path.name))
    assert used == {7, 14, 28, 112}, f"the frames should exercise every branch, used {sorted(used)}"
    routes = {face["route"] for entry in document["images"] for face in entry["faces"]}
    assert routes == ({"trunk", "upsample"} if branches == "trained" else {"trunk", "branch"}), routes


@pytest.mark.fixtures
@needs_fixtures(SCENES)
def test_cpp_detection_plan_options_equal_python(cpp_app, mfn_package, retinaface_onnx, mixed_frames, tmp_path):
    """--det-size, --min-face, --det-upscale, --det-tile and --max-side change the C++ plan as they change Python's."""
    from btnet_edge import Recognizer
    from btnet_edge.pipeline.detect_plan import DetectPlan
    from btnet_edge.pipeline.image import read_image

    frames = mixed_frames[:2] + mixed_frames[-3:-2]
    settings = [(("--min-face", "0"), DetectPlan(min_face_px=None)),
                (("--det-size", "320", "--det-upscale", "2", "--det-tile", "512", "--max-side", "3000"),
                 DetectPlan(det_size=320, upscale=2.0, tile=512, max_side=3000, **UNCHECKED))]
    enlarged = settings[1][1].passes(*cv2.imread(str(frames[0])).shape[:2])[1]
    assert enlarged.scale == 2.0 and enlarged.tile < 1280 * 2.0, "t1.jpg should be cut into tiles by the second plan"
    boxes = []
    for flags, plan in settings:
        document = _cpp_json(cpp_app, mfn_package, frames, retinaface_onnx, tmp_path, "--embeddings", *flags)
        with Recognizer(mfn_package, det_plan=plan) as recognizer:
            for path, entry in zip(frames, document["images"]):
                _assert_same_faces(recognizer.get(read_image(path)), entry["faces"], f"{path.name} {flags}")
        boxes.append([face["bbox"] for entry in document["images"] for face in entry["faces"]])
    assert boxes[0] != boxes[1], "the two plans should find different faces or boxes on these frames"


@pytest.mark.fixtures
@needs_fixtures(SCENES)
def test_cpp_dispatch_and_align_options_equal_python(cpp_app, mfn_package, retinaface_onnx, mixed_frames, tmp_path):
    """--rounding floor and --align box give the faces, branches and embeddings Python gives with the same options."""
    from btnet_edge import Recognizer
    from btnet_edge.pipeline.image import read_image

    frames = mixed_frames[-4:]
    document = _cpp_json(cpp_app, mfn_package, frames, retinaface_onnx, tmp_path, "--embeddings", "--rounding",
                         "floor", "--align", "box")
    used = set()
    with Recognizer(mfn_package, rounding="floor", align="box", det_plan=_cpp_plan()) as recognizer:
        for path, entry in zip(frames, document["images"]):
            used.update(_assert_same_faces(recognizer.get(read_image(path)), entry["faces"], path.name))
    assert len(used) >= 2, used


@pytest.mark.fixtures
@pytest.mark.parametrize("detector", [SCRFD, YUNET], ids=["scrfd", "yunet"])
def test_cpp_other_detectors_equal_python(cpp_app, mfn_package, mixed_frames, tmp_path, detector):
    """SCRFD and YuNet files give the same faces and embeddings in both runtimes (YuNet decoded by us in C++)."""
    from btnet_edge import Recognizer
    from btnet_edge.pipeline.detect import create_detector
    from btnet_edge.pipeline.image import read_image

    if not detector.exists():
        pytest.skip(f"fixtures absent: {detector} (set BTNET_FIXTURES)")
    frames = mixed_frames[:1] + mixed_frames[-3:-1]
    document = _cpp_json(cpp_app, mfn_package, frames, detector, tmp_path, "--embeddings")
    with Recognizer(mfn_package, detector=create_detector(detector, **UNCHECKED)) as recognizer:
        for path, entry in zip(frames, document["images"]):
            faces = recognizer.get(read_image(path))
            assert faces, f"SCRFD should find faces in {path.name}"
            _assert_same_faces(faces, entry["faces"], path.name)


@pytest.mark.fixtures
@needs_fixtures(SCENES, PEOPLE)
def test_cpp_json_matches_python_run_contract(cpp_app, mfn_package, retinaface_onnx, tmp_path):
    """The app's JSON equals `btnet-edge run --json` on a gallery the Python side enrolled (read by C++ as is)."""
    from btnet_edge.cli.main import main

    gallery = tmp_path / "people.db"
    for name in ("obama", "biden"):
        assert main(["enroll", str(mfn_package), str(PEOPLE / name / f"{name}1.jpg"), "--gallery", str(gallery),
                     "--name", name]) == 0
    inputs = [SCENES / "obama_and_biden.jpg", SCENES / "two_people.jpg", PEOPLE / "obama" / "obama2.jpg"]
    python_json = tmp_path / "python.json"
    assert main(["run", str(mfn_package), *map(str, inputs), "--gallery", str(gallery), "--json", str(python_json),
                 "--quiet", "--no-second-look", "--no-face-cues"]) == 0  # the C++ runtime has neither check
    ours = json.loads(python_json.read_text())
    theirs = _cpp_json(cpp_app, mfn_package, inputs, retinaface_onnx, tmp_path, "--gallery", gallery)
    assert theirs.keys() == ours.keys() == {"images", "errors"}
    assert theirs["errors"] == ours["errors"] == []
    assert len(theirs["images"]) == len(ours["images"])
    identities = set()
    for mine, other in zip(ours["images"], theirs["images"]):
        assert other.keys() == mine.keys()
        assert other["path"] == mine["path"]
        assert len(other["faces"]) == len(mine["faces"])
        for a, b in zip(mine["faces"], other["faces"]):
            assert b.keys() == a.keys()
            assert (b["resolution"], b["identity"]) == (a["resolution"], a["identity"])
            assert b["face_size"] == pytest.approx(a["face_size"], abs=0.02)
            assert (b["score"] is None) == (a["score"] is None)
            if a["score"] is not None:
                assert b["score"] == pytest.approx(a["score"], abs=1e-3)
            identities.add(a["identity"])
    assert {"obama", "biden"} <= identities, f"the enrolled people should be recognized, got {identities}"


@pytest.mark.fixtures
@needs_fixtures(SCENES)
def test_cpp_runs_each_used_branch_once_and_the_trunk_once_per_frame(cpp_app, mfn_package, retinaface_onnx,
                                                                    tmp_path):
    t1 = cv2.imread(str(SCENES / "t1.jpg"))
    big, small = (cv2.resize(t1, None, fx=s, fy=s, interpolation=cv2.INTER_AREA) for s in (0.25, 0.12))
    canvas = np.zeros((big.shape[0], big.shape[1] + small.shape[1] + 20, 3), np.uint8)
    canvas[:, :big.shape[1]] = big
    canvas[:small.shape[0], big.shape[1] + 20:] = small
    frame = tmp_path / "mixed.png"
    cv2.imwrite(str(frame), canvas)
    document = _cpp_json(cpp_app, mfn_package, [frame], retinaface_onnx, tmp_path, "--repeat", "2", "--branches", "all")
    used = {f["resolution"] for f in document["images"][0]["faces"]}
    assert len(document["images"][0]["faces"]) >= 10 and {28, 112} <= used, used
    runs = document["timing"]["graph_runs"]  # the frame ran 3 times: once untimed, twice timed
    assert runs == {"trunk": 3, **{f"branch_{r}": 3 if r in used else 0 for r in (28, 14, 7)}}
    passes = document["timing"]["detect_pass_s"]  # this small frame gets both passes of the plan
    assert passes.keys() == {"coarse", "enlarged"} and min(passes.values()) > 0, passes
    # By default the fixture package's untrained branches are skipped: faces of their sizes go to the trunk.
    document = _cpp_json(cpp_app, mfn_package, [frame], retinaface_onnx, tmp_path, "--repeat", "1")
    assert {f["route"] for f in document["images"][0]["faces"]} == {"trunk", "upsample"}
    assert document["timing"]["graph_runs"] == {"trunk": 2, "branch_28": 0, "branch_14": 0, "branch_7": 0}


@pytest.mark.fixtures
@needs_fixtures(SCENES)
def test_cpp_bad_inputs_give_one_line_errors(cpp_app, mfn_package, retinaface_onnx, tmp_path):
    def fails(*args, says: str) -> None:
        done = _run([cpp_app, *args])
        assert done.returncode == 1, done.stdout
        assert says in done.stderr, done.stderr
        lines = done.stderr.splitlines()  # "warning: ..." (untrained branches), "skipped ..." lines, one error line
        assert lines[-1].startswith("btnet-edge-run: error: ") and "terminate" not in done.stderr
        assert all(line.startswith(("btnet-edge-run: skipped ", "btnet-edge-run: warning: branches "))
                   for line in lines[:-1]), done.stderr

    photo = SCENES / "two_people.jpg"
    det = ["--detector", retinaface_onnx]
    tampered = tmp_path / "tampered"
    shutil.copytree(mfn_package, tampered)
    with open(tampered / "branch_14.onnx", "ab") as handle:
        handle.write(b"\0")
    fails(tampered, photo, *det, says="does not match its sha256 in the manifest")
    manifest = json.loads((mfn_package / "manifest.json").read_text())
    manifest["schema_version"] = 99
    broken = tmp_path / "broken"
    shutil.copytree(mfn_package, broken)
    (broken / "manifest.json").write_text(json.dumps(manifest))
    fails(broken, photo, *det, says="schema_version 99 is not supported")
    fails(tmp_path / "absent", photo, *det, says="is not a model package folder")
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("not a photo")
    out = tmp_path / "out.json"
    # like `btnet-edge run`: the unreadable image is skipped and reported, the others are processed and written
    done = _run([cpp_app, mfn_package, not_image, photo, *det, "--json", out])
    assert done.returncode == 1, done.stdout
    assert f"btnet-edge-run: skipped {not_image}: " in done.stderr and "cannot decode" in done.stderr, done.stderr
    assert done.stderr.splitlines()[-1].startswith("btnet-edge-run: error: 1 input(s) could not be read")
    assert "warning: branches 7, 14, 28 px of " in done.stderr and "--branches all" in done.stderr
    written = json.loads(out.read_text())
    assert [e["path"] for e in written["errors"]] == [str(not_image)]
    assert [i["path"] for i in written["images"]] == [str(photo)] and len(written["images"][0]["faces"]) == 2
    fails(mfn_package, tmp_path / "missing.jpg", *det, says="image file not found")
    fails(mfn_package, photo, says="--detector is required")
    fails(mfn_package, photo, "--detector", tmp_path / "none.onnx", says="detector model not found")
    fails(mfn_package, photo, *det, "--device", "tpu", says="unknown device")
    fails(mfn_package, photo, *det, "--det-threshold", "high", says="--det-threshold takes a number")
    fails(mfn_package, photo, *det, "--rounding", "round", says="unknown rounding 'round'")
    fails(mfn_package, photo, *det, "--align", "eyes", says="align should be landmarks or box")
    fails(mfn_package, photo, *det, "--branches", "some", says="use one of trained, all, none")
    fails(mfn_package, photo, *det, "--det-size", "32", says="det_size=32 must be an int >= 64")
    fails(mfn_package, photo, *det, "--det-upscale", "8", says="must be between 1 and 4")
    fails(mfn_package, photo, *det, "--min-face", "-1", says="--min-face takes a size >= 0")
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        fails(mfn_package, photo, *det, "--device", "cuda", says="has no CUDAExecutionProvider here")
    other = tmp_path / "other.db"
    from btnet_edge.gallery import Gallery

    with Gallery(other, embedding_size=128, model_id="mobilefacenet:trunk-sha256:0000000000000000") as gallery:
        gallery.enroll("someone", np.ones(128, np.float32))
    fails(mfn_package, photo, *det, "--gallery", other, says="was enrolled with model")


@pytest.mark.fixtures
@needs_fixtures(SCENES)
def test_bench_cpp_reports_both_runtimes(cpp_app, mfn_package, mixed_frames, tmp_path):
    from btnet_edge.cli.main import main

    out = tmp_path / "bench.json"
    frames = [mixed_frames[0], mixed_frames[-2]]
    assert main(["bench-cpp", str(mfn_package), *map(str, frames), "--app", str(cpp_app), "--repeats", "1",
                 "--rounds", "1", "--threads", "1", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [Path(r["frame"]).name for r in report["rows"]] == [f.name for f in frames]
    # t1.jpg: the enlarged pass adds 2 small detections (12 and 29 px, scores ~0.78) to the 6 people; at 7 % only the 6
    assert [row["faces"] for row in report["rows"]] == [8, 6]
    for row in report["rows"]:
        assert row["python_ms_per_frame"] > 0 and row["cpp_ms_per_frame"] > 0
        assert row["cpp_ms_per_face"] == pytest.approx(row["cpp_ms_per_frame"] / row["faces"])
    assert report["stage_ms_per_frame"]["cpp"]["detect"] > 0
    assert main(["bench-cpp", str(mfn_package), str(frames[0]), "--app", str(tmp_path / "none")]) == 1


@pytest.mark.fixtures
@needs_fixtures(SCENES)
def test_cpp_video_frames_carry_their_index(cpp_app, mfn_package, retinaface_onnx, tmp_path):
    from btnet_edge.cli.main import main

    video = tmp_path / "clip.avi"
    frame = cv2.resize(cv2.imread(str(SCENES / "two_people.jpg")), (640, 360))
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (640, 360))
    for _ in range(3):
        writer.write(frame)
    writer.release()
    python_json = tmp_path / "python.json"
    # The C++ app runs the still-image plan on each frame (no stream schedule, no checks yet: docs/cpp.md).
    assert main(["run", str(mfn_package), str(video), "--json", str(python_json), "--quiet", "--no-track",
                 "--no-second-look", "--no-face-cues"]) == 0
    ours = json.loads(python_json.read_text())["images"]
    theirs = _cpp_json(cpp_app, mfn_package, [video], retinaface_onnx, tmp_path, "--max-frames", "2")["images"]
    assert [e["frame"] for e in theirs] == [0, 1]
    for mine, other in zip(ours, theirs):
        assert other["path"] == mine["path"] == str(video)
        assert [f["resolution"] for f in other["faces"]] == [f["resolution"] for f in mine["faces"]]
        assert len(other["faces"]) == 2
