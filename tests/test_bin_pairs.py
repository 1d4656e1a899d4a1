"""eval-pairs --bin: insightface verification sets read with a restricted unpickler; code payloads refused."""

from __future__ import annotations

import importlib.util
import json
import os
import pickle

import numpy as np
import pytest

from btnet_edge.cli.main import main
from btnet_edge.evaluation.bin_pairs import UnsafeBinError, read_bin

from .conftest import FIXTURES, ROOT, needs_fixtures

PEOPLE = FIXTURES / "images" / "people"


def _make_bin():
    spec = importlib.util.spec_from_file_location("make_bin", ROOT / "tools" / "make_bin.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_bin


@pytest.fixture(scope="module")
def people_bin(tmp_path_factory):
    if not PEOPLE.exists():
        pytest.skip(f"fixtures absent: {PEOPLE}")
    out = tmp_path_factory.mktemp("bin") / "people.bin"
    images, issame = _make_bin()(PEOPLE, out)
    return out, images, issame


@needs_fixtures(PEOPLE)
def test_bin_rows_equal_the_same_crops_given_as_a_pairs_file(mfn_package, people_bin, tmp_path):
    path, images, issame = people_bin
    assert read_bin(path) == (images, issame) and 10 <= sum(issame) < len(issame)
    crops = tmp_path / "crops"
    crops.mkdir()
    lines = ["img1,img2,same"]
    for i, same in enumerate(issame):  # the very JPEG bytes of the .bin, as files
        for j in (2 * i, 2 * i + 1):
            (crops / f"{j}.jpg").write_bytes(images[j])
        lines.append(f"{2 * i}.jpg,{2 * i + 1}.jpg,{int(same)}")
    (crops / "PAIRS.csv").write_text("\n".join(lines) + "\n")
    common = ["--resolutions", "112,28,14,7", "--method", "all", "--quiet"]
    assert main(["eval-pairs", str(mfn_package), "--bin", str(path), "--json", str(tmp_path / "bin.json"),
                 "--plot", str(tmp_path / "bin.png"), *common]) == 0
    assert main(["eval-pairs", str(mfn_package), "--pairs", str(crops / "PAIRS.csv"), "--inputs", "crop",
                 "--json", str(tmp_path / "csv.json"), *common]) == 0
    from_bin = json.loads((tmp_path / "bin.json").read_text())
    from_csv = json.loads((tmp_path / "csv.json").read_text())["rows"]
    rows = from_bin["rows"]
    assert [(r["res_a"], r["res_b"], r["method"]) for r in rows][:6] == [
        (112, 112, "branch"), (112, 112, "upsample"), (112, 112, "default"),
        (112, 28, "branch"), (112, 28, "upsample"), (112, 28, "default")]
    assert {(r["res_a"], r["res_b"]) for r in rows} == {(112, 112), (112, 28), (28, 28), (112, 14), (14, 14),
                                                         (112, 7), (7, 7)}
    assert len(rows) == len(from_csv)
    for a, b in zip(rows, from_csv):
        assert a["set"] == "people"
        assert {k: v for k, v in a.items() if k != "set"} == b  # the same faces, the same numbers
    trunk = rows[0]
    assert trunk["accuracy"] >= 0.9 and trunk["tar_at_far"]["1e-2"] > 0.5  # real MobileFaceNet on real faces
    assert rows[-2]["accuracy"] <= trunk["accuracy"]  # 7&7 is harder than 112&112
    assert from_bin["env"]["bin_files"] == [str(path)]
    assert (tmp_path / "bin.png").stat().st_size > 10_000


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_bin_carrying_code_is_refused_without_running_it(tiny_package, tmp_path, capsys):
    marker = tmp_path / "ran"
    evil = tmp_path / "lfw.bin"
    evil.write_bytes(pickle.dumps(([b"x", b"y"], [_Payload(marker)]), protocol=2))
    with pytest.raises(UnsafeBinError, match=r"posix\.system|os\.system|refused"):
        read_bin(evil)
    assert main(["eval-pairs", str(tiny_package), "--bin", str(evil), "--quiet"]) != 0
    assert "refused" in capsys.readouterr().err
    assert not marker.exists()  # nothing ran
    builtin = tmp_path / "eval.bin"  # eval of a string, hidden as the flags
    builtin.write_bytes(b"\x80\x02cbuiltins\neval\nq\x00X\x0b\x00\x00\x00print('hi')q\x01\x85q\x02Rq\x03.")
    with pytest.raises(UnsafeBinError, match=r"builtins\.eval"):
        read_bin(builtin)


def test_only_bytes_and_bools_pass(tmp_path):
    good = tmp_path / "good.bin"
    good.write_bytes(pickle.dumps(([b"a", b"b", b"c", b"d"], np.array([True, False])), protocol=2))
    assert read_bin(good) == ([b"a", b"b", b"c", b"d"], [True, False])  # numpy bool flags: admitted
    objects = tmp_path / "objects.bin"
    objects.write_bytes(pickle.dumps(([b"a", b"b"], np.array([True], dtype=object)), protocol=2))
    with pytest.raises(UnsafeBinError, match="object"):
        read_bin(objects)
    text = tmp_path / "text.bin"
    text.write_bytes(pickle.dumps((["a", "b"], [True]), protocol=4))
    with pytest.raises(UnsafeBinError, match="bytes"):
        read_bin(text)
    odd = tmp_path / "odd.bin"
    odd.write_bytes(pickle.dumps(([b"a", b"b", b"c"], [True]), protocol=4))
    with pytest.raises(Exception, match="3 images for 1 pairs"):
        read_bin(odd)
