"""The manifest validator rejects each malformed field with one line naming it; export checks its options first."""

from __future__ import annotations

import copy
import json
import math

import pytest

from btnet_edge.cli.main import main
from btnet_edge.errors import ManifestError
from btnet_edge.package.manifest import manifest_from_json


def _set(path: str, value):
    def change(data: dict) -> None:
        *parents, last = path.split("/")
        for key in parents:
            data = data[int(key)] if isinstance(data, list) else data[key]
        if isinstance(data, list):
            data[int(last)] = value
        else:
            data[last] = value
    return change


# (change, the field the one-line message must name)
CASES = {
    "opset as words": (_set("opset", "seventeen"), "opset"),
    "opset zero": (_set("opset", 0), "opset"),
    "resolution as a string": (_set("branches/0/resolution", "14"), "branches[0].resolution"),
    "resolution huge": (_set("branches/0/resolution", 100000), "branches[0].resolution"),
    "resolution negative": (_set("branches/0/resolution", -7), "branches[0].resolution"),
    "entry resolutions as a string": (_set("trunk/entry_resolutions", "112,28,14,7"), "trunk.entry_resolutions"),
    "entry resolution huge": (_set("trunk/entry_resolutions/1", 100000), "trunk.entry_resolutions[1]"),
    "int where the inputs list belongs": (_set("trunk/inputs", 3), "trunk.inputs"),
    "int where a shape belongs": (_set("branches/0/input/shape", 28), "branches[0].input.shape"),
    "huge input side": (_set("branches/0/input/shape", [3, 100000, 100000]), "branches[0].input.shape[1]"),
    "branch input not its resolution": (_set("branches/0/input/shape", [3, 20, 20]), "input.shape"),
    "embedding size negative": (_set("embedding_size", -1), "embedding_size"),
    "embedding size not the trunk's": (_set("embedding_size", 7), "trunk.output.shape"),
    "std NaN": (_set("preprocess/std", [math.nan, 1.0, 1.0]), "preprocess.std"),
    "std zero": (_set("preprocess/std", [0, 0, 0]), "preprocess.std"),
    "mean infinite": (_set("preprocess/mean", [math.inf, 0, 0]), "preprocess.mean"),
    "mean of two": (_set("preprocess/mean", [1, 2]), "preprocess.mean"),
    "flip_tta as a string": (_set("preprocess/flip_tta", "false"), "preprocess.flip_tta"),
    "a branch that is a number": (_set("branches/0", 5), "branches[0]"),
    "fused as a number": (_set("fused", 3), "fused"),
    "dispatch as a string": (_set("dispatch", "max"), "dispatch"),
    "hash not hex": (_set("files/trunk.onnx", "abc"), "files['trunk.onnx']"),
    "colour order lower case": (_set("preprocess/color_order", "rgb"), "preprocess.color_order"),
    "name as a number": (_set("name", 3), "name"),
}


@pytest.fixture(scope="module")
def manifest_json(tiny_package) -> dict:
    return json.loads((tiny_package / "manifest.json").read_text())


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_bad_field_is_named_in_one_line(manifest_json, case):
    change, field = CASES[case]
    data = copy.deepcopy(manifest_json)
    manifest_from_json(data)  # the untouched manifest is valid
    change(data)
    with pytest.raises(ManifestError) as info:
        manifest_from_json(json.loads(json.dumps(data)))  # through JSON, as read from disk (NaN included)
    message = str(info.value)
    assert field in message and "\n" not in message


def test_the_resolution_limit_can_be_raised(manifest_json, monkeypatch):
    data = copy.deepcopy(manifest_json)
    data["trunk"]["entry_resolutions"][1] = 2000
    with pytest.raises(ManifestError, match=r"over the limit of 1024 px.*BTNET_MAX_RESOLUTION"):
        manifest_from_json(data)
    monkeypatch.setenv("BTNET_MAX_RESOLUTION", "4096")
    with pytest.raises(ManifestError, match="branch 28 px has no trunk input"):  # past the limit, the next check
        manifest_from_json(data)


@pytest.mark.parametrize("flags, message", [
    (["--std", "0,0,0"], "--std should be positive"),
    (["--std", "nan,1,1"], "--std should be three finite numbers"),
    (["--mean", "inf,0,0"], "--mean should be three finite numbers"),
])
def test_export_checks_its_options_before_writing(tmp_path, capsys, flags, message):
    out = tmp_path / "pkg"
    assert main(["export", "--arch", "test_btnet", "--out", str(out), "--quiet", *flags]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert list(tmp_path.iterdir()) == []


def test_export_force_never_empties_the_current_folder_or_a_foreign_one(tmp_path, monkeypatch, capsys):
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "thesis.tex").write_text("years of work")
    monkeypatch.chdir(thesis)
    assert main(["export", "--arch", "test_btnet", "--out", ".", "--force", "--quiet"]) == 1
    assert "current folder" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)
    assert main(["export", "--arch", "test_btnet", "--out", str(thesis), "--force", "--quiet"]) == 1
    assert "not made by btnet-edge" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis"]
    assert [p.name for p in thesis.iterdir()] == ["thesis.tex"]
