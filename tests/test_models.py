"""Model definitions: key names, implant points, parameter shares, the real MobileFaceNet."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from btnet_edge.errors import ConfigError  # noqa: E402
from btnet_edge.models import create_trunk, list_models  # noqa: E402
from btnet_edge.models.btnet import BTNet, random_btnet  # noqa: E402
from btnet_edge.pipeline.dispatch import choose_resolution, dispatch_ranges  # noqa: E402

from .conftest import MFN_ONNX, MFN_PT, needs_fixtures  # noqa: E402

FAST_MODELS = [m for m in list_models() if m not in ("iresnet100",)]


def test_registry_lists_every_architecture():
    assert set(list_models()) == {"iresnet18", "iresnet34", "iresnet50", "iresnet100", "mobilefacenet", "test_btnet"}


def test_unknown_architecture_names_the_choices():
    with pytest.raises(ConfigError, match="iresnet50"):
        create_trunk("resnet9000")


def test_iresnet_state_dict_names_match_arcface_torch():
    keys = set(create_trunk("r18").state_dict())
    for key in ("conv1.weight", "bn1.running_var", "prelu.weight", "layer1.0.bn1.weight", "layer1.0.conv1.weight",
                "layer1.0.bn2.weight", "layer1.0.prelu.weight", "layer1.0.conv2.weight", "layer1.0.bn3.weight",
                "layer1.0.downsample.0.weight", "layer4.1.bn3.bias", "bn2.weight", "fc.weight", "features.weight"):
        assert key in keys
    assert create_trunk("r18").state_dict()["fc.weight"].shape == (512, 512 * 7 * 7)


@pytest.mark.parametrize("arch", FAST_MODELS)
def test_every_branch_outputs_the_trunk_feature_shape(arch):
    torch.manual_seed(0)
    net = BTNet(arch, (28, 14, 7)).eval()
    with torch.no_grad():
        trunk_out = {}
        x = torch.randn(2, 3, 112, 112)
        for index, unit in enumerate(net.trunk.units[:-1]):
            x = unit.module(x)
            trunk_out[index] = x.shape[1:]
        for r in (28, 14, 7):
            feature = net.run_branch(r, torch.randn(2, 3, r, r))
            assert feature.shape[1:] == trunk_out[net.implant_index(r)]
            assert feature.shape[-1] == r
            emb = net.embed(torch.randn(2, 3, r, r), r)
            assert emb.shape == (2, net.config.embedding_size)


def test_implant_points_follow_the_authors_layout():
    net = create_trunk("r50")
    names = {r: net.units[net.implant_index(r)].name for r in (28, 14, 7)}
    assert names == {28: "layer2.0", 14: "layer3.0", 7: "layer4.0"}
    # The 28 px branch runs layer1 and layer2[0] at stride 1; its layer1 needs no shortcut conv.
    branch = create_trunk("r50", input_size=28)
    assert branch.layer1[0].conv2.stride == (1, 1) and branch.layer1[0].downsample is None
    assert branch.layer2[0].conv2.stride == (1, 1) and branch.layer3[0].conv2.stride == (2, 2)


def test_r50_branch_shares_match_the_paper():
    counts = BTNet("r50", (28, 14, 7)).parameter_counts()
    percent = {r: 100.0 * n / counts["trunk"] for r, n in counts["branches"].items()}
    assert percent["7"] == pytest.approx(48.85, abs=0.01)
    assert percent["14"] == pytest.approx(5.19, abs=0.01)
    assert percent["28"] == pytest.approx(1.04, abs=0.01)


def test_branches_start_from_the_trunk_weights():
    net = random_btnet("test_btnet", (28, 14, 7), seed=5)
    trunk = net.trunk.state_dict()
    for r in (28, 14, 7):
        for key in net.branch_keys(r):
            assert torch.equal(net.branch(r).state_dict()[key], trunk[key]), key


def test_resolution_without_implant_point_is_refused():
    with pytest.raises(ConfigError, match="implant"):
        BTNet("test_btnet", (20,))


def test_random_weights_are_seeded():
    a = random_btnet("test_btnet", (14,), seed=11)
    b = random_btnet("test_btnet", (14,), seed=11)
    c = random_btnet("test_btnet", (14,), seed=12)
    x = torch.randn(2, 3, 14, 14)
    with torch.no_grad():
        assert torch.equal(a.embed(x, 14), b.embed(x, 14))
        assert not torch.equal(a.embed(x, 14), c.embed(x, 14))


@needs_fixtures(MFN_PT, MFN_ONNX)
def test_mobilefacenet_loads_the_real_checkpoint_strictly_and_matches_its_onnx():
    ort = pytest.importorskip("onnxruntime")
    net = create_trunk("mobilefacenet")
    result = net.load_state_dict(torch.load(MFN_PT, map_location="cpu", weights_only=True), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert sum(p.numel() for p in net.parameters()) == 999_936
    x = np.random.default_rng(0).standard_normal((1, 3, 112, 112)).astype(np.float32)
    reference = ort.InferenceSession(str(MFN_ONNX)).run(None, {"input0": x})[0]
    with torch.no_grad():
        ours = net.eval()(torch.from_numpy(x)).numpy()
    assert np.abs(ours - reference).max() < 1e-4


def test_mobilefacenet_implants_at_the_readme_sizes():
    net = create_trunk("mobilefacenet")
    assert {r: net.units[net.implant_index(r)].name for r in (28, 14, 7)} == {
        28: "features.0", 14: "features.5", 7: "features.12"}


@pytest.mark.parametrize("rounding,expected", [
    ("floor", {"7": [0, 13], "14": [14, 27], "28": [28, 111], "112": [112, None]}),
    ("near", {"7": [0, 10], "14": [11, 21], "28": [22, 70], "112": [71, None]}),
    ("ceil", {"7": [0, 7], "14": [8, 14], "28": [15, 28], "112": [29, None]}),
])
def test_dispatch_rules_reproduce_the_authors_ranges(rounding, expected):
    assert dispatch_ranges([7, 14, 28, 112], rounding) == expected


def test_dispatch_handles_fractional_sizes():
    assert choose_resolution(14.5, [7, 14, 28, 112], "ceil") == 28
    assert choose_resolution(13.5, [7, 14, 28, 112], "floor") == 7
    assert choose_resolution(10.5, [7, 14, 28, 112], "near") == 7
    assert choose_resolution(500, [7, 14, 28, 112], "ceil") == 112
