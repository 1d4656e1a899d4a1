"""Imports run one way, as the data flows: every import of every module (lazy ones in functions too) is checked.

The rules (docs/design.md, "Layers"): nothing below ``cli/`` imports ``cli/``; backends know
neither faces nor detectors (no ``pipeline``) nor engine building; TensorRT's run side
(``trt_runtime``) never imports its build side (``trt_build``); the pipeline is below the
face server, the facade, the CLI and the builder (which imports ``pipeline.preprocess``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "btnet_edge"

# importer layer -> layers it must never import
FORBIDDEN = {
    "backends": {"pipeline", "trt_build", "trt_runtime", "cli", "serve", "app", "bench", "evaluation", "training"},
    "package": {"pipeline", "backends", "trt_build", "trt_runtime", "export", "cli", "serve", "app"},
    "trt_runtime": {"trt_build", "pipeline", "cli", "serve", "app", "bench", "evaluation", "training", "export"},
    "trt_build": {"cli", "serve", "app", "bench", "evaluation", "training"},
    "pipeline": {"trt_build", "cli", "serve", "app", "bench", "evaluation", "training", "export"},
    "gallery": {"trt_build", "trt_runtime", "cli", "serve", "app", "bench", "evaluation", "training", "export"},
    "serve": {"cli"},
    "app": {"cli", "serve"},
    "bench": {"cli"},
    "evaluation": {"cli"},
    "training": {"cli"},
    "export": {"cli", "serve", "app"},
    "models": {"cli", "pipeline", "serve", "backends"},
}


def _module_name(path: Path, root: Path = PACKAGE) -> list[str]:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def imports_of(path: Path, root: Path = PACKAGE) -> list[tuple[int, str]]:
    """(line, absolute module) of every btnet_edge import in ``path``, wherever it sits (top level or function)."""
    name = _module_name(path, root)
    package = name if path.name == "__init__.py" else name[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            targets = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        found += [(node.lineno, t) for t in targets if t == "btnet_edge" or t.startswith("btnet_edge.")]
    return found


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def violations(root: Path = PACKAGE) -> list[str]:
    problems = []
    for path in sorted(root.rglob("*.py")):
        if "templates" in path.parts:  # files written out for users (the Triton client), not our modules
            continue
        importer = _layer(".".join(_module_name(path, root)))
        for line, target in imports_of(path, root):
            if _layer(target) in FORBIDDEN.get(importer, set()):
                problems.append(f"{path.relative_to(root.parent)}:{line}: {importer} imports {target}")
    return problems


def test_imports_follow_the_layer_order():
    assert violations() == []


def test_the_walk_sees_lazy_imports_and_fails_on_them(tmp_path):
    """The checker itself: a function-level import of the build side from the run side is reported."""
    package = tmp_path / "btnet_edge"
    (package / "trt_runtime").mkdir(parents=True)
    (package / "pipeline").mkdir()
    (package / "__init__.py").write_text("")
    (package / "trt_runtime" / "__init__.py").write_text("")
    (package / "pipeline" / "__init__.py").write_text("")
    (package / "trt_runtime" / "runner.py").write_text(
        "def rebuild():\n    from ..trt_build.builder import build_engine\n    return build_engine\n")
    (package / "pipeline" / "recognizer.py").write_text("import btnet_edge.cli.options\n")
    found = violations(package)
    assert found == ["btnet_edge/pipeline/recognizer.py:1: pipeline imports btnet_edge.cli.options",
                     "btnet_edge/trt_runtime/runner.py:2: trt_runtime imports btnet_edge.trt_build.builder"]


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_every_ruled_layer_exists(layer):
    """A renamed package must not leave a rule that checks nothing."""
    assert (PACKAGE / layer).is_dir()
