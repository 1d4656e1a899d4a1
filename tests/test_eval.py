"""eval-pairs and eval-ident on the fixtures' people with the real MobileFaceNet package."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from btnet_edge.cli.main import main
from btnet_edge.errors import ConfigError
from btnet_edge.evaluation.pairs import all_pairs, is_aligned_crop, read_pairs, resolution_pairs, write_pairs

from .conftest import FIXTURES, needs_fixtures

PEOPLE = FIXTURES / "images" / "people"
HELD_OUT = "alex_lacamoire"  # no gallery folder: the unmated probes


def test_resolution_pairs_and_crop_rule():
    assert resolution_pairs([112, 28, 14, 7]) == [(112, 112), (112, 28), (28, 28), (112, 14), (14, 14), (112, 7),
                                                  (7, 7)]
    assert is_aligned_crop(np.zeros((112, 112, 3), np.uint8), "auto")
    assert not is_aligned_crop(np.zeros((1200, 1200, 3), np.uint8), "auto")  # a square photo is still a photo
    assert is_aligned_crop(np.zeros((1200, 1200, 3), np.uint8), "crop")


def test_pairs_csv_is_checked(tmp_path):
    bad = tmp_path / "pairs.csv"
    bad.write_text("a,b,same\nx.jpg,y.jpg,1\n")
    with pytest.raises(ConfigError, match="img1,img2,same"):
        read_pairs(bad)


@needs_fixtures(PEOPLE)
def test_eval_pairs_all_resolutions_both_methods(mfn_package, tmp_path):
    pairs_csv = write_pairs(all_pairs(PEOPLE), tmp_path / "pairs" / "PAIRS.csv")
    assert len(read_pairs(pairs_csv)) == 66  # 12 photos: 10 same, 56 different
    out, plot = tmp_path / "eval.json", tmp_path / "roc.png"
    code = main(["eval-pairs", str(mfn_package), "--pairs", str(pairs_csv), "--json", str(out), "--plot", str(plot),
                 "--quiet"])
    assert code == 0
    document = json.loads(out.read_text())
    assert set(document) == {"rows", "env"}
    rows = document["rows"]
    combos = {(r["res_a"], r["res_b"], r["method"]) for r in rows}
    assert combos == {(a, b, m) for a, b in resolution_pairs([112, 28, 14, 7]) for m in ("branch", "upsample")}
    for row in rows:
        assert set(row) >= {"res_a", "res_b", "method", "accuracy", "auc", "tar_at_far"}
        assert set(row["tar_at_far"]) == {"1e-2", "1e-3"}
        assert all(0.0 <= v <= 1.0 for v in (row["accuracy"], row["auc"], *row["tar_at_far"].values()))
        assert row["pairs"] == 66 and row["same_pairs"] == 10
    trunk = next(r for r in rows if r["res_a"] == r["res_b"] == 112)
    assert trunk["auc"] >= 0.95 and trunk["accuracy"] >= 0.9  # real weights on ordinary photos
    assert document["env"]["faces"] == 12 and document["env"]["package_name"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture()
def split_people(tmp_path) -> tuple[Path, Path]:
    """Gallery: the first photo of each person but one; probes: the rest, and the held-out person (unmated)."""
    gallery, probes = tmp_path / "gallery", tmp_path / "probes"
    for person in sorted(p for p in PEOPLE.iterdir() if p.is_dir()):
        photos = sorted(person.iterdir())
        chosen = [] if person.name == HELD_OUT else photos[:1]
        for photo in photos:
            target = (gallery if photo in chosen else probes) / person.name / photo.name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(photo, target)
    return gallery, probes


@needs_fixtures(PEOPLE)
def test_eval_ident_table_for_every_policy(mfn_package, split_people, tmp_path):
    gallery, probes = split_people
    out = tmp_path / "ident.json"
    assert main(["eval-ident", str(mfn_package), "--gallery-dir", str(gallery), "--probes-dir", str(probes),
                 "--json", str(out), "--quiet"]) == 0
    document = json.loads(out.read_text())
    env = document["env"]
    assert (env["gallery_identities"], env["mated_probes"], env["unmated_probes"]) == (4, 6, 2)
    rows = document["rows"]
    assert [(r["indicator"], r["rounding"]) for r in rows] == [
        (i, r) for i in ("max", "avg", "min") for r in ("floor", "near", "ceil")]
    for row in rows:
        assert set(row["tpir20_at_fpir"]) == {"0.3", "0.2", "0.1"} and 0.0 <= row["auc"] <= 1.0
        assert sum(row["probe_resolutions"].values()) == 8
        if row["indicator"] == "max":
            assert row["probe_resolutions"] == {"112": 8}  # photos: every face's long side is above 112 px
        assert row["tpir1_at_fpir"]["0.3"] >= 0.8  # the 112 trunk finds the mates above both strangers


@needs_fixtures(PEOPLE)
def test_eval_ident_small_probes_follow_the_dispatch_policy(mfn_package, split_people, tmp_path):
    gallery, probes = split_people
    out = tmp_path / "ident.json"
    assert main(["eval-ident", str(mfn_package), "--gallery-dir", str(gallery), "--probes-dir", str(probes),
                 "--probe-face-px", "12", "--json", str(out), "--quiet"]) == 0
    rows = {(r["indicator"], r["rounding"]): r for r in json.loads(out.read_text())["rows"]}
    # a 12 px face (long side): ceil -> 14 (8..14), near -> 14 (11..21), floor -> 7 (<14)
    assert rows[("max", "ceil")]["probe_resolutions"] == {"14": 8}
    assert rows[("max", "near")]["probe_resolutions"] == {"14": 8}
    assert rows[("max", "floor")]["probe_resolutions"] == {"7": 8}


def _crops_of_people(size_of):
    """(identity, file name, BGR crop) for every fixture person's photo: the main face aligned, at size_of(i) px."""
    import cv2

    from btnet_edge.pipeline.align import align_face
    from btnet_edge.pipeline.detect import create_detector
    from btnet_edge.pipeline.image import read_image

    out = []
    with create_detector() as detector:
        for person in sorted(p for p in PEOPLE.iterdir() if p.is_dir()):
            for n, photo in enumerate(sorted(person.iterdir())):
                image = read_image(photo)
                best = max(detector.detect(image), key=lambda d: d.width * d.height)
                size = size_of(len(out))
                out.append((person.name, n, cv2.resize(align_face(image, best.kps, 112), (size, size),
                                                       interpolation=cv2.INTER_AREA)))
    return out


@needs_fixtures(PEOPLE)
def test_eval_ident_reads_the_survface_and_tinyface_protocol_folders(mfn_package, tmp_path):
    import cv2

    scipy_io = pytest.importorskip("scipy.io")
    crops = _crops_of_people(lambda i: (24, 12, 40)[i % 3])  # surveillance-sized faces: the image is the face
    people = sorted({c[0] for c in crops})
    ids = {name: i + 1 for i, name in enumerate(people)}
    unmated_person = people[-1]
    base = tmp_path / "survface" / "Face_Identification_Test_Set"
    gallery_rows, mated_rows = [], []
    for name, n, crop in crops:
        folder = "unmated_probe" if name == unmated_person else "gallery" if n == 0 else "mated_probe"
        (base / folder).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(base / folder / f"{name}_{n}.jpg"), crop)
        if folder != "unmated_probe":
            (gallery_rows if folder == "gallery" else mated_rows).append((f"{name}_{n}.jpg", ids[name]))
    for stem, rows in (("gallery", gallery_rows), ("mated_probe", mated_rows)):
        names = np.empty((len(rows), 1), dtype=object)
        names[:, 0] = [r[0] for r in rows]
        scipy_io.savemat(str(base / f"{stem}_img_ID_pairs.mat"),
                         {f"{stem}_set": names, f"{stem}_ids": np.array([[r[1]] for r in rows], dtype=np.float64)})
    out = tmp_path / "survface.json"
    assert main(["eval-ident", str(mfn_package), "--survface", str(tmp_path / "survface"), "--json", str(out),
                 "--quiet"]) == 0
    document = json.loads(out.read_text())
    env = document["env"]
    assert (env["gallery_identities"], env["gallery_faces"]) == (len(people) - 1, len(people) - 1)
    assert env["mated_probes"] == len(mated_rows) and env["unmated_probes"] == sum(c[0] == unmated_person
                                                                                   for c in crops)
    assert env["probe_face_size_px"] == {"min": 12.0, "max": 40.0}  # the crops' own sizes pick the branches
    rows = {(r["indicator"], r["rounding"]): r for r in document["rows"]}
    probe_sizes = [c[2].shape[0] for c in crops if c[0] == unmated_person or c[1] != 0]
    for rounding, route in (("ceil", {40: "112", 24: "28", 12: "14"}), ("floor", {40: "28", 24: "14", 12: "7"})):
        expected: dict = {}
        for size in probe_sizes:
            expected[route[size]] = expected.get(route[size], 0) + 1
        assert rows[("max", rounding)]["probe_resolutions"] == expected  # the crop's own size picks the branch
    assert all(0.0 <= r["auc"] <= 1.0 and r["rank_k"]["20"] == 1.0 for r in rows.values())  # 4 identities: rank 20

    tiny = tmp_path / "tinyface" / "Testing_Set"
    for name, n, crop in crops:
        folder = "Gallery_Distractor" if name == unmated_person else "Gallery_Match" if n == 0 else "Probe"
        (tiny / folder).mkdir(parents=True, exist_ok=True)
        stem = f"d{n}" if folder == "Gallery_Distractor" else f"{ids[name]}_{n}"
        cv2.imwrite(str(tiny / folder / f"{stem}.jpg"), crop)
    out = tmp_path / "tinyface.json"
    assert main(["eval-ident", str(mfn_package), "--tinyface", str(tmp_path / "tinyface"), "--json", str(out),
                 "--quiet"]) == 0
    document = json.loads(out.read_text())
    distractors = sum(c[0] == unmated_person for c in crops)
    assert document["env"]["gallery_faces"] == len(people) - 1 + distractors
    assert document["env"]["unmated_probes"] == 0 and document["env"]["mated_probes"] == len(mated_rows)
    for row in document["rows"]:
        assert row["auc"] is None and row["tpir20_at_fpir"]["0.1"] is None
        ranks = [row["rank_k"][k] for k in ("1", "5", "10", "20")]
        assert ranks == sorted(ranks) and ranks[-1] == 1.0  # CMC rises; 6 gallery entries: rank 20 finds all
