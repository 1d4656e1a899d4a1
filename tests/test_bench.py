"""btnet-edge bench: the report's shape (the JSON contract), the plot, the frame benchmark. Never timing figures."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from btnet_edge.bench.env import cpu_info
from btnet_edge.bench.timing import TimingPlan, median_is_stable, run_interleaved
from btnet_edge.cli.main import main
from btnet_edge.errors import ConfigError, MissingDependencyError

from .conftest import FIXTURES, ROOT, needs_fixtures

ROW_KEYS = {"resolution", "batch", "mode", "p50_ms", "p90_ms", "p99_ms", "faces_per_s", "baseline_p50_ms", "speedup"}
ONE_ROUND = ["--repeats", "1", "--warmup", "0", "--min-time-s", "0", "--quiet"]
SCENES = FIXTURES / "images" / "scenes"


def _bench(tmp_path: Path, package: Path, *extra: str) -> dict:
    out = tmp_path / "bench.json"
    assert main(["bench", str(package), *ONE_ROUND, "--json", str(out), *extra]) == 0
    return json.loads(out.read_text())


def test_report_follows_the_contract_and_plots(tiny_package, tmp_path):
    png = tmp_path / "plots" / "latency.png"
    doc = _bench(tmp_path, tiny_package, "--batch", "1,2", "--mode", "both", "--plot", str(png))
    assert set(doc) == {"env", "rows", "frames"}
    assert {(r["resolution"], r["batch"], r["mode"]) for r in doc["rows"]} == {
        (res, b, m) for res in (7, 14, 28, 112) for b in (1, 2) for m in ("shared", "fused")}
    for row in doc["rows"]:
        assert set(row) == ROW_KEYS
        assert all(isinstance(row[k], int) for k in ("resolution", "batch"))
        assert all(isinstance(row[k], float) for k in ROW_KEYS - {"resolution", "batch", "mode"})
        if row["resolution"] == 112:
            assert row["speedup"] == 1.0 and row["p50_ms"] == row["baseline_p50_ms"]
    env = doc["env"]
    assert {"cpu", "gpu", "backend", "backend_version", "threads", "package"} <= set(env)
    assert env["backend"] == "onnxruntime" and env["threads"] >= 1
    assert env["package"]["architecture"] == "test_btnet" and env["package"]["weights"] == "random"
    assert env["cpu"]["physical_cores"] >= 1 and env["bench"]["timed_from"] == "tensors"
    mixed = [f for f in doc["frames"] if f["kind"] == "mixed"]
    assert len(mixed) == 1 and mixed[0]["graph_runs"] == {"shared": 4, "fused_per_face": 8}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_shared_mode_from_crops_skips_fused_rows_and_the_mixed_frame(tiny_package, tmp_path):
    doc = _bench(tmp_path, tiny_package, "--resolutions", "7,112", "--batch", "2", "--mode", "shared",
                 "--from-crops")
    assert [(r["resolution"], r["mode"]) for r in doc["rows"]] == [(112, "shared"), (7, "shared")]
    assert doc["frames"] == [] and doc["env"]["bench"]["timed_from"] == "crops"


def test_fused_mode_needs_fused_graphs(tiny_package, tmp_path, capsys):
    plain = tmp_path / "plain"
    shutil.copytree(tiny_package, plain)
    manifest = json.loads((plain / "manifest.json").read_text())
    manifest["fused"] = []
    (plain / "manifest.json").write_text(json.dumps(manifest))
    assert main(["bench", str(plain), *ONE_ROUND, "--mode", "fused"]) == ConfigError.exit_code
    assert "--fused" in capsys.readouterr().err
    doc = _bench(tmp_path, plain, "--resolutions", "14", "--batch", "1")  # both: fused rows skipped, not an error
    assert [r["mode"] for r in doc["rows"]] == ["shared"] and doc["frames"] == []


def test_unknown_resolution_and_bad_batch_are_refused(tiny_package, capsys):
    assert main(["bench", str(tiny_package), *ONE_ROUND, "--resolutions", "21"]) == ConfigError.exit_code
    assert "21" in capsys.readouterr().err
    assert main(["bench", str(tiny_package), *ONE_ROUND, "--batch", "0"]) == ConfigError.exit_code
    assert main(["bench", str(tiny_package), *ONE_ROUND, "--resolutions", "seven"]) == ConfigError.exit_code


@needs_fixtures(SCENES)
def test_frame_benchmark_reports_stages_on_fixture_scenes(mfn_package, tmp_path):
    scenes = [str(SCENES / "two_people.jpg"), str(SCENES / "t1.jpg")]
    doc = _bench(tmp_path, mfn_package, "--resolutions", "112", "--batch", "1", "--frames", *scenes)
    staged = [f for f in doc["frames"] if f["kind"] != "mixed"]
    assert [Path(f["source"]).name for f in staged] == ["two_people.jpg", "t1.jpg", "all"]
    for entry in staged:
        assert entry["frames"] == (2 if entry["kind"] == "all" else 1) and entry["fps"] > 0
        assert set(entry["ms_per_frame"]) == {"detect", "align", "branches", "trunk", "gallery", "total"}
        assert 0.0 <= entry["share_outside_models"] <= entry["share_outside_branches_trunk"] <= 1.0
    assert 6 <= staged[1]["faces_per_frame"] <= 8  # t1.jpg: six faces, and up to two doubtful small boxes
    routes = staged[1]["faces_by_route"]
    assert routes["trunk"] >= 6 and "branch" not in routes  # the fixture package's branches are untrained
    for entry in staged:  # detection time per pass: the small-face pass is visible
        assert {"coarse", "enlarged"} <= set(entry["detect_ms_per_pass"]) <= {"coarse", "enlarged", "verify"}
        passes = sum(entry["detect_ms_per_pass"].values())
        assert 0 < passes <= entry["ms_per_frame"]["detect"] * 1.001
    assert [f["kind"] for f in doc["frames"]].count("mixed") == 1


def test_interleaved_rounds_warm_up_and_stop_at_the_floor():
    calls = {"a": 0, "b": 0}
    cases = {name: (lambda n=name: calls.__setitem__(n, calls[n] + 1)) for name in calls}
    stats = run_interleaved(cases, TimingPlan(warmup=2, repeats=3, min_time_s=0.0))
    assert calls == {"a": 5, "b": 5} and {s.samples for s in stats.values()} == {3}
    assert stats["a"].p50_ms <= stats["a"].p90_ms <= stats["a"].p99_ms


def test_median_stability_and_plan_checks():
    assert median_is_stable([1.0, 1.0, 1.0, 1.01, 1.0], rel=0.05)
    assert not median_is_stable([1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0], rel=0.05)
    with pytest.raises(ConfigError):
        TimingPlan(repeats=0)
    with pytest.raises(ConfigError):
        TimingPlan(repeats=10, max_repeats=5)


def test_cpu_info_counts_physical_cores(tmp_path):
    block = "processor\t: {i}\nmodel name\t: Test CPU\nphysical id\t: 0\ncore id\t\t: {core}\n\n"
    (tmp_path / "cpuinfo").write_text("".join(block.format(i=i, core=i // 2) for i in range(4)))  # 2 cores, SMT
    info = cpu_info(tmp_path / "cpuinfo")
    assert info["model"] == "Test CPU" and info["physical_cores"] == 2


def test_plot_without_matplotlib_names_the_extra(monkeypatch, tmp_path):
    from btnet_edge.bench.per_resolution import Row
    from btnet_edge.bench.report import plot_rows

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingDependencyError, match=r"btnet-edge\[plot\]"):
        plot_rows([Row(7, 1, "shared", 1.0, 1.0, 1.0, 1000.0, 2.0, 2.0)], tmp_path / "x.png")


def test_tool_wrapper_is_the_cli():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "benchmark.py"), "-h"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and "--from-crops" in result.stdout
