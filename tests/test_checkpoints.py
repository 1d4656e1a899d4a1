"""Checkpoint import in the authors' format (a full network per resolution), with the drift report."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from btnet_edge.backends.ort import OrtBackend  # noqa: E402
from btnet_edge.cli.main import main  # noqa: E402
from btnet_edge.errors import CheckpointError  # noqa: E402
from btnet_edge.export.checkpoints import load_state_dict_file  # noqa: E402
from btnet_edge.export.package_writer import build_btnet  # noqa: E402
from btnet_edge.models import create_trunk  # noqa: E402
from btnet_edge.package.loader import load_package  # noqa: E402


@pytest.fixture(scope="module")
def authors_files(tmp_path_factory):
    """A trunk file and three branch files with the authors' key names.

    The 14 px branch file's trunk layers carry drifted BN statistics (as in the
    authors' checkpoints); the 28 px file's trunk layers equal the trunk.
    """
    folder = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(7)
    trunk = create_trunk("test_btnet").eval()
    with torch.no_grad():
        for module in trunk.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_var.uniform_(0.5, 2.0)
    trunk_state = trunk.state_dict()
    # DataParallel-style container, as many training scripts save.
    torch.save({"state_dict": {f"module.{k}": v for k, v in trunk_state.items()}}, folder / "model.pt")
    files = {}
    for r in (28, 14, 7):
        branch = create_trunk("test_btnet", input_size=r)
        state = branch.state_dict()
        for key in state:
            if key in trunk_state and state[key].shape == trunk_state[key].shape:
                state[key] = trunk_state[key].clone()
        implant = branch.implant_index(r)
        for key in branch.unit_keys(0, implant + 1):  # the branch's own, "trained" layers
            if state[key].is_floating_point():
                state[key] = state[key] + 0.01 * torch.randn_like(state[key])
        if r == 14:
            for key in branch.unit_keys(implant + 1, None):
                if key.endswith("running_mean"):
                    state[key] = state[key] + 0.05
        torch.save(state, folder / f"branch_{r}.pt")
        files[r] = folder / f"branch_{r}.pt"
    return folder, files


def test_import_uses_each_branch_file_and_reports_drift(authors_files, tmp_path, capsys):
    folder, files = authors_files
    out = tmp_path / "pkg"
    args = ["export", "--arch", "test_btnet", "--trunk", str(folder / "model.pt"), "--out", str(out), "--quiet"]
    for r, path in files.items():
        args += ["--branch", f"{r}={path}"]
    assert main(args) == 0
    manifest = load_package(out).manifest
    report = manifest.extra["import_report"]
    assert manifest.weights == "pretrained"
    assert report["branches"]["28"]["drift"]["differing"] == 0
    assert report["branches"]["7"]["drift"]["differing"] == 0  # importing must not disturb the trunk
    drift14 = report["branches"]["14"]["drift"]
    assert drift14["differing"] > 0 and drift14["differing_kinds"] == {"running_mean": drift14["differing"]}
    assert drift14["max_abs_diff"] == pytest.approx(0.05, abs=1e-5)
    assert drift14["embedding_cosine_min"] < 1.0
    assert "112 px trunk" in report["trunk_copy_used"]
    # The exported branch is the file's own prefix, not the trunk's.
    branch = create_trunk("test_btnet", input_size=14).eval()
    branch.load_state_dict(torch.load(files[14], weights_only=True))
    x = np.random.default_rng(0).standard_normal((2, 3, 14, 14)).astype(np.float32)
    with torch.no_grad():
        expected = branch.run(torch.from_numpy(x), 0, branch.implant_index(14) + 1).numpy()
    with OrtBackend(out / "branch_14.onnx") as session:
        got = session.infer({"image_14": x})["implant_14"]
    assert np.abs(got - expected).max() < 1e-4


def test_trunk_only_import_initializes_branches_from_it(authors_files):
    folder, _ = authors_files
    net, weights, report = build_btnet("test_btnet", (14,), folder / "model.pt", {})
    trunk = load_state_dict_file(folder / "model.pt")
    assert weights == "pretrained" and report["branches"] == {}
    assert torch.equal(net.branch(14).state_dict()["layer1.0.bn1.running_var"], trunk["layer1.0.bn1.running_var"])


def test_truncated_checkpoint_gets_a_clear_error(authors_files, tmp_path):
    folder, _ = authors_files
    data = (folder / "model.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_state_dict_file(tmp_path / "cut.pt")


def test_pickled_module_is_refused_with_the_fix(tmp_path):
    torch.save(create_trunk("test_btnet"), tmp_path / "whole.pt")
    with pytest.raises(CheckpointError, match="state_dict"):
        load_state_dict_file(tmp_path / "whole.pt")


def test_wrong_architecture_names_the_right_one(tmp_path):
    torch.save(create_trunk("r18").state_dict(), tmp_path / "r18.pth")
    with pytest.raises(CheckpointError, match="--arch r18"):
        build_btnet("r34", (14,), tmp_path / "r18.pth", {})


def test_mobilefacenet_weights_given_for_an_iresnet_name_the_right_arch(tmp_path):
    torch.save(create_trunk("mobilefacenet").state_dict(), tmp_path / "mfn.pt")
    with pytest.raises(CheckpointError, match="--arch mobilefacenet"):
        build_btnet("test_btnet", (14,), tmp_path / "mfn.pt", {})


def test_branch_for_a_missing_resolution_is_refused(authors_files, tmp_path, capsys):
    folder, files = authors_files
    code = main(["export", "--arch", "test_btnet", "--trunk", str(folder / "model.pt"), "--resolutions", "14",
                 "--branch", f"7={files[7]}", "--out", str(tmp_path / "x"), "--quiet"])
    assert code == 1
    assert "--resolutions" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_missing_checkpoint_file_exits_nonzero(tmp_path, capsys):
    code = main(["export", "--arch", "test_btnet", "--trunk", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "y")])
    assert code == 1 and "does not exist" in capsys.readouterr().err
