"""export --trunk model.onnx: weights recovered by graph structure, preprocessing kept, parity with the source."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from btnet_edge.backends.ort import OrtBackend  # noqa: E402
from btnet_edge.cli.main import main  # noqa: E402
from btnet_edge.package.loader import load_package  # noqa: E402

from .conftest import FIXTURES, MFN_ONNX, needs_fixtures  # noqa: E402

PEOPLE = FIXTURES / "images" / "people"
RESOLUTIONS = (28, 14, 7)


class _Normalized(torch.nn.Module):
    """insightface-style graph that normalizes raw pixels itself: (x - 127.5) * 0.0078125."""

    def __init__(self, trunk) -> None:
        super().__init__()
        self.trunk = trunk

    def forward(self, x):
        return self.trunk((x - 127.5) * 0.0078125)


def _to_onnx(module, path, folded: bool = True):
    """Our trunk as a third party would export it; ``folded`` False keeps every BatchNormalization node."""
    mode = torch.onnx.TrainingMode.EVAL if folded else torch.onnx.TrainingMode.PRESERVE
    module.eval()
    torch.onnx.export(module, (torch.zeros(1, 3, 112, 112),), str(path), input_names=["input.1"], output_names=["fc1"],
                      opset_version=17, dynamo=False, training=mode)
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from btnet_edge.models.btnet import random_btnet

    folder = tmp_path_factory.mktemp("onnx")
    net = random_btnet("test_btnet", RESOLUTIONS, seed=7)
    return net, _to_onnx(net.trunk, folder / "folded.onnx"), _to_onnx(net.trunk, folder / "plain.onnx", folded=False)


def _import(path, arch=None, **flags):
    from types import SimpleNamespace

    from btnet_edge.export.onnx_import import btnet_from_onnx

    options = SimpleNamespace(color_order=None, mean=None, std=None, **flags)
    return btnet_from_onnx(path, arch, RESOLUTIONS, options)


def _ops(path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def test_unfolded_graph_gives_back_the_exact_weights(tiny):
    net, _, plain = tiny
    assert "BatchNormalization" in _ops(plain)
    rebuilt, report, _ = _import(plain)
    assert rebuilt.arch == "test_btnet" and report["trunk"]["folded_batchnorm"] == 0
    ours, theirs = net.trunk.state_dict(), rebuilt.trunk.state_dict()
    for key in ours:
        if not key.endswith("num_batches_tracked"):
            assert torch.allclose(ours[key], theirs[key], atol=1e-7), key


def test_folded_graph_gives_the_same_network_at_every_resolution(tiny):
    net, folded, _ = tiny
    convs = sum(n.op_type == "Conv" for n in onnx.load(str(folded)).graph.node)
    bns = sum(n.op_type == "BatchNormalization" for n in onnx.load(str(folded)).graph.node)
    rebuilt, report, _ = _import(folded)
    assert report["trunk"]["folded_batchnorm"] == convs  # every conv had its BN folded; the block-first BNs stay
    assert bns > 0
    assert report["trunk"]["parity_vs_source"]["min_cosine"] >= 0.9999
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for r in (112, *RESOLUTIONS):
            x = torch.randn(3, 3, r, r, generator=generator)
            assert torch.allclose(rebuilt.embed(x, r), net.embed(x, r), atol=1e-4), r


def test_batchnorm_epsilon_of_the_source_is_kept_in_the_function(tmp_path):
    """mxnet-era insightface models use BN epsilon 2e-5; ours is 1e-5: the variances absorb the difference."""
    import copy

    from btnet_edge.models.btnet import random_btnet

    trunk = copy.deepcopy(random_btnet("test_btnet", RESOLUTIONS, seed=4).trunk)
    for module in trunk.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eps = 2e-5
    variances = torch.linspace(1e-5, 1e-4, trunk.bn1.num_features)  # where the epsilon matters, per channel
    trunk.bn1.running_var.copy_(variances)
    trunk.bn1.weight.data.copy_(torch.sqrt(variances))  # keep the stem's output in range
    rebuilt, report, _ = _import(_to_onnx(trunk, tmp_path / "eps.onnx", folded=False))
    x = torch.randn(4, 3, 112, 112, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        cosine = torch.nn.functional.cosine_similarity(rebuilt.embed(x), trunk(x))
        assert cosine.min() > 0.999999 and torch.allclose(rebuilt.trunk.bn1.running_var, variances + 1e-5)
    assert report["trunk"]["parity_vs_source"]["min_cosine"] >= 0.9999


def test_r18_folded_export_is_recognized_by_its_structure(tmp_path):
    from btnet_edge.models.btnet import random_btnet

    net = random_btnet("r18", RESOLUTIONS, seed=1)
    rebuilt, report, _ = _import(_to_onnx(net.trunk, tmp_path / "r18.onnx"))
    assert rebuilt.arch == "iresnet18" and report["trunk"]["architecture_from"] == "graph structure"
    assert report["trunk"]["parity_vs_source"]["min_cosine"] >= 0.9999
    assert report["trunk"]["parity_vs_source"]["max_abs_err"] < 1e-3


def test_cli_package_from_onnx_matches_the_source_and_keeps_one_copy(tiny, tmp_path, capsys):
    _, folded, _ = tiny
    out = tmp_path / "pkg"
    assert main(["export", "--trunk", str(folded), "--out", str(out), "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["parity_vs_source"]["min_cosine"] >= 0.9999
    package = load_package(out)
    manifest = package.manifest
    assert manifest.architecture == "test_btnet" and manifest.weights == "pretrained"
    assert manifest.name == "test_btnet.folded"
    assert set(manifest.files) == {"trunk.onnx", "branch_28.onnx", "branch_14.onnx", "branch_7.onnx", "batchnorm.npz"}
    assert manifest.extra["import_report"]["trunk"]["format"] == "onnx"
    preprocess = manifest.extra["import_report"]["trunk"]["preprocess"]
    assert "declared by architecture test_btnet" in preprocess["mean_std_from"]
    pixels = np.random.default_rng(1).uniform(0, 255, (4, 3, 112, 112)).astype(np.float32)
    normalized = (pixels - 127.5) / 127.5
    with OrtBackend(folded) as source, OrtBackend(package.trunk_path) as trunk:
        theirs = np.concatenate([source.infer({"input.1": x[None]})["fc1"] for x in normalized])
        feeds = {t.name: np.zeros((0, *t.shape), np.float32) for t in manifest.trunk.inputs}
        feeds["image_112"] = normalized
        ours = trunk.infer(feeds)["embedding"]
    cosine = np.sum(theirs * ours, 1) / np.linalg.norm(theirs, axis=1) / np.linalg.norm(ours, axis=1)
    assert cosine.min() >= 0.9999 and np.abs(theirs - ours).max() < 1e-3


def test_normalization_inside_the_graph_becomes_the_manifest_preprocessing(tiny, tmp_path, capsys):
    net, _, _ = tiny
    source = _to_onnx(_Normalized(net.trunk), tmp_path / "normalized.onnx")
    assert {"Sub", "Mul"} <= _ops(source)
    out = tmp_path / "pkg"
    assert main(["export", "--trunk", str(source), "--out", str(out), "--quiet", "--color-order", "BGR"]) == 0
    capsys.readouterr()
    manifest = load_package(out).manifest
    assert manifest.preprocess.mean == (127.5, 127.5, 127.5) and manifest.preprocess.std == (128.0, 128.0, 128.0)
    assert manifest.preprocess.color_order == "BGR"
    assert manifest.extra["import_report"]["trunk"]["preprocess"]["mean_std_from"].startswith("graph (Sub, Mul")
    assert main(["export", "--trunk", str(source), "--out", str(tmp_path / "p2"), "--mean", "0,0,0", "--std", "1,1,1",
                 "--quiet"]) == 1
    assert "normalizes its own input" in capsys.readouterr().err and not (tmp_path / "p2").exists()


def _refused(args, capsys) -> str:
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    return err


def test_unsupported_graphs_are_refused_naming_what_differs(tiny, tmp_path, capsys):
    from btnet_edge.models.iresnet import IResNet

    _, folded, _ = tiny
    out = str(tmp_path / "never")
    deeper = _to_onnx(IResNet((2, 2, 3, 2), widths=(8, 16, 32, 64), embedding_size=64), tmp_path / "deeper.onnx")
    assert "blocks per stage [2, 2, 3, 2]" in _refused(["export", "--trunk", str(deeper), "--out", out], capsys)

    odd = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Sigmoid(), torch.nn.Flatten())
    assert "Sigmoid" in _refused(["export", "--trunk", str(_to_onnx(odd, tmp_path / "odd.onnx")), "--out", out], capsys)

    err = _refused(["export", "--arch", "r50", "--trunk", str(folded), "--out", out], capsys)
    assert "structure of test_btnet, not iresnet50" in err

    model = onnx.load(str(folded))
    stem = next(n for n in model.graph.node if n.op_type == "Conv")
    next(a for a in stem.attribute if a.name == "strides").ints[:] = [2, 2]
    strided = tmp_path / "strided.onnx"
    onnx.save(model, str(strided))
    assert "strides [2, 2] (expected [1, 1])" in _refused(["export", "--trunk", str(strided), "--out", out], capsys)
    assert not (tmp_path / "never").exists()


def test_branches_of_an_onnx_package_train(tiny, tmp_path, capsys):
    from btnet_edge.export.package_weights import btnet_from_package
    from btnet_edge.package.manifest import Preprocess
    from btnet_edge.training.distill import BranchDistiller, TrainOptions

    _, folded, _ = tiny
    out = tmp_path / "pkg"
    assert main(["export", "--trunk", str(folded), "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    net = btnet_from_package(load_package(out))
    trunk_before = {k: v.clone() for k, v in net.trunk.state_dict().items()}
    faces = np.random.default_rng(0).integers(0, 256, (8, 112, 112, 3), dtype=np.uint8)
    spec = Preprocess("RGB", (127.5,) * 3, (127.5,) * 3)
    distiller = BranchDistiller(net, spec, TrainOptions(lr=3e-3, augmentation=None, device="cpu", resolutions=[14]))
    x = distiller._tensors(faces)[14]
    branch = net.branch(14)
    with torch.no_grad():
        before = net.run_branch(14, x)
        assert distiller.recalibrate_batchnorm(faces) > 0  # the identity BNs of the folded source get real statistics
        after_eval = net.run_branch(14, x)
        branch.train()
        after_train = net.run_branch(14, x)
        branch.eval()
    assert torch.allclose(before, after_eval, rtol=1e-4, atol=1e-4)  # the function is unchanged
    assert torch.allclose(after_train, after_eval, rtol=1e-3, atol=1e-3)  # train mode now starts where eval is
    history = [distiller.step(faces, 3e-3) for _ in range(10)]
    for key in ("feature_14", "embedding_14"):
        assert history[-1][key] < history[0][key], (key, history[0], history[-1])
    assert all(torch.equal(v, net.trunk.state_dict()[k]) for k, v in trunk_before.items())


@needs_fixtures(MFN_ONNX, PEOPLE)
def test_mobilefacenet_onnx_package_equals_the_original_on_real_faces(tmp_path, capsys):
    import cv2

    from btnet_edge.pipeline.align import align_face
    from btnet_edge.pipeline.detect import create_detector
    from btnet_edge.pipeline.recognizer import Recognizer

    out = tmp_path / "mfn"
    assert main(["export", "--trunk", str(MFN_ONNX), "--out", str(out), "--flip-tta", "off", "--quiet"]) == 0
    capsys.readouterr()
    manifest = load_package(out).manifest
    assert manifest.architecture == "mobilefacenet" and manifest.embedding_size == 128
    assert manifest.preprocess.mean == pytest.approx((123.675, 116.28, 103.53))
    crops, photos = [], sorted(PEOPLE.glob("*/*"))
    with create_detector() as detector:
        for photo in photos:
            image = cv2.imread(str(photo))
            best = max(detector.detect(image), key=lambda d: d.score)
            crops.append(align_face(image, best.kps, 112))
    rgb = np.stack(crops)[..., ::-1].astype(np.float32) / 255.0
    normalized = ((rgb - (0.485, 0.456, 0.406)) / (0.229, 0.224, 0.225)).transpose(0, 3, 1, 2).astype(np.float32)
    with OrtBackend(MFN_ONNX) as source:
        theirs = np.concatenate([source.infer({"input0": x[None]})["output0"] for x in normalized])
    theirs /= np.linalg.norm(theirs, axis=1, keepdims=True)
    with Recognizer(out) as recognizer:
        ours = recognizer.embed(np.stack(crops), 112)
    cosine = np.sum(theirs * ours, axis=1)
    assert len(crops) == len(photos) >= 10 and cosine.min() >= 0.9999, cosine
