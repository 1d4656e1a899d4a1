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
