"""The Recognizer on real photos with the real MobileFaceNet package: detection, dispatch, batching, gallery."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from btnet_edge.cli.main import main
from btnet_edge.errors import GalleryError, InputImageError
from btnet_edge.gallery import Gallery
from btnet_edge.pipeline.align import align_face
from btnet_edge.pipeline.recognizer import Recognizer, main_face

from .conftest import FIXTURES, needs_fixtures

IMAGES = FIXTURES / "images"
PEOPLE = ["obama", "biden", "kit_harington", "rose_leslie", "alex_lacamoire"]
SCENES = {
    "t1.jpg": set(),
    "two_people.jpg": {"obama", "biden"},
    "obama_and_biden.jpg": {"obama", "biden"},
    "kit_with_rose.jpg": {"kit_harington", "rose_leslie"},
    "obama-240p.jpg": {"obama"},
    "obama-480p.jpg": {"obama"},
    "obama-720p.jpg": {"obama"},
    "obama-1080p.jpg": {"obama"},
}

pytestmark = needs_fixtures(IMAGES)


@pytest.fixture(scope="module")
def recognizer(mfn_package):
    """Every branch in use (the fixture package's branches are untrained): these tests check the branch path."""
    with Recognizer(mfn_package, branches="all") as rec:
        yield rec


def _largest(faces):
    return main_face(faces)


def _scaled_to(image: np.ndarray, face_px: float, target_px: float) -> np.ndarray:
    scale = target_px / face_px
    return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def test_six_faces_on_t1_with_unit_embeddings(recognizer):
    found = recognizer.get(cv2.imread(str(IMAGES / "scenes" / "t1.jpg")))
    faces = [f for f in found if f.face_size > 80]
    assert len(faces) == 6 and len(found) <= 8  # the small-face pass may add a doubtful box or two (12 and 33 px)
    for face in faces:
        assert face.embedding.shape == (128,) and face.resolution == 112
        assert np.linalg.norm(face.normed_embedding) == pytest.approx(1.0, abs=1e-5)
        assert face.bbox.shape == (4,) and face.kps.shape == (5, 2) and 0.5 <= face.det_score <= 1.0


def test_same_person_scores_above_different_people(recognizer):
    embeddings = {}
    for person in PEOPLE:
        for path in sorted((IMAGES / "people" / person).iterdir()):
            embeddings[(person, path.name)] = _largest(recognizer.get(cv2.imread(str(path)))).normed_embedding
    keys = list(embeddings)
    same, different = [], []
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            score = float(embeddings[a] @ embeddings[b])
            (same if a[0] == b[0] else different).append(score)
    assert min(same) > max(different)
    assert min(same) > 0.4 and max(different) < 0.3


@pytest.fixture(scope="module")
def enrolled_gallery(mfn_package, tmp_path_factory):
    path = tmp_path_factory.mktemp("gallery") / "people.db"
    for person in PEOPLE:
        code = main(["enroll", str(mfn_package), str(IMAGES / "people" / person), "--gallery", str(path),
                     "--name", person])
        assert code == 0
    return path


def test_enrolled_people_are_identified_in_their_scenes_only(mfn_package, enrolled_gallery, tmp_path):
    out = tmp_path / "run.json"
    draw = tmp_path / "drawn"
    code = main(["run", str(mfn_package), str(IMAGES / "scenes"), "--gallery", str(enrolled_gallery),
                 "--json", str(out), "--draw", str(draw), "--quiet"])
    assert code == 0
    document = json.loads(out.read_text())
    found = {Path(entry["path"]).name: entry for entry in document["images"]}
    assert set(found) == set(SCENES)
    for scene, expected in SCENES.items():
        names = [f["identity"] for f in found[scene]["faces"] if f["identity"]]
        assert sorted(names) == sorted(expected), scene  # each person once, nobody else named
        for face in found[scene]["faces"]:
            assert set(face) == {"bbox", "kps", "det_score", "face_size", "resolution", "route", "identity", "score"}
            assert face["resolution"] in (7, 14, 28, 112) and len(face["bbox"]) == 4
    drawn = cv2.imread(str(draw / "two_people.jpg"))
    original = cv2.imread(str(IMAGES / "scenes" / "two_people.jpg"))
    assert drawn.shape == original.shape and np.abs(drawn.astype(int) - original).sum() > 0


@pytest.mark.parametrize("target,branch", [(20, 28), (10, 14)])
def test_small_faces_go_to_their_branch_and_still_embed(recognizer, target, branch):
    image = cv2.imread(str(IMAGES / "people" / "obama" / "obama1.jpg"))
    full = _largest(recognizer.get(image))
    small = _scaled_to(image, full.face_size, target)
    faces = recognizer.get(small)
    assert len(faces) == 1
    face = faces[0]
    assert face.resolution == branch, face.face_size
    assert face.embedding.shape == (128,) and np.isfinite(face.embedding).all()


def _mixed_frame() -> np.ndarray:
    """One frame holding the same photo at four scales: faces of about 165, 25, 12 and 60 px."""
    photo = cv2.imread(str(IMAGES / "scenes" / "two_people.jpg"))
    pieces = [cv2.resize(photo, None, fx=s, fy=s, interpolation=cv2.INTER_AREA) for s in (0.8, 0.12, 0.06, 0.3)]
    canvas = np.full((max(p.shape[0] for p in pieces), sum(p.shape[1] + 8 for p in pieces), 3), 90, np.uint8)
    x = 0
    for piece in pieces:
        h, w = piece.shape[:2]
        canvas[0:h, x:x + w] = piece
        x += w + 8
    return canvas


def test_mixed_frame_runs_each_used_branch_once_and_the_trunk_once(recognizer):
    frame = _mixed_frame()
    before = dict(recognizer.runner.runs)
    faces = recognizer.get(frame)
    delta = {k: v - before[k] for k, v in recognizer.runner.runs.items()}
    used = {f.resolution for f in faces}
    assert len(used) >= 3, [(f.face_size, f.resolution) for f in faces]
    assert delta["trunk"] == 1
    for r in (28, 14, 7):
        assert delta[f"branch_{r}"] == (1 if r in used else 0)
    # Embeddings equal those of each face run alone.
    for face in faces:
        alone = recognizer.embed(align_face(frame, face.kps, face.resolution), face.resolution)[0]
        assert np.abs(alone - face.normed_embedding).max() < 1e-4


def test_get_batch_over_frames_equals_single_frames(recognizer):
    frames = [cv2.imread(str(IMAGES / "scenes" / name)) for name in ("two_people.jpg", "kit_with_rose.jpg")]
    frames.append(_mixed_frame())
    before = recognizer.runner.runs["trunk"]
    batched = recognizer.get_batch(frames)
    assert recognizer.runner.runs["trunk"] - before == 1
    for frame, faces in zip(frames, batched):
        single = recognizer.get(frame)
        assert len(single) == len(faces)
        for a, b in zip(single, faces):
            assert np.abs(a.normed_embedding - b.normed_embedding).max() < 1e-4


def test_flip_tta_sums_both_views(mfn_package, recognizer):
    image = cv2.imread(str(IMAGES / "people" / "biden" / "biden1.jpg"))
    crop = align_face(image, _largest(recognizer.get(image)).kps, 112)
    from btnet_edge.pipeline.preprocess import preprocess

    manifest = recognizer.manifest
    raw = recognizer.runner.embed({112: preprocess(np.stack([crop, crop[:, ::-1]]), manifest.preprocess, 112)})[112]
    expected = raw.sum(axis=0)
    expected /= np.linalg.norm(expected)
    assert np.abs(recognizer.embed(crop, 112)[0] - expected).max() < 1e-5


def test_face_at_the_border_and_frames_without_faces(recognizer):
    image = cv2.imread(str(IMAGES / "people" / "obama" / "obama1.jpg"))
    face = _largest(recognizer.get(image))
    x_mid = int((face.bbox[0] + face.bbox[2]) / 2)
    cut = np.ascontiguousarray(image[:, x_mid - 30:])  # the left part of the face is outside the frame
    faces = recognizer.get(cut)
    assert faces and all(np.isfinite(f.embedding).all() for f in faces)
    assert recognizer.get(np.full((240, 320, 3), 128, np.uint8)) == []


@pytest.mark.parametrize("bad", [
    np.zeros((0, 0, 3), np.uint8),
    np.zeros((64, 64), np.uint8),
    np.zeros((64, 64, 4), np.uint8),
    np.zeros((64, 64, 3), np.uint16),
    np.zeros((64, 64, 3), np.float32),
    None,
])
def test_bad_frames_are_refused_clearly(recognizer, bad):
    with pytest.raises(InputImageError):
        recognizer.get(bad)


def test_a_1x1_face_is_refused_with_the_expected_shape(recognizer):
    with pytest.raises(InputImageError, match=r"\(14, 14, 3\) uint8 BGR crops, found \(1, 1, 3\)"):
        recognizer.embed(np.zeros((1, 1, 3), np.uint8), 14)
    with pytest.raises(InputImageError, match="uint8"):
        recognizer.embed(np.zeros((2, 14, 14, 3), np.float32), 14)


def test_cli_run_on_an_unreadable_file_exits_nonzero(mfn_package, tmp_path, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_text("this is not an image")
    assert main(["run", str(mfn_package), str(bad), "--quiet"]) == 1
    assert "broken.jpg" in capsys.readouterr().err


def test_corrupt_gallery_is_reported_and_left_untouched(mfn_package, tmp_path, capsys):
    garbage = tmp_path / "g.db"
    garbage.write_bytes(b"not a database" * 100)
    before = garbage.read_bytes()
    code = main(["run", str(mfn_package), str(IMAGES / "scenes" / "t1.jpg"), "--gallery", str(garbage), "--quiet"])
    assert code == 1 and "g.db" in capsys.readouterr().err
    assert garbage.read_bytes() == before
    code = main(["enroll", str(mfn_package), str(IMAGES / "people" / "biden"), "--gallery", str(garbage),
                 "--name", "biden"])
    assert code == 1 and garbage.read_bytes() == before


def test_enroll_without_a_face_writes_nothing(mfn_package, enrolled_gallery, tmp_path):
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((200, 200, 3), 200, np.uint8))
    before = Gallery(enrolled_gallery, create=False)
    names = before.names()
    before.close()
    code = main(["enroll", str(mfn_package), str(blank), str(IMAGES / "people" / "biden" / "biden1.jpg"),
                 "--gallery", str(enrolled_gallery), "--name", "someone"])
    assert code == 1
    with Gallery(enrolled_gallery, create=False) as after:
        assert after.names() == names


def test_gallery_of_another_model_is_refused(tiny_package, enrolled_gallery, capsys):
    code = main(["run", str(tiny_package), str(IMAGES / "scenes" / "t1.jpg"), "--gallery", str(enrolled_gallery),
                 "--quiet"])
    assert code == 1
    assert "128-d" in capsys.readouterr().err
    with pytest.raises(GalleryError):
        Gallery(enrolled_gallery, embedding_size=64, create=False)


def test_torch_backend_matches_onnx_runtime(mfn_package, recognizer):
    pytest.importorskip("torch")
    frame = _mixed_frame()
    reference = recognizer.get(frame)
    with Recognizer(mfn_package, backend="torch", branches="all") as torch_rec:
        faces = torch_rec.get(frame)
    assert [f.resolution for f in faces] == [f.resolution for f in reference]
    for a, b in zip(faces, reference):
        assert float(a.normed_embedding @ b.normed_embedding) > 0.99999


def test_cli_run_on_a_video_writes_frames_and_an_annotated_video(mfn_package, tmp_path):
    frame = cv2.imread(str(IMAGES / "scenes" / "two_people.jpg"))
    frame = cv2.resize(frame, (640, 360))
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (640, 360))
    for shift in range(5):
        writer.write(np.roll(frame, shift * 4, axis=1))
    writer.release()
    out, draw = tmp_path / "video.json", tmp_path / "drawn"
    assert main(["run", str(mfn_package), str(video), "--json", str(out), "--draw", str(draw), "--quiet",
                 "--max-frames", "3"]) == 0
    entries = json.loads(out.read_text())["images"]
    assert [e["frame"] for e in entries] == [0, 1, 2]
    # On video a face is reported from its track's second detection: none in the first frame.
    assert [len(e["faces"]) for e in entries] == [0, 2, 2]
    annotated = cv2.VideoCapture(str(draw / "clip.annotated.mp4"))
    assert int(annotated.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    annotated.release()
