"""Small faces on video (the stream schedule) and no false faces (the checks of enlarged-only boxes).

Real detector, real photos: fixture scenes, faces cut from the fixture photos walking across
a real photo (evaluation/stream_clip.py). Thresholds are loose bounds on a few frames; the
figures come from `btnet-edge eval-detect --clip` and `bench --frames` (docs/detection.md).
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from btnet_edge.cli.main import main
from btnet_edge.errors import ConfigError
from btnet_edge.pipeline.detect import create_detector
from btnet_edge.pipeline.detect_plan import DetectPlan
from btnet_edge.pipeline.detect_verify import enough_contrast, plausible_landmarks, second_look
from btnet_edge.pipeline.detectors._nms import box_iou
from btnet_edge.pipeline.image import read_image
from btnet_edge.pipeline.stream import StreamDetector

from .conftest import FIXTURES, needs_fixtures

IMAGES = FIXTURES / "images"
SCENES = IMAGES / "scenes"
PEOPLE = IMAGES / "people"
COUNTS = {"t1.jpg": 6, "obama-1080p.jpg": 1, "two_people.jpg": 2}


@pytest.fixture(scope="module")
def detector():
    with create_detector() as det:
        yield det


@pytest.fixture(scope="module")
def source_faces():
    from btnet_edge.evaluation.synth_frames import collect_source_faces

    return collect_source_faces([PEOPLE])


# --- no false faces ----------------------------------------------------------------------------------


@pytest.mark.fixtures
@needs_fixtures(SCENES)
def test_fixture_scenes_give_exactly_their_faces(detector) -> None:
    unchecked = create_detector(second_look=False, face_cues=False)
    extra = 0
    for name, count in COUNTS.items():
        image = read_image(SCENES / name)
        assert len(detector.detect(image)) == count, name
        extra += len(unchecked.detect(image)) - count
    assert extra >= 2, "without the checks the enlarged pass adds boxes (t1.jpg's glass and picture, a tie)"


def test_landmark_layout_and_contrast_rules() -> None:
    box = np.array([[0, 0, 20, 20]], np.float32)
    face = np.array([[[6, 8], [14, 8], [10, 12], [7, 16], [13, 16]]], np.float32)
    tilted = face.copy()  # the same face, head rolled 40 degrees: still a face
    turn = np.radians(40)
    rotation = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]], np.float32)
    tilted[0] = (face[0] - 10) @ rotation.T + 10
    nose_low = face.copy()
    nose_low[0, 2] = (10, 19)  # the nose below the mouth
    one_point = np.repeat(face[:, 2:3], 5, axis=1)
    far = face + np.float32(30)
    layouts = np.concatenate([face, tilted, nose_low, one_point, far])
    assert plausible_landmarks(np.repeat(box, 5, 0), layouts).tolist() == [True, True, False, False, False]
    rng = np.random.default_rng(0)
    flat = np.full((40, 40, 3), 180, np.uint8)
    featured = flat.copy()
    featured[12:16, 8:16] = featured[12:16, 24:32] = featured[26:30, 12:28] = 60  # eyes and a mouth
    noisy = np.clip(flat + rng.normal(0, 3, flat.shape), 0, 255).astype(np.uint8)
    boxes = np.array([[0, 0, 40, 40]], np.float32)
    assert [bool(enough_contrast(img, boxes)[0]) for img in (flat, featured, noisy)] == [False, True, False]


@pytest.mark.fixtures
@needs_fixtures(SCENES)
def test_second_look_keeps_real_small_faces_and_drops_textures(detector) -> None:
    unchecked = create_detector(second_look=False, face_cues=False)
    image = read_image(SCENES / "obama-1080p.jpg")
    false = np.array([d.bbox for d in unchecked.detect(image) if d.width < 60], np.float32).reshape(-1, 4)
    assert len(false) >= 1, "the enlarged pass should box the tie when unchecked"
    assert not second_look(detector._candidates_batch, image, false).any()
    # The same scenes shrunk so their faces are ~14 px: real small faces with their real context.
    kept = found = 0
    for name in COUNTS:
        image = read_image(SCENES / name)
        big = [d for d in detector.detect(image) if d.width >= 60]
        factor = 14.0 / np.median([d.width for d in big])
        small = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        truth = np.array([d.bbox for d in big], np.float32) * np.float32(factor)
        boxes = np.array([d.bbox for d in unchecked.detect(small)], np.float32).reshape(-1, 4)
        hits = boxes[[bool((box_iou(b, truth) >= 0.4).any()) for b in boxes]] if len(boxes) else boxes
        found += len(hits)
        kept += int(second_look(detector._candidates_batch, small, hits).sum())
    assert found >= 8 and kept == found


def test_plan_checks_and_budget_are_validated() -> None:
    with pytest.raises(ConfigError, match="stream_budget"):
        DetectPlan(stream_budget=0)
    with pytest.raises(ConfigError, match="second_look"):
        DetectPlan(second_look="no")


# --- the stream schedule -----------------------------------------------------------------------------


def test_schedule_covers_a_still_720p_frame_within_its_cycle_on_budget(detector) -> None:
    frame = np.full((720, 1280, 3), 120, np.uint8)
    stream = StreamDetector(detector)
    info = stream.describe(720, 1280)
    assert info["tiles"] > 1 and 1 < info["cycle_frames"] <= info["max_wait_frames"]
    for _ in range(info["max_wait_frames"]):
        stream.detect(frame)
    assert all(tile.last >= 1 for tile in stream._tiles), "every tile visited within max_wait_frames"
    per_frame = stream.stats["pass_px"] / stream.stats["frames"]
    assert per_frame <= 1.15 * info["budget_coarse_passes"] * info["coarse_pass_px"]
    # A still image's plan at this size costs ~25 coarse passes: the stream spends one.
    assert info["enlarged_px_per_cycle"] > 10 * per_frame


@pytest.mark.fixtures
@needs_fixtures(SCENES, PEOPLE)
def test_a_face_appearing_where_nothing_moved_is_looked_at_first(detector, source_faces) -> None:
    from btnet_edge.evaluation.stream_clip import background_frame
    from btnet_edge.evaluation.synth_frames import paste_face

    background = background_frame(read_image(SCENES / "two_people.jpg"), (1280, 720))
    stream = StreamDetector(detector)
    for _ in range(3):
        stream.detect(background)
    frame = background.copy()
    truth = paste_face(frame, source_faces[0], 14.0, 1150.0, 620.0)  # bottom right: the last tile in turn
    waited = None
    for k in range(8):
        boxes = np.array([d.bbox for d in stream.detect(frame)], np.float32).reshape(-1, 4)
        if len(boxes) and box_iou(truth, boxes).max() >= 0.5:
            waited = k
            break
    assert waited is not None and waited < stream.cycle_frames // 4, (waited, stream.cycle_frames)


@pytest.mark.fixtures
@needs_fixtures(SCENES, PEOPLE)
def test_a_face_walking_in_is_looked_at_while_tracks_take_the_budget_and_a_bigger_blob_moves(detector,
                                                                                             source_faces) -> None:
    """Six tracked faces' windows take more than the whole budget, and a larger moving blob (a patch of noise, not
    a face) comes first by size: the movers' share and their turns still bring a window to the new face at once."""
    from btnet_edge.evaluation.stream_clip import background_frame
    from btnet_edge.evaluation.synth_frames import paste_face

    background = background_frame(read_image(SCENES / "two_people.jpg"), (1280, 720))
    tracked = [np.array([x, 80, x + 20, 100], np.float32) for x in (100, 300, 500, 700, 900, 1100)]
    stream = StreamDetector(detector)
    stream.detect(background, tracked)
    noise = np.random.default_rng(0).integers(0, 255, (44, 44, 3), dtype=np.uint8)
    found_at = None
    for k in range(6):
        frame = background.copy()
        frame[560:604, 300 + 4 * k:344 + 4 * k] = noise
        truth = paste_face(frame, source_faces[0], 14.0, 1000.0 + 4 * k, 600.0)
        boxes = np.array([d.bbox for d in stream.detect(frame, tracked)], np.float32).reshape(-1, 4)
        if len(boxes) and box_iou(truth, boxes).max() >= 0.5:
            found_at = k
            break
    # Frame 0 sets the motion reference; the noise blob takes frame 1's mover window, the face frame 2's (k=2).
    assert found_at is not None and found_at <= 3, found_at
    assert stream.cycle_frames > 20  # a tile's turn would have come much later


@pytest.mark.fixtures
@needs_fixtures(SCENES, PEOPLE)
def test_walking_clip_recall_and_no_false_boxes(detector, source_faces) -> None:
    from btnet_edge.evaluation.stream_clip import background_frame, plan_walkers, stream_clip
    from btnet_edge.evaluation.stream_eval import evaluate_stream, stream_mode

    size = (1280, 720)
    background = background_frame(read_image(SCENES / "t1.jpg"), size)
    ignore = np.array([d.bbox for d in detector.detect(background)], np.float32)
    walkers = plan_walkers(source_faces, 3, 36, size, face_sizes_px=(12, 14, 20), seed=1)
    coarse = create_detector(min_face_px=0)
    modes = {"stream": stream_mode(detector, True), "coarse-only": stream_mode(coarse, False)}
    report = evaluate_stream(stream_clip(background, walkers, 36, ignore), modes,
                             {k: w.size_px for k, w in enumerate(walkers)}, total=36, progress=False)
    ours, theirs = report["modes"]["stream"], report["modes"]["coarse-only"]
    assert ours["recall"][">=10px"]["faces"] >= 2
    assert ours["recall"][">=10px"]["recall"] >= 0.75 and theirs["recall"][">=10px"]["recall"] <= 0.1
    assert ours["false_boxes_per_frame"] <= 0.05
    assert ours["frames_to_first_detection"]["median"] <= 6


def test_tracker_reports_a_face_from_its_second_detection() -> None:
    from btnet_edge.pipeline.face import Face
    from btnet_edge.pipeline.track import Tracker

    tracker = Tracker(min_hits=2, use_embeddings=False)

    def face(x: float) -> Face:
        return Face(bbox=np.array([x, 50, x + 12, 62], np.float32), kps=np.zeros((5, 2), np.float32), det_score=0.9,
                    face_size=12.0, resolution=0)

    assert tracker.update([face(100)]) == []
    second = tracker.update([face(104)])
    assert len(second) == 1 and second[0].track_id == 1 and tracker.held == 1
    assert tracker.update([face(400)]) == []  # another face far away: a new track, held back once


# --- CLI ---------------------------------------------------------------------------------------------


@pytest.mark.fixtures
@needs_fixtures(SCENES, PEOPLE)
def test_eval_detect_clip_cli(tmp_path, capsys) -> None:
    out = tmp_path / "clip.json"
    code = main(["eval-detect", "--clip", str(PEOPLE), "--background", str(SCENES / "two_people.jpg"),
                 "--clip-frames", "14", "--people", "2", "--frame-size", "640x360", "--face-sizes", "14,20",
                 "--quiet", "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert set(report["modes"]) == {"stream", "coarse-only"}
    assert report["modes"]["coarse-only"]["cost_vs_coarse_only"] == 1.0
    assert report["env"]["stream_schedule"]["enlarged_pass"] is True
    assert "first-seen" in capsys.readouterr().out
    assert main(["eval-detect", "--clip", str(PEOPLE), "--quiet"]) != 0
    assert "--clip needs --background" in capsys.readouterr().err
