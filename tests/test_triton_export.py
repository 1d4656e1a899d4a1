"""Triton model repository: configs parsed (ours and Triton's own schema), wiring checked, ensemble run on CPU."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from btnet_edge.cli.main import main
from btnet_edge.errors import ConfigError
from btnet_edge.package.loader import load_package
from btnet_edge.pipeline.runner import PackageRunner, backend_factory
from btnet_edge.serve.pbtxt import parse_pbtxt
from btnet_edge.serve.triton_check import check_repository, read_configs, run_ensemble
from btnet_edge.serve.triton_repo import ENSEMBLE, TRUNK, export_triton


@pytest.fixture(scope="module")
def repo(tiny_package, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("triton") / "repo"
    export_triton(tiny_package, out)
    return out


def _triton_model_config():
    """Triton's ModelConfig message from the tritonclient wheel (its grpc package needs grpcio: load the file)."""
    spec = importlib.util.find_spec("tritonclient")
    if spec is None or spec.origin is None:
        pytest.skip("tritonclient not installed (dev extra): Triton's own schema check skipped")
    path = Path(spec.origin).parent / "grpc" / "model_config_pb2.py"
    module_spec = importlib.util.spec_from_file_location("_triton_model_config_pb2", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.ModelConfig


def test_repository_layout_and_batching(repo, tiny_package):
    manifest = load_package(tiny_package).manifest
    configs = read_configs(repo)
    assert set(configs) == {f"btnet_branch_{r}" for r in (28, 14, 7)} | {TRUNK, ENSEMBLE}
    assert check_repository(repo) == []
    for r in (28, 14, 7):
        branch = configs[f"btnet_branch_{r}"]
        assert branch["platform"] == ["onnxruntime_onnx"] and branch["max_batch_size"] == [64]
        assert branch["dynamic_batching"][0]["max_queue_delay_microseconds"] == [2000]
        assert branch["input"][0]["dims"] == [3, r, r]
        assert (repo / f"btnet_branch_{r}" / "1" / "model.onnx").read_bytes() == load_package(
            tiny_package).branch_path(r).read_bytes()
    trunk = configs[TRUNK]
    assert trunk["max_batch_size"] == [0] and "dynamic_batching" not in trunk  # ragged entry points
    assert [t["name"][0] for t in trunk["input"]] == [t.name for t in manifest.trunk.inputs]
    steps = configs[ENSEMBLE]["ensemble_scheduling"][0]["step"]
    assert [s["model_name"][0] for s in steps] == ["btnet_branch_28", "btnet_branch_14", "btnet_branch_7", TRUNK]
    assert (repo / ENSEMBLE / "1").is_dir() and (repo / "client_example.py").is_file()


def test_configs_parse_with_tritons_own_schema(repo):
    from google.protobuf import text_format

    model_config = _triton_model_config()
    for path in sorted(repo.glob("*/config.pbtxt")):
        config = text_format.Parse(path.read_text(), model_config())  # unknown fields or bad enums raise
        assert config.name == path.parent.name
        assert config.WhichOneof("scheduling_choice") == {"btnet_trunk": None, ENSEMBLE: "ensemble_scheduling"}.get(
            config.name, "dynamic_batching")


def test_ensemble_run_matches_the_package_runner(repo, tiny_package):
    package = load_package(tiny_package)
    rng = np.random.default_rng(0)
    counts = {112: 2, 28: 3, 14: 0, 7: 1}  # an empty entry point included
    groups = {r: rng.standard_normal((n, 3, r, r)).astype(np.float32) for r, n in counts.items()}
    feeds = {f"image_{r}": g for r, g in groups.items()}
    got = run_ensemble(repo, feeds)["embedding"]
    runner = PackageRunner(package, backend_factory(package)).load()
    try:
        expected = runner.embed(groups)
    finally:
        runner.close()
    want = np.concatenate([expected[r] for r in package.manifest.trunk.entry_resolutions])
    assert got.shape == (6, package.manifest.embedding_size)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_checks_catch_broken_wiring_and_shapes(repo, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(repo, broken)
    ensemble = broken / ENSEMBLE / "config.pbtxt"
    ensemble.write_text(ensemble.read_text().replace('value: "implant_14"', 'value: "implant_x"', 1))
    branch = broken / "btnet_branch_7" / "config.pbtxt"
    branch.write_text(branch.read_text().replace("dims: [ 3, 7, 7 ]", "dims: [ 3, 8, 8 ]"))
    problems = " | ".join(check_repository(broken))
    assert "step btnet_trunk reads 'implant_14' before any step produces it" in problems  # renamed output
    assert "btnet_branch_7: input image_7" in problems and "[-1, 3, 8, 8]" in problems
    with pytest.raises(ConfigError, match="no value at the end"):
        parse_pbtxt("name: \"x\" input [ { name: ")
    with pytest.raises(ConfigError, match="cannot read '@' at offset 6"):
        parse_pbtxt("name: @")


def test_engines_make_tensorrt_plans_capped_by_their_profile(tiny_package, tmp_path):
    from dataclasses import replace

    from btnet_edge.trt_build.features import simulated_features
    from btnet_edge.trt_build.plan import plan_engines
    from btnet_edge.trt_build.targets import BatchRange, load_target

    pytest.importorskip("onnx", reason="planning writes the trunk segments: needs onnx")
    engines = tmp_path / "engines"
    target = load_target("desktop-fp16")
    target = replace(target, input_format="float", trunk_form="segments", branch_batch={28: BatchRange(1, 8, 32)},
                     detector=replace(target.detector, build=False))
    plan = plan_engines(tiny_package, target, simulated_features("10.3"), engines)
    (engines / "engines.json").write_text(json.dumps(plan))
    (engines / "branch_28.engine").write_bytes(b"plan bytes")  # branch_14 not built: stays ONNX
    out = tmp_path / "repo"
    export_triton(tiny_package, out, engines=engines)
    configs = read_configs(out)
    assert configs["btnet_branch_28"]["platform"] == ["tensorrt_plan"]
    assert configs["btnet_branch_28"]["max_batch_size"] == [32]
    assert (out / "btnet_branch_28" / "1" / "model.plan").read_bytes() == b"plan bytes"
    assert configs["btnet_branch_14"]["platform"] == ["onnxruntime_onnx"]
    assert check_repository(out) == []
    with pytest.raises(ConfigError, match="tensorrt_plan model"):
        run_ensemble(out, {})


def test_cli_refuses_a_folder_it_did_not_write(tiny_package, tmp_path, capsys):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert main(["export-triton", str(tiny_package), "--out", str(foreign), "--force"]) == 1
    assert "not written by btnet-edge export-triton" in capsys.readouterr().err
    assert (foreign / "notes.txt").read_text() == "keep me"
    out = tmp_path / "repo"
    assert main(["export-triton", str(tiny_package), "--out", str(out), "--kind", "cpu"]) == 0
    assert main(["export-triton", str(tiny_package), "--out", str(out)]) == 1  # exists: needs --force
    assert main(["export-triton", str(tiny_package), "--out", str(out), "--force"]) == 0
    assert "KIND_GPU" in (out / TRUNK / "config.pbtxt").read_text()
    assert not list(tmp_path.glob(".*"))  # no staging folder left behind
