"""Branch distillation: losses fall, the trunk does not move, runs resume, the new package loads."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from btnet_edge.cli.main import main
from btnet_edge.package.manifest import Preprocess

from .conftest import FIXTURES, needs_fixtures

torch = pytest.importorskip("torch")

UNLABELED = FIXTURES / "images" / "unlabeled"
TRAIN_PHOTOS = ("bulk_Rob_Lowe_0001.jpg", "facenet_multiface.jpg")  # 7 faces: enough for batches of 4
SPEC = Preprocess("RGB", (127.5, 127.5, 127.5), (127.5, 127.5, 127.5))


def _state(module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_losses_fall_on_a_fixed_batch_and_the_trunk_stays_bit_identical():
    from btnet_edge.models.btnet import random_btnet
    from btnet_edge.training.distill import BranchDistiller, TrainOptions

    net = random_btnet("test_btnet", (28, 14, 7), seed=5)
    trunk_before = _state(net.trunk)
    branch_before = _state(net.branch(14))
    faces = np.random.default_rng(0).integers(0, 256, (8, 112, 112, 3), dtype=np.uint8)
    distiller = BranchDistiller(net, SPEC, TrainOptions(lr=3e-3, augmentation=None, device="cpu"))
    history = [distiller.step(faces, 3e-3) for _ in range(12)]  # each step reports the losses before its update
    for key in history[0]:
        start, end = history[0][key], history[-1][key]
        assert (end > start) if key.startswith("cosine") else (end < start), (key, start, end)
    trunk_after = net.trunk.state_dict()
    assert set(trunk_after) == set(trunk_before)
    for key, value in trunk_before.items():  # weights and BN buffers (running stats, batch counts)
        assert torch.equal(trunk_after[key], value), key
    assert not net.trunk.training and not any(p.requires_grad for p in net.trunk.parameters())
    own = set(net.branch_keys(14))
    changed = {k for k, v in net.branch(14).state_dict().items() if not torch.equal(v, branch_before[k])}
    assert changed and changed <= own  # only the branch's own layers train


@needs_fixtures(UNLABELED)
def test_train_branches_resumes_and_writes_a_verified_package(tiny_package, tmp_path):
    from btnet_edge.package.loader import load_package
    from btnet_edge.pipeline.recognizer import Recognizer
    from btnet_edge.training.state_file import load_state

    images = tmp_path / "images"
    images.mkdir()
    for name in TRAIN_PHOTOS:
        shutil.copy(UNLABELED / name, images / name)
    checkpoints = tmp_path / "ckpt"
    common = ["train-branches", str(tiny_package), "--images", str(images), "--batch-size", "4", "--save-every", "2",
              "--checkpoints", str(checkpoints), "--quiet"]
    assert main([*common, "--steps", "4", "--out", str(tmp_path / "first")]) == 0
    first = load_state(checkpoints / "last.npz", torch)
    assert first["step"] == 4 and len(first["history"]) == 4
    assert main([*common, "--steps", "6", "--resume", "--out", str(tmp_path / "second")]) == 0
    second = load_state(checkpoints / "last.npz", torch)
    assert second["step"] == 6 and len(second["history"]) == 6 and second["history"][:4] == first["history"]

    package = load_package(tmp_path / "second")  # verifies every sha256
    training = package.manifest.extra["import_report"]["training"]
    assert training["resumed_from_step"] == 4 and training["steps"] == 6 and training["faces"] == 7
    assert training["source_package"] == load_package(tiny_package).manifest.name
    from btnet_edge.export.package_weights import btnet_from_package

    old, new = btnet_from_package(load_package(tiny_package)), btnet_from_package(package)
    old_trunk, new_trunk = old.trunk.state_dict(), new.trunk.state_dict()
    assert all(torch.allclose(old_trunk[k].float(), new_trunk[k].float(), atol=1e-6) for k in old_trunk)  # one trunk
    old_14, new_14 = old.branch(14).state_dict(), new.branch(14).state_dict()
    assert any(not torch.allclose(old_14[k].float(), new_14[k].float(), atol=1e-4) for k in old.branch_keys(14))
    with Recognizer(package) as recognizer:
        assert recognizer.embed(np.zeros((2, 14, 14, 3), np.uint8), 14).shape == (2, 64)
        assert set(recognizer.routes.values()) == {"branch"}
    from btnet_edge.package.branch_status import branch_statuses

    statuses = branch_statuses(package.manifest)  # every branch marked trained by this run
    assert {(s.trained, s.source) for s in statuses} == {(True, "train-branches")}
    assert {s.detail["faces"] for s in statuses} == {7}


def test_resume_without_a_checkpoint_fails_before_any_work(tiny_package, tmp_path, capsys):
    args = ["train-branches", str(tiny_package), "--images", str(tmp_path), "--out", str(tmp_path / "p"),
            "--checkpoints", str(tmp_path / "none"), "--resume", "--quiet"]
    assert main(args) == 1
    assert "no checkpoint" in capsys.readouterr().err


def test_checkpoint_file_round_trips_without_pickle(tmp_path):
    import zipfile

    from btnet_edge.training.state_file import load_state, save_state

    state = {"step": 7, "optimizer": {"state": {0: {"exp_avg": torch.ones(3), "step": torch.tensor(5.0)}},
                                      "param_groups": [{"lr": 0.003, "params": [0, 1]}]},
             "rng": torch.get_rng_state(), "pair": (1, "a"), "order": np.arange(4), "none": None}
    path = tmp_path / "state.npz"
    save_state(path, state, torch)
    back = load_state(path, torch)
    assert back["step"] == 7 and back["pair"] == (1, "a") and back["none"] is None
    assert list(back["optimizer"]["state"]) == [0]  # int keys stay ints (the optimizer needs them)
    assert torch.equal(back["optimizer"]["state"][0]["exp_avg"], torch.ones(3))
    assert torch.equal(back["rng"], state["rng"]) and np.array_equal(back["order"], np.arange(4))
    assert not [n for n in zipfile.ZipFile(path).namelist() if n.endswith(".pkl")]
