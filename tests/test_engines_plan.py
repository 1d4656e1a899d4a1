"""Engine planning without a GPU: targets, plan JSON per TensorRT release, profiles, segments, cache keys, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from btnet_edge.errors import ConfigError
from btnet_edge.trt_build.features import BUILDER_FLAG_FP16, STRONGLY_TYPED_FP16, simulated_features
from btnet_edge.trt_build.targets import builtin_targets, load_target, target_from_dict
from btnet_edge.trt_runtime.cache_key import (
    EngineKey,
    RuntimeEnv,
    key_differences,
    key_for,
    load_sidecar,
    parse_l4t_release,
    read_existing_keys,
    save_key,
    stale_engines,
)

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "build_engines.py"
VERSIONS = ("8.6", "10.3", "11.4")
ENGINE_NAMES = ["branch_28", "branch_14", "branch_7", "trunk_seg0_112", "trunk_seg1_28", "trunk_seg2_14",
                "trunk_seg3_7", "detector_retinaface"]
MERGED_NAMES = ["branch_28", "branch_14", "branch_7", "trunk", "detector_retinaface"]
ORIN = RuntimeEnv("10.3.0", "Orin", "8.7", 16, "36.3.0")

pytest.importorskip("onnx", reason="planning cuts and converts ONNX graphs: needs onnx (btnet-edge[trt])")


@pytest.fixture(scope="module")
def plans(tiny_package, tmp_path_factory) -> dict[str, dict]:
    from btnet_edge.trt_build.plan import plan_engines

    target = replace(load_target("desktop-fp16"), trunk_form="segments", input_format="float")  # the fallback form
    return {v: plan_engines(tiny_package, target, simulated_features(v), tmp_path_factory.mktemp(f"trt{v}"),
                            simulated=True) for v in VERSIONS}


# --- targets ---------------------------------------------------------------------------------------------------

def test_shipped_targets_load():
    assert {"desktop-fp16", "jetson-orin-fp16"} <= set(builtin_targets())
    for name in builtin_targets():
        target = load_target(name)
        assert target.precision == "fp16" and target.default_batch.min >= 1
    assert (ROOT / "engines" / "README.md").is_file()


def test_jetson_target_names_the_jetpack_tensorrt_releases():
    text = (ROOT / "btnet_edge" / "trt_build" / "targets" / "jetson-orin-fp16.toml").read_text()
    assert "JetPack 6.0 ships 8.6.2" in text and "6.1/6.2 ship 10.3" in text
    assert "JetPack 6 ships TensorRT 10.3" not in text


def test_plan_refuses_switches_the_release_lacks(tiny_package, tmp_path):
    """TensorRT 8.5 (JetPack 5) has no compatibility or optimization-level switches: refused, not emitted."""
    from btnet_edge.trt_build.plan import plan_engines

    base = replace(load_target("jetson-orin-fp16"), trunk_form="merged")
    for change in ({"version_compatible": True}, {"hardware_compatibility": "ampere_plus"},
                   {"builder_optimization_level": 4}):
        with pytest.raises(ConfigError, match=next(iter(change))):
            plan_engines(tiny_package, replace(base, **change), simulated_features("8.5"), tmp_path)
    plan = plan_engines(tiny_package, base, simulated_features("8.5"), tmp_path)
    for entry in plan["engines"]:
        for flag in ("--hardwareCompatibilityLevel", "--versionCompatible", "--builderOptimizationLevel",
                     "--stronglyTyped"):
            assert flag not in entry["trtexec"]
        assert "--fp16" in entry["trtexec"]


def test_stronglytyped_flag_only_where_it_means_something(tiny_package, tmp_path):
    """10.x with an FP16 ONNX needs --stronglyTyped; on 11 every network is strongly typed and the flag is a no-op."""
    from btnet_edge.trt_build.plan import plan_engines

    target = replace(load_target("desktop-fp16"), detector=replace(load_target("desktop-fp16").detector, build=False))
    ten = replace(simulated_features("10.3"), builder_flag_fp16=False)
    line = plan_engines(tiny_package, target, ten, tmp_path / "a")["engines"][0]["trtexec"]
    assert "--stronglyTyped" in line and ".fp16.onnx" in line
    line = plan_engines(tiny_package, target, simulated_features("11.4"), tmp_path / "b")["engines"][0]["trtexec"]
    assert "--stronglyTyped" not in line and "--fp16" not in line and ".fp16.onnx" in line


def test_target_by_path(tmp_path):
    text = (ROOT / "btnet_edge" / "trt_build" / "targets" / "jetson-orin-fp16.toml").read_text()
    path = tmp_path / "mine.toml"
    override = "\n[batch.branch.7]\nmin = 2\nopt = 3\nmax = 5\n"
    path.write_text(text.replace('name = "jetson-orin-fp16"', 'name = "mine"') + override)
    target = load_target(str(path))
    assert target.name == "mine" and target.branch_range(7).to_json() == {"min": 2, "opt": 3, "max": 5}
    assert target.branch_range(28) == target.default_batch


BASE = {"name": "t", "workspace_mb": 256, "batch": {"default": {"min": 1, "opt": 2, "max": 4}}}


@pytest.mark.parametrize("change, field", [
    ({"workspace_mb": None}, "workspace_mb"),
    ({"batch": {"default": {"min": 0, "opt": 2, "max": 4}}}, "batch.default.min"),
    ({"batch": {"default": {"min": 1, "opt": 5, "max": 4}}}, "batch.default"),
    ({"batch": {"default": {"min": 1, "opt": 1, "max": 1}, "trunk": {"image_112": {"min": 1, "max": 2}}}},
     "batch.trunk.image_112.opt"),
    ({"batch": {"default": {"min": 1, "opt": 1, "max": 1}, "branch": {"seven": {"min": 1, "opt": 1, "max": 1}}}},
     "batch.branch.seven"),
    ({"precision": "int8"}, "precision"),
    ({"trunk_form": "fused"}, "trunk_form"),
    ({"dla_core": -1}, "dla_core"),
    ({"detector": {"min_hw": [300, 320]}}, "detector.min_hw"),
    ({"worksapce_mb": 1}, "worksapce_mb"),
])
def test_target_errors_name_the_field(change, field):
    data = {**BASE, **change}
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        target_from_dict(data)


def test_unknown_target_lists_shipped():
    with pytest.raises(ConfigError, match="desktop-fp16"):
        load_target("no-such-target")


def test_bad_trt_version():
    with pytest.raises(ConfigError, match="trt-version"):
        simulated_features("ten")
    with pytest.raises(ConfigError, match="too old"):
        simulated_features("7.1")


# --- the plan ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
def test_plan_shape(plans, version):
    from btnet_edge.package.loader import sha256_of

    plan = plans[version]
    assert [e["name"] for e in plan["engines"]] == ENGINE_NAMES
    assert plan["tensorrt"] == {"version": version, "simulated": True, "module": "tensorrt",
                                "features": plan["tensorrt"]["features"]}
    for entry in plan["engines"]:
        assert {"name", "onnx", "sha256", "precision_path", "profiles", "engine", "inputs", "outputs"} <= set(entry)
        assert Path(entry["onnx"]).is_file() and sha256_of(entry["onnx"]) == entry["sha256"]
        assert entry["engine"] == entry["name"] + ".engine"
        for profile in entry["profiles"]:
            for shapes in profile.values():
                assert shapes["min"][0] >= 1, "segment and branch profiles start at 1: empty ones are skipped"
                assert all(lo <= o <= hi for lo, o, hi in zip(shapes["min"], shapes["opt"], shapes["max"]))
    assert plan["trunk"]["form"] == "segments" and "zero-copy" in plan["trunk"]["reason"]
    json.dumps(plan)  # JSON-ready as is


def test_precision_path_switches_at_11(plans, tiny_package):
    for version in ("8.6", "10.3"):
        entries = plans[version]["engines"]
        assert {e["precision_path"] for e in entries} == {BUILDER_FLAG_FP16}
        assert Path(entries[0]["onnx"]) == Path(tiny_package).resolve() / "branch_28.onnx"
    entries = plans["11.4"]["engines"]
    assert {e["precision_path"] for e in entries} == {STRONGLY_TYPED_FP16}
    assert all(e["onnx"].endswith(".fp16.onnx") and "fp16" in e for e in entries)
    last = next(e for e in entries if e["name"] == "trunk_seg3_7")
    assert any("Gemm" in n for n in last["fp16"]["fp32_nodes"])  # the embedding FC stays FP32


def test_trtexec_equivalent(plans):
    for version, flag in (("10.3", "--fp16"), ("11.4", "")):  # 11 is strongly typed always: no flag
        entry = next(e for e in plans[version]["engines"] if e["name"] == "trunk_seg1_28")
        line = entry["trtexec"]
        assert line.startswith(f"trtexec --onnx={entry['onnx']} --saveEngine=trunk_seg1_28.engine") and flag in line
        assert "--stronglyTyped" not in line
        shapes = entry["profiles"][0]["merged_28"]
        assert f"--minShapes=merged_28:{'x'.join(map(str, shapes['min']))}" in line
        assert f"--maxShapes=merged_28:{'x'.join(map(str, shapes['max']))}" in line


def test_profiles_follow_the_target(plans):
    target = load_target("desktop-fp16")
    entries = {e["name"]: e for e in plans["10.3"]["engines"]}
    d, t = target.default_batch, target.trunk_range("image_112")
    assert entries["branch_28"]["profiles"] == [{"image_28": {"min": [d.min, 3, 28, 28], "opt": [d.opt, 3, 28, 28],
                                                              "max": [d.max, 3, 28, 28]}}]
    assert entries["trunk_seg0_112"]["profiles"][0]["image_112"]["max"] == [t.max, 3, 112, 112]
    merged = entries["trunk_seg3_7"]["profiles"][0]["merged_7"]
    assert merged["min"][0] == 1 and merged["opt"][0] == t.opt + 3 * d.opt and merged["max"][0] == t.max + 3 * d.max
    detector = entries["detector_retinaface"]["profiles"][0]["input"]
    assert detector["min"] == [target.detector.batch, 3, *target.detector.min_hw]
    assert detector["max"] == [target.detector.batch, 3, *target.detector.max_hw]


def test_merged_trunk_form_and_fp32(tiny_package, tmp_path):
    from btnet_edge.trt_build.plan import plan_engines

    target = replace(load_target("desktop-fp16"), trunk_form="merged", precision="fp32")
    target = replace(target, detector=replace(target.detector, build=False))
    plan = plan_engines(tiny_package, target, simulated_features("11.4"), tmp_path)
    assert [e["name"] for e in plan["engines"]] == ["branch_28", "branch_14", "branch_7", "trunk"]
    trunk = plan["engines"][-1]
    assert trunk["precision_path"] == "fp32" and set(trunk["profiles"][0]) == {"image_112", "implant_28",
                                                                               "implant_14", "implant_7"}
    assert all(s["min"][0] == 0 for s in trunk["profiles"][0].values()) and "0 <= minDims" in trunk["notes"][0]


def test_segments_chain_matches_trunk(plans, tiny_package):
    from btnet_edge.backends.base import TensorSpec
    from btnet_edge.backends.ort import OrtBackend
    from btnet_edge.package.loader import load_package
    from btnet_edge.trt_runtime.engine_folder import engine_folder_from_json
    from btnet_edge.trt_runtime.trunk_chain import SegmentedTrunk

    manifest = load_package(tiny_package).manifest
    folder = engine_folder_from_json(json.loads(json.dumps(plans["10.3"])))
    chain = folder.segments
    specs = [TensorSpec(t.name, "float32", (-1, *t.shape)) for t in manifest.trunk.inputs]
    trunk = SegmentedTrunk(chain, [OrtBackend(folder.entry(link.engine).onnx) for link in chain], specs,
                           TensorSpec("embedding", "float32", (-1, manifest.embedding_size)))
    reference = OrtBackend(Path(tiny_package) / "trunk.onnx")
    rng = np.random.default_rng(1)
    for counts in [(2, 1, 3, 1), (0, 2, 0, 1), (1, 0, 0, 0), (0, 0, 0, 2), (0, 0, 0, 0), (3, 0, 2, 0)]:
        feeds = {t.name: rng.standard_normal((n, *t.shape)).astype(np.float32)
                 for t, n in zip(manifest.trunk.inputs, counts)}
        runs = [b.runs for b in trunk.backends]
        got, want = trunk.infer(feeds)["embedding"], reference.infer(feeds)["embedding"]
        assert got.shape == want.shape == (sum(counts), manifest.embedding_size)
        if got.size:
            assert np.abs(got - want).max() < 1e-4
        launched = [b.runs - r for b, r in zip(trunk.backends, runs)]
        assert launched[0] == (counts[0] > 0)  # an empty segment input is skipped, not launched
        assert launched[-1] == (sum(counts) > 0)


# --- cache keys ----------------------------------------------------------------------------------------------------

def test_l4t_parsing(tmp_path):
    jp6 = ("# R36 (release), REVISION: 3.0, GCID: 36923193, BOARD: generic, EABI: aarch64, "
           "DATE: Fri Jul 19 23:24:25 UTC 2024")
    jp5 = ("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, "
           "DATE: Tue Aug  1 19:57:35 UTC 2023")
    assert parse_l4t_release(jp6) == "36.3.0" and parse_l4t_release(jp5) == "35.4.1"
    assert parse_l4t_release("Ubuntu 22.04") is None
    from btnet_edge.trt_runtime.cache_key import read_l4t_release

    (tmp_path / "nv_tegra_release").write_text(jp6 + "\n")
    assert read_l4t_release(tmp_path / "nv_tegra_release") == "36.3.0"
    assert read_l4t_release(tmp_path / "absent") is None


def test_keys_equal_and_stale(plans):
    plan = plans["10.3"]
    keys = {e["name"]: key_for(e, ORIN) for e in plan["engines"]}
    assert stale_engines(plan, keys, ORIN) == {}
    assert key_for(plan["engines"][0], ORIN) == EngineKey.from_json(json.loads(json.dumps(keys["branch_28"].to_json())))
    changed = dict(keys, branch_28=replace(keys["branch_28"], onnx_sha256="0" * 64), branch_14=None)
    stale = stale_engines(plan, changed, ORIN)
    assert list(stale) == ["branch_28", "branch_14"] and "onnx_sha256" in stale["branch_28"]
    assert set(stale_engines(plan, keys, replace(ORIN, trt_version="10.4.0"))) == set(ENGINE_NAMES)
    assert "gpu_name" in stale_engines(plan, keys, replace(ORIN, gpu_name="RTX 4090", sm_count=128))["branch_7"]
    assert "l4t_release" in stale_engines(plan, keys, replace(ORIN, l4t_release="36.4.0"))["branch_7"]
    other_profiles = dict(plan["engines"][0], profiles=[{"image_28": {"min": [1], "opt": [2], "max": [3]}}])
    assert key_differences(key_for(other_profiles, ORIN), keys["branch_28"]) == ["profiles changed"]


def test_compatibility_switches_relax_the_key(plans):
    entry = dict(plans["10.3"]["engines"][0])
    entry["settings"] = dict(entry["settings"], version_compatible=True, hardware_compatibility="ampere_plus")
    built = key_for(entry, replace(ORIN, gpu_name="A100", compute_capability="8.0", sm_count=108))
    assert key_differences(key_for(entry, replace(ORIN, trt_version="10.5.0")), built) == []
    assert "trt_version" in key_differences(key_for(entry, replace(ORIN, trt_version="10.2.0")), built)[0]
    turing = replace(ORIN, gpu_name="T4", compute_capability="7.5", sm_count=40)
    assert any("gpu_name" in d for d in key_differences(key_for(entry, turing), built))


def test_sidecar_roundtrip(plans, tmp_path):
    plan = plans["10.3"]
    entry = plan["engines"][0]
    engine = tmp_path / entry["engine"]
    engine.write_bytes(b"plan")
    save_key(engine, key_for(entry, ORIN), entry)
    key, saved_entry = load_sidecar(engine)
    assert key == key_for(entry, ORIN) and saved_entry["onnx"] == entry["onnx"]
    existing = read_existing_keys(tmp_path, plan)
    assert existing["branch_28"] == key and existing["branch_14"] is None
    (tmp_path / entry["engine"]).unlink()  # a key without its engine is no engine
    assert read_existing_keys(tmp_path, plan)["branch_28"] is None


def test_mismatch_error_names_both_sides(plans, tmp_path):
    from btnet_edge.errors import EngineMismatchError
    from btnet_edge.trt_runtime.cache_key import require_match

    entry = plans["10.3"]["engines"][0]
    built = key_for(entry, ORIN)
    here = key_for(entry, RuntimeEnv("10.3.0", "NVIDIA GeForce RTX 4090", "8.9", 128, None))
    with pytest.raises(EngineMismatchError, match=r"Orin.*RTX 4090"):
        require_match(tmp_path / "branch_28.engine", here, built)


# --- CLI contract ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("version, path", [("8.6", BUILDER_FLAG_FP16), ("11.4", STRONGLY_TYPED_FP16)])
def test_cli_dry_run_contract(tiny_package, tmp_path, version, path):
    out_json = tmp_path / "plan.json"
    result = subprocess.run([sys.executable, str(TOOL), str(tiny_package), "--target", "desktop-fp16", "--dry-run",
                             "--json", str(out_json), "--trt-version", version, "--out", str(tmp_path / "eng")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    plan = json.loads(out_json.read_text())
    assert [e["name"] for e in plan["engines"]] == MERGED_NAMES  # "auto": one merged trunk with min-0 profiles
    for entry in plan["engines"]:
        assert {"name", "onnx", "sha256", "precision_path", "profiles"} <= set(entry)
        assert entry["precision_path"] == path
    assert (tmp_path / "eng" / "detector_retinaface.onnx").is_file()
    assert not list((tmp_path / "eng").glob("*.engine"))


BLOCKED = textwrap.dedent("""
    import sys
    sys.modules["tensorrt"] = None  # as on a machine without TensorRT, wherever this test runs
    from btnet_edge.cli.main import main
    sys.exit(main(sys.argv[1:]))
""")


@pytest.mark.parametrize("command", ["build", "check"])
def test_exit_2_without_tensorrt(tiny_package, tmp_path, command):
    args = (["build", str(tiny_package), "--target", "desktop-fp16", "--out", str(tmp_path / "eng")]
            if command == "build" else ["check", str(tiny_package), "--engines", str(tmp_path / "eng")])
    result = subprocess.run([sys.executable, "-c", BLOCKED, *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "JetPack" in result.stderr and "desktop" in result.stderr
    assert not (tmp_path / "eng").exists()  # failed before doing any work


def test_rtx_dry_run_without_tensorrt_rtx(tiny_package, tmp_path):
    """desktop-rtx plans without the module (simulated TensorRT for RTX 1.7): merged min-0 trunk, no trtexec."""
    blocked = BLOCKED.replace('sys.modules["tensorrt"] = None', 'sys.modules["tensorrt_rtx"] = None')
    out_json = tmp_path / "plan.json"
    result = subprocess.run([sys.executable, "-c", blocked, "build", str(tiny_package), "--target", "desktop-rtx",
                             "--dry-run", "--json", str(out_json), "--out", str(tmp_path / "eng")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    plan = json.loads(out_json.read_text())
    assert plan["tensorrt"]["module"] == "tensorrt_rtx" and plan["tensorrt"]["simulated"]
    assert [e["name"] for e in plan["engines"]] == MERGED_NAMES and plan["trunk"]["form"] == "merged"
    assert all(e["trtexec"] is None and e["precision_path"] == STRONGLY_TYPED_FP16 for e in plan["engines"])
    assert not list((tmp_path / "eng").glob("*.engine"))
