"""Enrollment takes the face the user meant: group photos refused unless picked, bulk people/<name>/ folders."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from btnet_edge.cli.main import main
from btnet_edge.errors import ConfigError, InputImageError
from btnet_edge.gallery import Gallery
from btnet_edge.gallery.enrollment import pick_face, subject_candidates
from btnet_edge.pipeline.face import Face

from .conftest import FIXTURES, needs_fixtures

IMAGES = FIXTURES / "images"


def _face(size: float, score: float = 0.99) -> Face:
    return Face(bbox=np.array([0, 0, size, size], np.float32), kps=np.zeros((5, 2), np.float32), det_score=score,
                face_size=size, resolution=112)


def test_pick_face_refuses_similar_faces_but_not_bystanders() -> None:
    assert pick_face([_face(200), _face(60)]).face_size == 200  # a small bystander is no doubt
    assert pick_face([_face(200), _face(150, score=0.5)]).face_size == 200  # nor a doubtful detection
    with pytest.raises(InputImageError, match=r"2 faces of similar size \(200, 150 px\).*--pick largest"):
        pick_face([_face(150), _face(200)], source="group.jpg")
    assert pick_face([_face(150), _face(200)], pick="largest").face_size == 200
    assert [f.face_size for f in subject_candidates([_face(150), _face(200), _face(90)])] == [200, 150]
    with pytest.raises(InputImageError, match="no face"):
        pick_face([])
    with pytest.raises(ConfigError):
        pick_face([_face(100)], pick="first")


@needs_fixtures(IMAGES)
def test_group_photo_is_refused_then_picked(mfn_package, tmp_path, capsys) -> None:
    gallery = tmp_path / "g.db"
    group = str(IMAGES / "scenes" / "obama_and_biden.jpg")
    assert main(["enroll", str(mfn_package), group, "--gallery", str(gallery), "--name", "obama"]) == 1
    err = capsys.readouterr().err
    assert "3 faces of similar size (" in err and "--pick largest" in err and "nothing was enrolled" in err
    assert not gallery.exists()  # refused before the gallery was touched
    assert main(["enroll", str(mfn_package), group, "--gallery", str(gallery), "--name", "obama",
                 "--pick", "largest"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["added"] == 1 and summary["embeddings"] == 1 and summary["used"] == [group]


@needs_fixtures(IMAGES)
def test_bulk_enrollment_is_atomic_per_person(mfn_package, tmp_path, capsys) -> None:
    people = tmp_path / "people"
    for person in ("obama", "biden", "rose_leslie"):
        shutil.copytree(IMAGES / "people" / person, people / person)
    shutil.copy(IMAGES / "scenes" / "two_people.jpg", people / "rose_leslie" / "group.jpg")  # makes rose fail
    (people / "empty").mkdir()
    gallery = tmp_path / "g.db"
    assert main(["enroll", str(mfn_package), "--people", str(people), "--gallery", str(gallery), "--quiet"]) == 1
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["enrolled"] == 2 and summary["failed"] == 1 and summary["embeddings_added"] == 6
    by_name = {p["name"]: p for p in summary["people"]}
    assert by_name["obama"]["added"] == 4 and by_name["biden"]["added"] == 2
    assert "group.jpg" in by_name["rose_leslie"]["error"] and by_name["rose_leslie"]["added"] == 0
    assert "1 of 3 people not enrolled (rose_leslie)" in captured.err
    with Gallery(gallery, create=False) as g:
        assert sorted(g.names()) == ["biden", "obama"]  # nothing of rose: her good photos were not written either
    # With --skip-missing the group photo is skipped and the rest of rose is enrolled.
    shutil.rmtree(people / "obama")
    shutil.rmtree(people / "biden")
    assert main(["enroll", str(mfn_package), "--people", str(people), "--gallery", str(gallery), "--quiet",
                 "--skip-missing"]) == 0
    rose = json.loads(capsys.readouterr().out)["people"][0]
    assert rose["added"] == 2 and list(rose["skipped"]) == [str(people / "rose_leslie" / "group.jpg")]


def test_enroll_arguments_are_checked(tiny_package, tmp_path) -> None:
    gallery = str(tmp_path / "g.db")
    assert main(["enroll", str(tiny_package), "--gallery", gallery]) == 1  # neither --name nor --people
    assert main(["enroll", str(tiny_package), "x.jpg", "--gallery", gallery, "--people", str(tmp_path)]) == 1
    assert main(["enroll", str(tiny_package), "--gallery", gallery, "--name", "a"]) == 1
