"""One copy of the weights: the PyTorch model comes back from the package's ONNX files; old packages still load."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from btnet_edge.export.package_weights import FOLDED_BATCHNORM, LEGACY_WEIGHTS, btnet_from_package  # noqa: E402
from btnet_edge.package.loader import load_package, sha256_of  # noqa: E402


def _same_network(a, b, atol: float) -> None:
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for r in (112, *a.resolutions):
            x = torch.randn(2, 3, r, r, generator=generator)
            assert torch.allclose(a.embed(x, r), b.embed(x, r), atol=atol), r


def test_weights_come_back_from_the_graphs_with_their_batchnorm(tiny_package, tiny_net):
    rebuilt = btnet_from_package(load_package(tiny_package))
    ours, theirs = tiny_net.state_dict(), rebuilt.state_dict()
    # folded BNs restored from batchnorm.npz, convs unfolded: the training state, not just the function
    for key in ours:
        if not key.endswith("num_batches_tracked"):
            assert torch.allclose(ours[key], theirs[key], rtol=1e-5, atol=1e-6), key
    _same_network(tiny_net, rebuilt, atol=1e-5)
    manifest = load_package(tiny_package).manifest
    assert manifest.extra["weights_from_graphs"]["max_abs_diff"] < 1e-5


def test_batchnorm_file_holds_only_what_no_graph_holds(tiny_package):
    with np.load(tiny_package / FOLDED_BATCHNORM, allow_pickle=False) as data:
        keys = list(data.files)
    assert keys and all(k.rsplit(".", 1)[1] in ("weight", "bias", "running_mean", "running_var") for k in keys)
    assert not any(".conv" in k.rsplit(".", 2)[-2] or k.endswith("fc.weight") for k in keys)
    assert not (tiny_package / LEGACY_WEIGHTS).exists()
    graphs = sum((tiny_package / n).stat().st_size for n in load_package(tiny_package).manifest.files
                 if n.endswith(".onnx"))
    assert (tiny_package / FOLDED_BATCHNORM).stat().st_size < 0.1 * graphs
    from btnet_edge.cli.info import package_summary

    sizes = package_summary(tiny_package)["file_bytes"]  # what `btnet-edge info` reports
    assert sizes[FOLDED_BATCHNORM] == (tiny_package / FOLDED_BATCHNORM).stat().st_size and set(sizes) == set(
        load_package(tiny_package).manifest.files)


def test_older_packages_with_weights_npz_still_load(tiny_package, tiny_net, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(tiny_package, old)
    arrays = {f"trunk.{k}": v.numpy() for k, v in tiny_net.trunk.state_dict().items()}
    for r in tiny_net.resolutions:
        state = tiny_net.branch(r).state_dict()
        arrays.update({f"branch_{r}.{k}": state[k].numpy() for k in tiny_net.branch_keys(r)})
    np.savez(old / LEGACY_WEIGHTS, **arrays)
    (old / FOLDED_BATCHNORM).unlink()
    data = json.loads((old / "manifest.json").read_text())
    del data["files"][FOLDED_BATCHNORM]
    data["files"][LEGACY_WEIGHTS] = sha256_of(old / LEGACY_WEIGHTS)
    (old / "manifest.json").write_text(json.dumps(data))
    rebuilt = btnet_from_package(load_package(old))
    for key, value in tiny_net.state_dict().items():
        assert torch.equal(value, rebuilt.state_dict()[key]), key


def test_torch_backend_reads_the_graphs_and_matches_onnx_runtime(tiny_package):
    from btnet_edge.pipeline.recognizer import Recognizer

    faces = np.random.default_rng(2).integers(0, 256, (3, 14, 14, 3), dtype=np.uint8)
    with Recognizer(tiny_package, backend="torch") as torch_rec, Recognizer(tiny_package) as ort_rec:
        a, b = torch_rec.embed(faces, 14), ort_rec.embed(faces, 14)
    assert np.sum(a * b, axis=1).min() > 0.99999
