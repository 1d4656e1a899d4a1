"""The runtime imports and its CLI starts with torch, onnx, tensorrt and cuda blocked."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.isolation

# Torch-land: model definitions and the exporter need the export extra by design.
TORCH_MODULES = {
    "btnet_edge.models.iresnet", "btnet_edge.models.mobilefacenet", "btnet_edge.models.units",
    "btnet_edge.models.btnet", "btnet_edge.export.graphs", "btnet_edge.export.package_writer",
}

SCRIPT = textwrap.dedent("""
    import importlib, json, pkgutil, sys
    for name in ("torch", "torchvision", "onnx", "tensorrt", "cuda", "pycuda"):
        sys.modules[name] = None  # any import of these now fails
    import btnet_edge
    ok, failed = [], {}
    for info in pkgutil.walk_packages(btnet_edge.__path__, "btnet_edge."):
        try:
            importlib.import_module(info.name)
            ok.append(info.name)
        except ImportError as exc:
            failed[info.name] = str(exc)
    from btnet_edge.cli.main import main
    codes = {}
    for argv in (["-h"], ["export", "-h"], ["info", "-h"]):
        try:
            main(argv)
        except SystemExit as exc:
            codes[" ".join(argv)] = exc.code
    code_export = main(["export", "--arch", "test_btnet", "--out", sys.argv[1]])
    print(json.dumps({"ok": ok, "failed": failed, "help": codes, "export": code_export}))
""")


def test_runtime_imports_without_torch(tmp_path):
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "p")], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    import json

    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(report["failed"]) <= TORCH_MODULES, report["failed"]
    assert "btnet_edge.package.loader" in report["ok"] and "btnet_edge.backends.ort" in report["ok"]
    assert set(report["help"].values()) == {0}
    assert report["export"] == 2  # MissingDependencyError: names the extra to install
    assert "btnet-edge[export]" in result.stderr


RUNTIME_SCRIPT = textwrap.dedent("""
    import sys
    for name in ("torch", "torchvision", "onnx", "tensorrt", "cuda", "pycuda"):
        sys.modules[name] = None
    import numpy as np
    from btnet_edge import Recognizer
    rec = Recognizer(sys.argv[1])
    faces = rec.get(np.full((120, 160, 3), 100, np.uint8))
    emb = rec.embed(np.zeros((2, 14, 14, 3), np.uint8), 14)
    print(len(faces), emb.shape)
""")


def test_recognizer_runs_without_torch(tiny_package):
    result = subprocess.run([sys.executable, "-c", RUNTIME_SCRIPT, str(tiny_package)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "(2,", "64)"]
