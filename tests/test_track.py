"""Tracker: track ids across frames, identities from aggregated embeddings, and what `run` streams for videos."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from btnet_edge.cli.main import main
from btnet_edge.gallery import Gallery
from btnet_edge.pipeline.face import Face
from btnet_edge.pipeline.track import Tracker

from .conftest import FIXTURES, needs_fixtures

IMAGES = FIXTURES / "images"
DIM = 32
STILL_KEYS = {"bbox", "kps", "det_score", "face_size", "resolution", "route", "identity", "score"}


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


@pytest.fixture
def people(tmp_path):
    """A real SQLite gallery of two identities with orthogonal-ish embeddings."""
    rng = np.random.default_rng(7)
    vectors = {name: _unit(rng.normal(size=DIM)) for name in ("ann", "bob")}
    gallery = Gallery(tmp_path / "g.db", embedding_size=DIM)
    for name, v in vectors.items():
        gallery.enroll(name, v[None])
    yield gallery, vectors, rng
    gallery.close()


def _face(gallery: Gallery, centre: tuple[float, float], size: float, embedding: np.ndarray, route="branch") -> Face:
    """A face as the Recognizer makes it: its own match from the gallery (threshold applied)."""
    x, y = centre
    found = gallery.identify(embedding[None])[0]
    return Face(bbox=np.array([x - size / 2, y - size / 2, x + size / 2, y + size / 2], np.float32),
                kps=np.zeros((5, 2), np.float32), det_score=0.9, face_size=size, resolution=112 if size > 28 else 14,
                embedding=embedding, identity=found[0].name if found else None,
                identity_score=found[0].score if found else None, route=route)


def _noisy(v: np.ndarray, rng, similarity: float) -> np.ndarray:
    """A unit vector at about ``similarity`` cosine to ``v``: a small face's poor embedding."""
    noise = rng.normal(size=v.shape)
    noise = _unit(noise - (noise @ v) * v)
    return _unit(similarity * v + np.sqrt(1 - similarity ** 2) * noise)


@pytest.mark.parametrize("route", ["branch", "upsample"])
def test_a_name_established_large_carries_on_small_under_one_track(people, route):
    gallery, vectors, rng = people
    tracker = Tracker(gallery=gallery)
    sizes = np.geomspace(96, 8, 30)
    x = 200.0
    out = []
    for size in sizes:
        x += 1.2 * size  # walking sideways: more than a box width per frame when small
        similarity = 0.95 if size > 40 else 0.2  # small faces alone fall below the 0.3 threshold
        out.append(tracker.update([_face(gallery, (x, 300.0), float(size), _noisy(vectors["ann"], rng, similarity),
                                         route)])[0])
    assert {f.track_id for f in out} == {1}
    assert all(f.track_identity == "ann" for f in out)
    small = [f for f in out if f.face_size < 24]
    assert small and all(f.identity is None for f in small)  # the frame's own match: unknown
    assert all(f.candidate is not None and f.candidate_score < 0.3 for f in small)  # best, below threshold


def test_tracks_survive_missed_frames_and_end_after_max_missed(people):
    gallery, vectors, rng = people
    tracker = Tracker(gallery=gallery, max_missed=2)
    face = lambda x: _face(gallery, (x, 100.0), 40.0, _noisy(vectors["bob"], rng, 0.9))  # noqa: E731
    first = tracker.update([face(100.0)])[0].track_id
    tracker.update([])
    tracker.update([])
    assert tracker.update([face(130.0)])[0].track_id == first  # two missed frames: the same track
    for _ in range(3):
        tracker.update([])
    assert tracker.update([face(130.0)])[0].track_id != first


@pytest.mark.parametrize("frame_step, tracks", [(1, 4), (2, 1)])
def test_a_stride_widens_the_motion_gate(people, frame_step, tracks):
    gallery, vectors, rng = people
    tracker = Tracker(gallery=gallery, frame_step=frame_step)
    ids = {tracker.update([_face(gallery, (100.0 + 40.0 * step, 100.0), 10.0, _noisy(vectors["ann"], rng, 0.2))])[0]
           .track_id for step in range(4)}  # 4 box widths per update: what a stride of 2 makes of 2 per frame
    assert len(ids) == tracks


def test_two_people_keep_their_own_tracks_and_names(people):
    gallery, vectors, rng = people
    tracker = Tracker(gallery=gallery)
    for step in range(10):
        faces = [_face(gallery, (100.0 + 5 * step, 200.0), 30.0, _noisy(vectors["ann"], rng, 0.8)),
                 _face(gallery, (400.0 - 5 * step, 200.0), 30.0, _noisy(vectors["bob"], rng, 0.8))]
        out = tracker.update(faces)
    assert [(f.track_id, f.track_identity) for f in out] == [(1, "ann"), (2, "bob")]


def test_a_track_whose_frames_disagree_is_not_forced_to_a_name(people):
    gallery, vectors, _rng = people
    tracker = Tracker(gallery=gallery)
    mixed = _unit(vectors["ann"] + vectors["bob"])
    for step in range(8):
        name = ("ann", "bob")[step % 2]
        out = tracker.update([_face(gallery, (100.0 + step, 100.0), 60.0, _unit(vectors[name] + 0.3 * mixed))])[0]
        assert out.identity == name  # each frame alone is sure
    assert out.track_id == 1 and out.track_identity is None


@pytest.mark.parametrize("min_agreeing, expected", [(2, "bob"), (3, None)])
def test_frames_that_agree_name_a_track_whose_aggregate_is_below_threshold(people, min_agreeing, expected):
    gallery, vectors, rng = people
    tracker = Tracker(gallery=gallery, min_agreeing=min_agreeing)
    blur = _noisy(vectors["bob"], rng, 0.1)  # tiny faces share one bias: their mean stays far from bob
    for step in range(6):
        out = tracker.update([_face(gallery, (100.0 + step, 100.0), 64.0, blur)])[0]
    assert out.identity is None and out.track_identity is None
    for step in range(2):  # two frames matched on their own, nothing against
        out = tracker.update([_face(gallery, (106.0 + step, 100.0), 64.0, _noisy(vectors["bob"], rng, 0.4))])[0]
    assert out.identity == "bob" and out.track_score < gallery.default_threshold
    assert out.track_identity == expected


def test_without_aggregation_the_track_reports_the_frames_own_match(people):
    gallery, vectors, rng = people
    tracker = Tracker(gallery=gallery, aggregate=False)
    tracker.update([_face(gallery, (100.0, 100.0), 80.0, vectors["ann"])])
    small = tracker.update([_face(gallery, (110.0, 100.0), 60.0, _noisy(vectors["ann"], rng, 0.1))])[0]
    assert small.track_id == 1 and small.track_identity is None and small.identity is None


def test_json_keys_still_images_unchanged_tracked_faces_add_track_keys(people):
    gallery, vectors, _ = people
    face = _face(gallery, (50.0, 50.0), 40.0, vectors["ann"])
    assert set(face.to_json()) == STILL_KEYS
    tracked = Tracker(gallery=gallery).update([face])[0].to_json()
    assert set(tracked) == STILL_KEYS | {"track_id", "track_identity", "track_score", "candidate", "candidate_score"}
    assert tracked["track_id"] == 1 and tracked["track_identity"] == "ann" and tracked["candidate"] == "ann"


def _clip(path: Path, frames: int, fps: float) -> Path:
    frame = cv2.resize(cv2.imread(str(IMAGES / "scenes" / "two_people.jpg")), (640, 360))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (640, 360))
    for shift in range(frames):
        writer.write(np.roll(frame, shift * 6, axis=1))
    writer.release()
    return path


@needs_fixtures(IMAGES / "scenes" / "two_people.jpg")
def test_run_streams_tracked_frames_and_draws_at_the_source_rate(tiny_package, tmp_path, capsys):
    video = _clip(tmp_path / "clip.avi", 6, 10.0)
    lines, out, draw = tmp_path / "out.jsonl", tmp_path / "out.json", tmp_path / "drawn"
    assert main(["run", str(tiny_package), str(video), str(IMAGES / "scenes" / "two_people.jpg"), "--jsonl",
                 str(lines), "--json", str(out), "--draw", str(draw), "--stride", "2", "--quiet"]) == 0
    streamed = [json.loads(line) for line in lines.read_text().splitlines()]
    assert [e.get("frame") for e in streamed] == [0, 2, 4, None]
    assert streamed == json.loads(out.read_text())["images"]
    tracked = [e["faces"] for e in streamed[:3]]
    assert tracked[0] == []  # on video a face is reported from its track's second detection
    assert all(len(faces) == 2 for faces in tracked[1:])
    assert [sorted(f["track_id"] for f in faces) for faces in tracked[1:]] == [[1, 2]] * 2  # the same two tracks
    assert all(set(f) == STILL_KEYS for f in streamed[3]["faces"])  # a still image keeps its keys
    annotated = cv2.VideoCapture(str(draw / "clip.annotated.mp4"))
    assert annotated.get(cv2.CAP_PROP_FPS) == pytest.approx(5.0)  # 10 fps over stride 2
    annotated.release()


def test_run_prints_a_summary_without_json_and_refuses_bad_jsonl_targets(tiny_package, tmp_path, capsys):
    photo = tmp_path / "p.png"
    cv2.imwrite(str(photo), np.full((48, 64, 3), 90, np.uint8))
    assert main(["run", str(tiny_package), str(photo), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("1 frames, 0 faces") and "{" not in printed
    assert main(["run", str(tiny_package), str(photo), "--jsonl", str(tmp_path), "--quiet"]) == 1
    assert "is a folder" in capsys.readouterr().err
    old = tmp_path / "old.jsonl"
    old.write_text("earlier results\n")
    assert main(["run", str(tiny_package), str(photo), "--jsonl", str(old), "--quiet"]) == 1
    assert "exists" in capsys.readouterr().err and old.read_text() == "earlier results\n"
    assert main(["run", str(tiny_package), str(photo), "--jsonl", str(photo), "--quiet", "--force"]) == 1
    assert cv2.imread(str(photo)) is not None


@needs_fixtures(IMAGES / "people")
def test_eval_track_names_nobody_wrongly_and_keeps_one_track_per_person(mfn_package, tmp_path, capsys):
    out = tmp_path / "track.json"
    assert main(["eval-track", str(mfn_package), "--people", str(IMAGES / "people"), "--frames", "10", "--json",
                 str(out), "--quiet"]) == 0
    result = json.loads(out.read_text())
    assert set(result["people"]) == {"obama", "biden", "kit_harington", "rose_leslie", "alex_lacamoire"}
    assert all(n == 1 for n in result["track_ids_per_person"].values())
    rows = {(r["mode"], r["size_px"]): r for r in result["buckets"]}
    assert all(r["wrong"] == 0 for r in rows.values())
    for (mode, bucket), row in rows.items():
        if mode == "track":
            assert row["right"] >= rows[("per_frame", bucket)]["right"]
    assert rows[("track", "48+")]["right_share"] > 0.9
    assert "track ids per person" in capsys.readouterr().out
