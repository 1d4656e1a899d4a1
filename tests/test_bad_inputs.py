"""Every subcommand with bad arguments and bad files: one error line, non-zero exit, no traceback, nothing lost.

The cases live in tools/bad_inputs.py, which prints the same figures as a table.
"""

from __future__ import annotations

import importlib.util
import shlex
import shutil
from pathlib import Path

from btnet_edge.cli.main import SUBCOMMANDS

TOOL = Path(__file__).resolve().parents[1] / "tools" / "bad_inputs.py"


def _tool():
    spec = importlib.util.spec_from_file_location("bad_inputs", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_bad_input_is_handled_cleanly_and_loses_nothing(tiny_package, tmp_path):
    tool = _tool()
    package = tmp_path / "pkg"
    shutil.copytree(tiny_package, package)
    rows = tool.run_all(package, tmp_path / "work")
    tried = {shlex.split(r["command"])[0] for r in rows}
    assert set(SUBCOMMANDS) <= tried, f"subcommands without a bad-input case: {set(SUBCOMMANDS) - tried}"
    unclean = [(r["case"], r["exit"], r["message"]) for r in rows if not r["clean"]]
    assert unclean == []
    assert sum(r["files_lost"] for r in rows) == 0
    assert tool.summary(rows) == {"tried": len(rows), "handled_cleanly": len(rows), "files_lost": 0}
    assert len(rows) >= 125
    labels = {r["case"] for r in rows}
    assert {twin for _, _, twin in tool.ORDER_CASES} <= labels  # every reordered case has its twin to match
    ordered = {shlex.split(line.replace("{PKG}", "p").replace("{W}", "w"))[0] for _, line, _ in tool.ORDER_CASES}
    with_positionals = {name for name in SUBCOMMANDS if name not in ("export", "eval-detect", "bench-gallery")}
    assert with_positionals <= ordered, f"subcommands without an option-order case: {with_positionals - ordered}"
    assert sum(r["case"].startswith("probe:") for r in rows) >= 9


def test_the_harness_counts_a_lost_file(tiny_package, tmp_path):
    """A command that does overwrite a user's file (a previous results file, by design) is counted."""
    rows = _tool().run_all(tiny_package, tmp_path / "work",
                           [("overwrite", "run {PKG} {W}/photos --json {W}/results.json --quiet")])
    assert [(r["exit"], r["clean"], r["files_lost"]) for r in rows] == [(0, False, 1)]
