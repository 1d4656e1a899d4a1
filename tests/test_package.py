"""Package verification: tampered, missing or malformed files get clear errors."""

from __future__ import annotations

import json
import shutil

import pytest

from btnet_edge.cli.main import main
from btnet_edge.errors import ManifestError, PackageError
from btnet_edge.package.loader import load_package


@pytest.fixture
def package_copy(tiny_package, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(tiny_package, target)
    return target


def test_a_tampered_graph_is_refused(package_copy, capsys):
    path = package_copy / "branch_14.onnx"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(PackageError, match="sha256"):
        load_package(package_copy)
    assert main(["info", str(package_copy)]) == 1
    err = capsys.readouterr().err
    assert "branch_14.onnx" in err and "Re-export" in err


def test_a_missing_graph_is_refused(package_copy):
    (package_copy / "trunk.onnx").unlink()
    with pytest.raises(PackageError, match=r"lacks trunk\.onnx"):
        load_package(package_copy)


def test_corrupt_manifest_json(package_copy):
    (package_copy / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        load_package(package_copy)


@pytest.mark.parametrize("edit,message", [
    (lambda d: d.pop("embedding_size"), "embedding_size is missing"),
    (lambda d: d.__setitem__("schema_version", 99), "schema_version 99"),
    (lambda d: d["preprocess"].__setitem__("std", [0, 1, 1]), "preprocess.std"),
    (lambda d: d["dispatch"].__setitem__("rounding", "round"), "dispatch"),
    (lambda d: d["branches"][0]["output"].__setitem__("shape", [16, -28, 28]), r"branches\[0\].output.shape"),
    (lambda d: d["files"].__setitem__("../evil.onnx", "0" * 64), "plain file name"),
])
def test_manifest_errors_name_the_field(package_copy, edit, message):
    data = json.loads((package_copy / "manifest.json").read_text())
    edit(data)
    (package_copy / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=message):
        load_package(package_copy)


def test_not_a_package(tmp_path, capsys):
    assert main(["info", str(tmp_path)]) == 1
    assert "no manifest.json" in capsys.readouterr().err
