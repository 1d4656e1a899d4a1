"""A package is what its manifest says: graph shapes checked on load, external data only hashed and from the
package, and a gallery's model id that covers the preprocessing and every graph."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from btnet_edge.errors import BackendError, GalleryError, PackageError
from btnet_edge.package.loader import load_package, read_manifest
from btnet_edge.package.manifest import model_id, model_id_text
from btnet_edge.package.onnx_proto import summarize
from btnet_edge.pipeline.gallery import Gallery
from btnet_edge.pipeline.recognizer import Recognizer


def _copy(package: Path, tmp_path: Path, name: str = "copy") -> Path:
    out = tmp_path / name
    shutil.copytree(package, out)
    return out


def _edit(folder: Path, change, rehash: bool = False) -> None:
    path = folder / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    if rehash:
        data["files"] = {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in data["files"]}
    path.write_text(json.dumps(data))


def _face() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 255, (2, 112, 112, 3), dtype=np.uint8)


@pytest.mark.parametrize("field, change", [
    ("color_order", lambda d: d["preprocess"].update(color_order="BGR" if d["preprocess"]["color_order"] == "RGB"
                                                     else "RGB")),
    ("mean", lambda d: d["preprocess"].update(mean=[v + 1 for v in d["preprocess"]["mean"]])),
    ("std", lambda d: d["preprocess"].update(std=[v * 2 for v in d["preprocess"]["std"]])),
    ("flip_tta", lambda d: d["preprocess"].update(flip_tta=not d["preprocess"].get("flip_tta", False))),
    ("branch graph", lambda d: d["files"].update({d["branches"][0]["file"]: "0" * 64})),
    ("trunk graph", lambda d: d["files"].update({d["trunk"]["file"]: "1" * 64})),
])
def test_model_id_covers_preprocessing_and_graphs(tiny_package, tmp_path, field, change):
    original = read_manifest(tiny_package)
    copy = _copy(tiny_package, tmp_path)
    _edit(copy, change)
    assert model_id(read_manifest(copy)) != model_id(original), field


def test_model_id_ignores_what_does_not_change_an_embedding(tiny_package, tmp_path):
    copy = _copy(tiny_package, tmp_path)
    _edit(copy, lambda d: (d.update(name="renamed"), d["dispatch"].update(rounding="floor")))
    assert model_id(read_manifest(copy)) == model_id(read_manifest(tiny_package))
    text = model_id_text(read_manifest(tiny_package))
    assert text.startswith("btnet-edge model id 2\n") and text.count("\ngraph ") == 4  # trunk + 3 branches


def test_an_edited_preprocessing_is_refused_with_an_existing_gallery(tiny_package, tmp_path):
    """The probe: colour order edited in the manifest, scores fell from 1.0 to 0.89 and nothing said so."""
    manifest = read_manifest(tiny_package)
    with Recognizer(tiny_package) as recognizer:
        embeddings = recognizer.embed(_face(), 112)
    with Gallery(tmp_path / "g.db", embedding_size=manifest.embedding_size, model_id=model_id(manifest)) as gallery:
        gallery.enroll("ada", embeddings)
        copy = _copy(tiny_package, tmp_path)
        _edit(copy, lambda d: d["preprocess"].update(color_order="BGR" if d["preprocess"]["color_order"] == "RGB"
                                                     else "RGB"))
        with pytest.raises(GalleryError, match="was enrolled with model"):
            Recognizer(copy, gallery=gallery)
        Recognizer(tiny_package, gallery=gallery).close()


def test_a_gallery_with_the_old_kind_of_id_says_to_re_enroll(tiny_package, tmp_path):
    manifest = read_manifest(tiny_package)
    old_id = f"{manifest.architecture}:trunk-sha256:{manifest.files[manifest.trunk.file][:16]}"
    with Gallery(tmp_path / "old.db", embedding_size=manifest.embedding_size, model_id=old_id) as gallery:
        with pytest.raises(GalleryError, match=r"enrolled by btnet-edge 0\.1.*re-enroll the people"):
            Recognizer(tiny_package, gallery=gallery)


def test_graph_summary_matches_the_manifest(tiny_package):
    manifest = read_manifest(tiny_package)
    trunk = summarize((tiny_package / manifest.trunk.file).read_bytes())
    assert sorted(i.name for i in trunk.inputs) == sorted(t.name for t in manifest.trunk.inputs)
    assert [o.dims[1:] for o in trunk.outputs] == [(manifest.embedding_size,)]
    assert trunk.external_files == set()


@pytest.mark.parametrize("label, change, says", [
    ("embedding size", lambda d: (d.update(embedding_size=32), d["trunk"]["output"].update(shape=[32])),
     r"output embedding is \[N, 64\] in the graph but \[N, 32\] in the manifest"),
    ("branch resolution", lambda d: (d["branches"][1].update(resolution=16),
                                     d["branches"][1]["input"].update(shape=[3, 16, 16]),
                                     d["trunk"].update(entry_resolutions=[16 if r == 14 else r
                                                                          for r in d["trunk"]["entry_resolutions"]])),
     r"input image_14 is \[N, 3, 14, 14\] in the graph but \[N, 3, 16, 16\]"),
    ("implant shape", lambda d: d["branches"][0]["output"].update(shape=[8, 28, 28]),
     r"output implant_28 is \[N, 16, 28, 28\] in the graph but \[N, 8, 28, 28\]"),
    ("input name", lambda d: d["branches"][0]["input"].update(name="pixels"), r"has inputs \['image_28'\]"),
])
def test_a_manifest_that_disagrees_with_its_graphs_is_refused(tiny_package, tmp_path, label, change, says):
    copy = _copy(tiny_package, tmp_path)
    _edit(copy, change)
    read_manifest(copy)  # valid on its own: only the graphs contradict it
    with pytest.raises(PackageError, match=says):
        load_package(copy)


def _external(package: Path, tmp_path: Path, location: str = "trunk.weights") -> Path:
    """The package with its trunk's weights moved into an external data file (as exporters of >2 GB models do)."""
    onnx = pytest.importorskip("onnx")
    copy = _copy(package, tmp_path, "external")
    model = onnx.load(str(copy / "trunk.onnx"))
    onnx.save_model(model, str(copy / "trunk.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=location, size_threshold=0, convert_attribute=True)
    return copy


def test_external_data_the_manifest_does_not_hash_is_refused(tiny_package, tmp_path):
    copy = _external(tiny_package, tmp_path)
    assert summarize((copy / "trunk.onnx").read_bytes()).external_files == {"trunk.weights"}
    _edit(copy, lambda d: None, rehash=True)  # trunk.onnx re-hashed, trunk.weights not listed
    with pytest.raises(PackageError, match=r"external data file 'trunk\.weights', which the manifest does not hash"):
        load_package(copy)


def test_hashed_external_data_is_read_from_the_package_not_the_current_folder(tiny_package, tmp_path, monkeypatch):
    """The probe: the same package gave cosine 0.31 between two folders, from a same-named file in each."""
    copy = _external(tiny_package, tmp_path)
    _edit(copy, lambda d: d["files"].update({"trunk.weights": ""}), rehash=True)
    with Recognizer(tiny_package) as recognizer:
        expected = recognizer.embed(_face(), 112)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    weights = (copy / "trunk.weights").read_bytes()
    (elsewhere / "trunk.weights").write_bytes(bytes(b ^ 0x55 for b in weights[:4096]) + weights[4096:])
    monkeypatch.chdir(elsewhere)
    with Recognizer(copy) as recognizer:
        got = recognizer.embed(_face(), 112)
    assert np.allclose(got, expected, atol=1e-5)
    (copy / "trunk.weights").write_bytes(bytes([weights[0] ^ 1]) + weights[1:])
    with pytest.raises(PackageError, match="does not match its sha256"):
        load_package(copy)


def test_external_data_outside_the_package_is_refused(tiny_package, tmp_path):
    onnx = pytest.importorskip("onnx")
    copy = _external(tiny_package, tmp_path)
    model = onnx.load(str(copy / "trunk.onnx"), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../trunk.weights"  # onnx refuses to write this; a crafted file is not so polite
    (copy / "trunk.onnx").write_bytes(model.SerializeToString())
    shutil.copyfile(copy / "trunk.weights", tmp_path / "trunk.weights")
    _edit(copy, lambda d: d["files"].update({"trunk.weights": ""}), rehash=True)
    with pytest.raises(PackageError, match=r"'\.\./trunk\.weights', outside the package folder"):
        load_package(copy)


def test_onnx_runtime_from_bytes_never_reads_external_data_unverified(tiny_package, tmp_path):
    from btnet_edge.backends.ort import OrtBackend

    copy = _external(tiny_package, tmp_path)
    backend = OrtBackend(copy / "trunk.onnx", read_model=lambda: (copy / "trunk.onnx").read_bytes())
    with pytest.raises(BackendError, match="external data"):
        backend.load()
