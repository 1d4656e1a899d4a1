"""Export: real ONNX files, checked by onnx.checker, run on ONNX Runtime against PyTorch."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from btnet_edge.backends.ort import OrtBackend  # noqa: E402
from btnet_edge.cli.main import main  # noqa: E402
from btnet_edge.package.loader import load_package  # noqa: E402

from .conftest import MFN_ONNX, needs_fixtures  # noqa: E402


def _trunk_feeds(net, counts: dict[int, int], seed: int = 0) -> dict[str, np.ndarray]:
    g = torch.Generator().manual_seed(seed)
    feeds = {"image_112": torch.randn(counts.get(112, 0), 3, 112, 112, generator=g).numpy()}
    with torch.no_grad():
        for r in net.resolutions:
            feeds[f"implant_{r}"] = net.run_branch(r, torch.randn(counts.get(r, 0), 3, r, r, generator=g)).numpy()
    return feeds


def test_package_files_pass_the_onnx_checker(tiny_package):
    manifest = load_package(tiny_package).manifest
    names = {"trunk.onnx", "branch_28.onnx", "branch_14.onnx", "branch_7.onnx",
             "fused_28.onnx", "fused_14.onnx", "fused_7.onnx"}
    assert set(manifest.files) == names | {"batchnorm.npz"}
    for name in names:
        model = onnx.load(str(tiny_package / name))
        onnx.checker.check_model(model, full_check=True)
        assert model.opset_import[0].version == 17
    trunk = onnx.load(str(tiny_package / "trunk.onnx"))
    assert [i.name for i in trunk.graph.input] == ["image_112", "implant_28", "implant_14", "implant_7"]
    assert all(i.type.tensor_type.shape.dim[0].dim_param for i in trunk.graph.input)  # dynamic batch


def test_manifest_records_the_contract_fields(tiny_package):
    data = json.loads((tiny_package / "manifest.json").read_text())
    assert data["weights"] == "random" and data["seed"] == 3
    assert data["architecture"] == "test_btnet" and data["embedding_size"] == 64
    assert data["preprocess"] == {"color_order": "RGB", "mean": [127.5] * 3, "std": [127.5] * 3, "flip_tta": False}
    assert data["dispatch"] == {"indicator": "max", "rounding": "ceil"}
    assert data["dispatch_ranges"]["ceil"]["14"] == [8, 14]
    assert [b["output"]["shape"] for b in data["branches"]] == [[16, 28, 28], [32, 14, 14], [64, 7, 7]]
    for name, figures in data["parity"].items():
        assert figures["max_abs_err"] < 1e-4 and figures["min_cosine"] > 0.99999, name


@pytest.mark.parametrize("counts", [
    {112: 2, 28: 1, 14: 3, 7: 2},
    {112: 0, 28: 2, 14: 0, 7: 1},
    {112: 3},
    {7: 1},
    {},
])
def test_trunk_merges_batches_in_input_order_with_empty_inputs(tiny_package, tiny_net, counts):
    feeds = _trunk_feeds(tiny_net, counts)
    with OrtBackend(tiny_package / "trunk.onnx") as trunk:
        merged = trunk.infer(feeds)["embedding"]
    expected = []
    with torch.no_grad():
        expected.append(tiny_net.run_trunk_from(112, torch.from_numpy(feeds["image_112"])))
        for r in tiny_net.resolutions:
            expected.append(tiny_net.run_trunk_from(r, torch.from_numpy(feeds[f"implant_{r}"])))
    expected = torch.cat(expected).numpy()
    assert merged.shape == (sum(counts.values()), 64)
    if expected.size:
        assert np.abs(merged - expected).max() < 1e-4


def test_branch_then_trunk_equals_fused_graph(tiny_package):
    x = np.random.default_rng(1).standard_normal((3, 3, 14, 14)).astype(np.float32)
    with OrtBackend(tiny_package / "branch_14.onnx") as branch, OrtBackend(tiny_package / "trunk.onnx") as trunk, \
            OrtBackend(tiny_package / "fused_14.onnx") as fused:
        feature = branch.infer({"image_14": x})["implant_14"]
        feeds = {"image_112": np.zeros((0, 3, 112, 112), np.float32),
                 "implant_28": np.zeros((0, 16, 28, 28), np.float32),
                 "implant_14": feature, "implant_7": np.zeros((0, 64, 7, 7), np.float32)}
        shared = trunk.infer(feeds)["embedding"]
        single = fused.infer({"image_14": x})["embedding"]
    assert np.abs(shared - single).max() < 1e-4


@needs_fixtures(MFN_ONNX)
def test_mobilefacenet_package_trunk_matches_the_published_onnx(mfn_package):
    manifest = load_package(mfn_package).manifest
    assert manifest.weights == "pretrained" and manifest.preprocess.flip_tta
    assert manifest.preprocess.mean == pytest.approx((123.675, 116.28, 103.53))
    for name, figures in manifest.extra["parity"].items():
        assert figures["max_abs_err"] < 1e-4, name
    x = np.random.default_rng(2).standard_normal((1, 3, 112, 112)).astype(np.float32)
    with OrtBackend(MFN_ONNX) as published, OrtBackend(mfn_package / "trunk.onnx") as ours:
        reference = published.infer({"input0": x})["output0"]
        feeds = {"image_112": x, **{f"implant_{b.resolution}": np.zeros((0, *b.output.shape), np.float32)
                                    for b in manifest.branches}}
        got = ours.infer(feeds)["embedding"]
    assert np.abs(got - reference).max() < 1e-4


def test_cli_export_r18_random_and_info_json(tmp_path, capsys):
    out = tmp_path / "r18"
    assert main(["export", "--arch", "r18", "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["weights"] == "random" and info["architecture"] == "iresnet18"
    assert info["parameters"]["trunk"] == 24_025_600
    assert set(info["parameters"]["branches"]) == {"7", "14", "28"}
    assert info["branch_param_percent"]["28"] == pytest.approx(1.58, abs=0.01)
    for figures in info["parity"].values():
        assert figures["max_abs_err"] < 1e-4


def test_cli_info_reports_the_paper_shares_for_r50(tmp_path, capsys):
    out = tmp_path / "r50"
    assert main(["export", "--arch", "r50", "--out", str(out), "--quiet", "--no-parity"]) == 0
    capsys.readouterr()
    assert main(["info", str(out), "--json"]) == 0
    percent = json.loads(capsys.readouterr().out)["branch_param_percent"]
    assert percent == {"28": pytest.approx(1.04, abs=0.01), "14": pytest.approx(5.19, abs=0.01),
                       "7": pytest.approx(48.85, abs=0.01)}


def test_export_refuses_to_overwrite_and_keeps_the_old_package(tiny_package, tmp_path, capsys):
    before = (tiny_package / "manifest.json").read_bytes()
    code = main(["export", "--arch", "test_btnet", "--out", str(tiny_package), "--quiet"])
    assert code == 1
    assert "--force" in capsys.readouterr().err
    assert (tiny_package / "manifest.json").read_bytes() == before


def test_custom_resolutions_and_preprocess_override(tmp_path, capsys):
    out = tmp_path / "p"
    assert main(["export", "--arch", "test_btnet", "--resolutions", "14", "--out", str(out), "--quiet",
                 "--color-order", "BGR", "--mean", "0,0,0", "--std", "255,255,255", "--flip-tta", "on"]) == 0
    manifest = load_package(out).manifest
    assert manifest.resolutions == [112, 14]
    assert [i.name for i in manifest.trunk.inputs] == ["image_112", "implant_14"]
    assert manifest.preprocess.color_order == "BGR" and manifest.preprocess.std == (255.0, 255.0, 255.0)
    assert manifest.preprocess.flip_tta is True
