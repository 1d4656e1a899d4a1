"""Honest branches: the manifest says which branches were trained, the Recognizer routes around the others."""

from __future__ import annotations

import json
import logging
import shutil

import cv2
import numpy as np
import pytest

from btnet_edge.cli.main import main
from btnet_edge.errors import ConfigError
from btnet_edge.evaluation.pairs import all_pairs, write_pairs
from btnet_edge.package.branch_status import BranchStatus, branch_statuses, export_records, routes
from btnet_edge.package.loader import load_package
from btnet_edge.pipeline.align import align_face
from btnet_edge.pipeline.recognizer import Recognizer, main_face

from .conftest import FIXTURES, MFN_PT, needs_fixtures

IMAGES = FIXTURES / "images"


def test_export_records_from_import_reports_and_training_runs() -> None:
    report = {"branches": {"28": {"file": "b28.pt", "sha256": "ab" * 32}}}
    records = export_records([28, 14, 7], "pretrained", report)
    assert [(r["resolution"], r["trained"], r["source"]) for r in records] == [
        (28, True, "checkpoint"), (14, False, "trunk-init"), (7, False, "trunk-init")]
    assert records[0]["file"] == "b28.pt"
    previous = [BranchStatus(28, True, "checkpoint", {"file": "b28.pt"}), BranchStatus(14, False, "trunk-init"),
                BranchStatus(7, False, "trunk-init")]
    trained = export_records([28, 14, 7], "pretrained", {**report, "training": {"resolutions": [7], "faces": 90,
                                                                                 "steps": 400}}, previous)
    assert [(r["trained"], r["source"]) for r in trained] == [(True, "checkpoint"), (False, "trunk-init"),
                                                              (True, "train-branches")]
    assert trained[2]["faces"] == 90
    assert [r["source"] for r in export_records([14], "random", {})] == ["random"]


def test_route_policies() -> None:
    statuses = [BranchStatus(28, True, "checkpoint"), BranchStatus(14, False, "trunk-init"),
                BranchStatus(7, None, "unknown"), BranchStatus(5, False, "random")]
    assert routes(statuses, "trained") == {28: "branch", 14: "upsample", 7: "upsample", 5: "branch"}
    assert set(routes(statuses, "all").values()) == {"branch"}
    assert set(routes(statuses, "none").values()) == {"upsample"}
    with pytest.raises(ConfigError, match="trained"):
        routes(statuses, "best")


def test_random_package_keeps_its_branches(tiny_package) -> None:
    statuses = branch_statuses(load_package(tiny_package).manifest)
    assert [(s.resolution, s.trained, s.source) for s in statuses] == [(28, False, "random"), (14, False, "random"),
                                                                       (7, False, "random")]


def test_info_says_which_branches_are_trained(mfn_package, capsys) -> None:
    assert main(["info", str(mfn_package), "--json"]) == 0
    branches = json.loads(capsys.readouterr().out)["branches"]
    assert [(b["resolution"], b["trained"], b["source"]) for b in branches] == [
        (28, False, "trunk-init"), (14, False, "trunk-init"), (7, False, "trunk-init")]
    assert main(["info", str(mfn_package)]) == 0
    text = capsys.readouterr().out
    assert text.count("NOT trained: initialised from the trunk") == 3 and "train-branches" in text


def test_old_manifest_without_records_reads_as_unknown(mfn_package, tmp_path, capsys) -> None:
    old = tmp_path / "old"
    shutil.copytree(mfn_package, old)
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["branch_training"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    statuses = branch_statuses(load_package(old).manifest)  # still loads, hashes verified
    assert {(s.trained, s.source) for s in statuses} == {(None, "unknown")}
    assert main(["info", str(old)]) == 0
    assert capsys.readouterr().out.count("unknown: the manifest predates per-branch records") == 3
    with Recognizer(old, detector=None) as recognizer:
        assert set(recognizer.routes.values()) == {"upsample"}


@pytest.fixture(scope="module")
def small_obama() -> np.ndarray:
    path = IMAGES / "people" / "obama" / "obama1.jpg"
    if not path.is_file():
        pytest.skip(f"fixtures absent: {path}")
    return cv2.imread(str(path))


@needs_fixtures(IMAGES)
def test_untrained_branch_faces_take_the_upsample_route(mfn_package, small_obama) -> None:
    with Recognizer(mfn_package) as default, Recognizer(mfn_package, branches="all") as forced:
        full = main_face(default.get(small_obama))
        assert full.route == "trunk" and full.resolution == 112
        scale = 13.0 / full.face_size
        frame = cv2.resize(small_obama, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        runs = dict(default.runner.runs)
        face = main_face(default.get(frame))
        assert face.resolution == 14 and face.route == "upsample"  # size class 14, embedded by the trunk at 112
        assert default.runner.runs["branch_14"] == runs["branch_14"]  # the untrained branch did not run
        upsampled = default.embed(align_face(frame, face.kps, 112), 112)[0]
        assert np.abs(upsampled - face.normed_embedding).max() < 1e-4
        assert face.to_json()["route"] == "upsample" and len(face.to_json()["kps"]) == 5
        branch_face = main_face(forced.get(frame))
        assert branch_face.route == "branch" and branch_face.resolution == 14
        assert float(branch_face.normed_embedding @ face.normed_embedding) < 0.9999  # a different path really ran


@needs_fixtures(IMAGES / "people")
def test_eval_pairs_default_rows_equal_upsample_for_an_untrained_package(mfn_package, tmp_path) -> None:
    people = tmp_path / "people"
    for person in ("obama", "biden", "kit_harington"):
        shutil.copytree(IMAGES / "people" / person, people / person)
    pairs = write_pairs(all_pairs(people), tmp_path / "pairs" / "PAIRS.csv")
    out = tmp_path / "pairs.json"
    assert main(["eval-pairs", str(mfn_package), "--pairs", str(pairs), "--resolutions", "112,14", "--method", "all",
                 "--folds", "2", "--json", str(out), "--quiet"]) == 0
    rows = {(r["res_a"], r["res_b"], r["method"]): r for r in json.loads(out.read_text())["rows"]}
    for pair in ((112, 14), (14, 14)):
        assert rows[(*pair, "default")]["route"] == "upsample"
        assert rows[(*pair, "default")]["auc"] == rows[(*pair, "upsample")]["auc"]
        assert rows[(*pair, "default")]["same_face_cosine"] == rows[(*pair, "upsample")]["same_face_cosine"]
        assert rows[(*pair, "branch")]["same_face_cosine"] != rows[(*pair, "upsample")]["same_face_cosine"]
    # The same package with its 14 px branch recorded as trained: default rows now follow the branch.
    trained = tmp_path / "trained"
    shutil.copytree(mfn_package, trained)
    manifest = json.loads((trained / "manifest.json").read_text())
    for record in manifest["branch_training"]:
        if record["resolution"] == 14:
            record.update(trained=True, source="checkpoint", file="branch_14.pt", sha256="0" * 64)
    (trained / "manifest.json").write_text(json.dumps(manifest))
    assert main(["eval-pairs", str(trained), "--pairs", str(pairs), "--resolutions", "112,14", "--method", "all",
                 "--folds", "2", "--json", str(out), "--quiet"]) == 0
    rows = {(r["res_a"], r["res_b"], r["method"]): r for r in json.loads(out.read_text())["rows"]}
    for pair in ((112, 14), (14, 14)):
        assert rows[(*pair, "default")]["route"] == "branch"
        assert rows[(*pair, "default")]["same_face_cosine"] == rows[(*pair, "branch")]["same_face_cosine"]


@needs_fixtures(MFN_PT)
def test_export_without_branch_weights_warns_and_records_it(tmp_path, caplog) -> None:
    out = tmp_path / "mfn"
    with caplog.at_level(logging.WARNING):
        assert main(["export", "--arch", "mobilefacenet", "--trunk", str(MFN_PT), "--resolutions", "14",
                     "--out", str(out), "--no-parity", "--quiet"]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "[14]" in r.getMessage()]
    assert len(warnings) == 1 and "train-branches" in warnings[0]
    (status,) = branch_statuses(load_package(out).manifest)
    assert (status.resolution, status.trained, status.source) == (14, False, "trunk-init")
