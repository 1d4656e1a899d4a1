"""Gallery: real SQLite files in tmp_path, real subprocesses for kills and concurrent readers."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from btnet_edge.errors import GalleryError
from btnet_edge.gallery import Gallery, IdentityInfo, Match

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
D = 4


def axis(i: int, d: int = D) -> np.ndarray:
    v = np.zeros(d, np.float32)
    v[i] = 1.0
    return v


def dump(path: Path) -> tuple[list, list, list]:
    """Everything in the file, read with plain sqlite3: the ground truth the Gallery must not touch."""
    with sqlite3.connect(path) as conn:
        return (
            conn.execute("SELECT id, name FROM identities ORDER BY id").fetchall(),
            conn.execute("SELECT id, identity_id, vector, resolution, source FROM embeddings ORDER BY id").fetchall(),
            conn.execute("SELECT key, value FROM meta ORDER BY key").fetchall(),
        )


@pytest.fixture
def gallery(tmp_path: Path):
    with Gallery(tmp_path / "g.db", embedding_size=D) as g:
        g.enroll("alice", np.stack([axis(0), axis(1)]))  # max over embeddings: alice scores 1 on both axes
        g.enroll("bob", np.array([3.0, 4.0, 0.0, 0.0]))  # stored normalised: (0.6, 0.8, 0, 0)
        g.enroll("carol", np.array([0.0, 0.0, -2.0, 0.0]))
        yield g


def test_identify_top_k_with_exact_cosines(gallery: Gallery) -> None:
    (r0, r1) = gallery.identify(np.stack([axis(0), axis(1) * 7]), top_k=3, threshold=-1.0)
    assert [(m.name, round(m.score, 6)) for m in r0] == [("alice", 1.0), ("bob", 0.6), ("carol", 0.0)]
    assert [(m.name, round(m.score, 6)) for m in r1] == [("alice", 1.0), ("bob", 0.8), ("carol", 0.0)]
    probe = np.array([0.6, 0.8, 0.0, 0.0])  # alice's max is 0.8 (axis 1), bob's is exactly 1
    [top] = gallery.identify(probe, top_k=2, threshold=-1.0)
    assert [m.name for m in top] == ["bob", "alice"]
    assert top[0].score == pytest.approx(1.0, abs=1e-6) and top[1].score == pytest.approx(0.8, abs=1e-6)
    assert gallery.identify(-axis(2), threshold=-1.0)[0][0] == Match("carol", pytest.approx(1.0), 3)


def test_enroll_stores_raw_normalised_float32(gallery: Gallery, tmp_path: Path) -> None:
    assert gallery.enroll("dave", np.array([[0.0, 0.0, 0.0, 5.0], [0.0, 0.0, 1.0, 1.0]]),
                          resolutions=[14, 7], sources=["a.jpg", None]) == 2
    _, rows, meta = dump(tmp_path / "g.db")
    dave = [r for r in rows if r[1] == 4]
    assert [bytes(r[2]) for r in dave] == [np.array([0, 0, 0, 1], "<f4").tobytes(),
                                           np.array([0, 0, 2 ** -0.5, 2 ** -0.5], "<f4").tobytes()]
    assert [(r[3], r[4]) for r in dave] == [(14, "a.jpg"), (7, None)]
    assert dict(meta)["embedding_size"] == "4" and dict(meta)["schema_version"] == "1"
    assert gallery.identities() == [IdentityInfo("alice", 1, 2, (112,)), IdentityInfo("bob", 2, 1, (112,)),
                                    IdentityInfo("carol", 3, 1, (112,)), IdentityInfo("dave", 4, 2, (7, 14))]
    assert gallery.enroll("dave", axis(0) + axis(2), resolutions=28) == 1  # an existing name gains embeddings
    assert gallery.identities()[-1] == IdentityInfo("dave", 4, 3, (7, 14, 28))
    assert len(gallery) == 4 and "dave" in gallery and "eve" not in gallery and 4 not in gallery


def test_open_set_threshold_drops_unknowns(gallery: Gallery) -> None:
    probes = np.stack([axis(0), axis(3), np.array([0.0, 0.0, -0.5, 1.0])])  # known, orthogonal, cos 0.447
    r = gallery.identify(probes, top_k=3, threshold=0.5)
    assert [[m.name for m in row] for row in r] == [["alice", "bob"], [], []]
    r = gallery.identify(probes, top_k=3, threshold=0.4)
    assert [[m.name for m in row] for row in r] == [["alice", "bob"], [], ["carol"]]
    assert r[2][0].score == pytest.approx(0.5 / np.sqrt(1.25), abs=1e-6)
    gallery.set_threshold(0.7)  # the stored default applies when threshold is None
    assert [[m.name for m in row] for row in gallery.identify(probes, top_k=3)] == [["alice"], [], []]


def test_per_resolution_thresholds_apply_and_persist(gallery: Gallery, tmp_path: Path) -> None:
    probe = np.array([0.0, 0.0, -0.5, 1.0])  # carol at cosine 0.447
    assert gallery.default_threshold == pytest.approx(0.3)
    gallery.thresholds = {112: 0.6, 14: 0.4}
    gallery.set_threshold(0.5, resolution=7)
    gallery.set_threshold(0.45)
    probes = np.stack([probe] * 4)
    r = gallery.identify(probes, probe_resolutions=[112, 14, 7, 28])
    assert [[m.name for m in row] for row in r] == [[], ["carol"], [], []]  # 28 falls back to the default 0.45
    gallery.close()
    with Gallery(tmp_path / "g.db", create=False) as g:
        assert g.thresholds == {112: 0.6, 14: 0.4, 7: 0.5} and g.default_threshold == 0.45
        assert [len(row) for row in g.identify(probes, probe_resolutions=[112, 14, 7, 28])] == [0, 1, 0, 0]
        g.thresholds = {28: 0.1}  # replaces the whole per-resolution map
        assert [len(row) for row in g.identify(probes, probe_resolutions=[112, 14, 7, 28])] == [0, 0, 0, 1]
        with pytest.raises(GalleryError, match="one resolution per probe"):
            g.identify(probes, probe_resolutions=[112])
        for bad in (1.5, float("nan"), True):
            with pytest.raises(GalleryError, match=r"cosine in \[-1, 1\]"):
                g.set_threshold(bad)  # type: ignore[arg-type]
        with pytest.raises(GalleryError, match="positive int"):
            g.thresholds = {0: 0.5}
        assert g.thresholds == {28: 0.1}


def test_remove_cascades_and_rename(gallery: Gallery, tmp_path: Path) -> None:
    assert gallery.remove("alice") is True and gallery.remove("alice") is False
    ids, rows, _ = dump(tmp_path / "g.db")
    assert [n for _, n in ids] == ["bob", "carol"] and sorted(r[1] for r in rows) == [2, 3]  # embeddings went too
    assert [m.name for m in gallery.identify(axis(0), top_k=3, threshold=-1.0)[0]] == ["bob", "carol"]
    gallery.rename("bob", "robert")
    assert gallery.names() == ["carol", "robert"]
    assert gallery.identify(axis(1))[0] == [Match("robert", pytest.approx(0.8), 2)]
    with pytest.raises(GalleryError, match="already enrolled"):
        gallery.rename("robert", "carol")
    with pytest.raises(GalleryError, match="not enrolled"):
        gallery.rename("nobody", "x")
    assert gallery.names() == ["carol", "robert"]


def test_persists_across_reopen(gallery: Gallery, tmp_path: Path) -> None:
    before = gallery.identify(np.stack([axis(0), axis(1)]), top_k=3, threshold=-1.0)
    gallery.close()
    with pytest.raises(GalleryError, match="closed"):
        gallery.names()
    with Gallery(tmp_path / "g.db", create=False) as g:
        assert g.names() == ["alice", "bob", "carol"] and g.embedding_size == D
        assert g.identify(np.stack([axis(0), axis(1)]), top_k=3, threshold=-1.0) == before


def test_size_and_model_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    Gallery(path, embedding_size=D, model_id="btnet_r50.survface:abc123").close()
    with pytest.raises(GalleryError, match="4-d embeddings, the model gives 512-d"):
        Gallery(path, embedding_size=512)
    with pytest.raises(GalleryError, match=r"'btnet_r50\.survface:abc123', not 'other:def'"):
        Gallery(path, model_id="other:def")
    with Gallery(path, embedding_size=D, model_id="btnet_r50.survface:abc123") as g:
        assert g.model_id == "btnet_r50.survface:abc123"


def test_missing_file_without_create(tmp_path: Path) -> None:
    with pytest.raises(GalleryError, match="no gallery there; check the path, or enroll"):
        Gallery(tmp_path / "none.db", embedding_size=D, create=False)
    with pytest.raises(GalleryError, match="no embedding size to create one with"):
        Gallery(tmp_path / "none.db")
    assert list(tmp_path.iterdir()) == []


def test_garbage_file_is_rejected_and_left_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    garbage = b"\xff\xd8\xff\xe0 not a database " + bytes(range(256)) * 16
    path.write_bytes(garbage)
    with pytest.raises(GalleryError, match=r"is not a btnet-edge gallery.*pass a new path or delete it"):
        Gallery(path, embedding_size=D)
    assert path.read_bytes() == garbage and sorted(p.name for p in tmp_path.iterdir()) == ["photo.jpg"]


def test_foreign_sqlite_and_other_schema_version(tmp_path: Path) -> None:
    foreign = tmp_path / "app.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE users (id INTEGER)")
    conn.close()
    original = foreign.read_bytes()
    with pytest.raises(GalleryError, match=r"tables \['users'\]; pass a new path or delete it"):
        Gallery(foreign, embedding_size=D)
    assert foreign.read_bytes() == original  # not switched to WAL, not given our tables
    ours = tmp_path / "g.db"
    Gallery(ours, embedding_size=D).close()
    with sqlite3.connect(ours) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.close()
    with pytest.raises(GalleryError, match="schema version 99, this btnet-edge reads version 1"):
        Gallery(ours)


@pytest.mark.parametrize("bad, message", [
    (np.ones(5), r"shape \(N, 4\)"),
    (np.ones((2, 3)), r"shape \(N, 4\)"),
    (np.zeros((0, 4)), r"shape \(N, 4\)"),
    (np.array([[1.0, 0, 0, 0], [np.nan, 0, 0, 0]]), r"rows \[1\] contain NaN"),
    (np.array([[1.0, 0, 0, 0], [0, np.inf, 0, 0]]), r"rows \[1\] contain NaN or inf"),
    (np.array([[1.0, 0, 0, 0], [0, 0, 0, 0]]), r"rows \[1\] are zero vectors"),
    (np.array(["a", "b", "c", "d"]), "numeric array"),
])
def test_bad_embeddings_change_nothing(gallery: Gallery, tmp_path: Path, bad: np.ndarray, message: str) -> None:
    before = dump(tmp_path / "g.db")
    with pytest.raises(GalleryError, match=message):
        gallery.enroll("alice", bad)
    with pytest.raises(GalleryError, match=message):
        gallery.enroll("newcomer", bad)
    with pytest.raises(GalleryError, match=message):
        gallery.identify(bad)
    assert dump(tmp_path / "g.db") == before


def test_bad_arguments_change_nothing(gallery: Gallery, tmp_path: Path) -> None:
    before = dump(tmp_path / "g.db")
    for kwargs, message in [({"resolutions": [112]}, "resolutions"), ({"resolutions": 0}, "resolutions"),
                            ({"sources": ["a"]}, "sources"), ({"sources": [1, 2]}, "sources")]:
        with pytest.raises(GalleryError, match=message):
            gallery.enroll("newcomer", np.stack([axis(0), axis(1)]), **kwargs)
    for name in ("", "  ", None):
        with pytest.raises(GalleryError, match="non-empty str"):
            gallery.enroll(name, axis(0))  # type: ignore[arg-type]
    with pytest.raises(GalleryError, match="top_k"):
        gallery.identify(axis(0), top_k=0)
    assert dump(tmp_path / "g.db") == before
    with Gallery(tmp_path / "empty.db", embedding_size=D) as empty:
        assert empty.identify(np.stack([axis(0), axis(1)]), top_k=5, threshold=-1.0) == [[], []]


def test_write_failing_midway_rolls_back(gallery: Gallery, tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    with sqlite3.connect(path) as conn:  # a database-level failure on the 3rd row of a batch
        conn.execute("CREATE TRIGGER boom BEFORE INSERT ON embeddings WHEN NEW.source = 'boom' "
                     "BEGIN SELECT RAISE(ABORT, 'refused by test trigger'); END")
    conn.close()
    before = dump(path)
    vectors = np.stack([axis(0), axis(1), axis(2), axis(3)])
    for name in ("alice", "newcomer"):  # existing identity and one whose row was inserted in the same transaction
        with pytest.raises(GalleryError, match="refused by test trigger; nothing was changed"):
            gallery.enroll(name, vectors, sources=["ok", "ok", "boom", "ok"])
    assert dump(path) == before and "newcomer" not in gallery
    assert gallery.identify(axis(3), threshold=-1.0)[0][0].name != "newcomer"
    assert gallery.enroll("newcomer", vectors, sources="ok") == 4  # the connection is usable afterwards


KILLED_WRITER = """
import sys, time
from pathlib import Path
import numpy as np
from btnet_edge.gallery import Gallery

g = Gallery(sys.argv[1], create=False)
marker = Path(sys.argv[2])
conn = g._store._conn  # test hook: park the process inside enroll's transaction, after most rows are written
conn.execute("PRAGMA cache_size=-64")  # a tiny page cache, so uncommitted pages spill into the WAL file

def park():
    marker.write_text("inside the transaction")
    time.sleep(60)
    return 0

conn.create_function("park", 0, park)
conn.execute("CREATE TEMP TRIGGER park AFTER INSERT ON main.embeddings WHEN NEW.source = 'last' "
             "BEGIN SELECT park(); END")
n = 3000
vectors = np.random.default_rng(0).standard_normal((n, 128)) + 0.1
g.enroll("victim", vectors, sources=[None] * (n - 1) + ["last"])
"""


def test_sigkill_mid_transaction_keeps_committed_identities(tmp_path: Path) -> None:
    path, marker = tmp_path / "g.db", tmp_path / "marker"
    rng = np.random.default_rng(1)
    with Gallery(path, embedding_size=128) as g:
        g.enroll("alice", rng.standard_normal((3, 128)))
        g.enroll("bob", rng.standard_normal((2, 128)))
    before = dump(path)
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(path), str(marker)], env=ENV,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert marker.exists(), f"writer never reached its transaction: {proc.stderr.read().decode()[-2000:]}"
        wal = Path(f"{path}-wal")
        assert wal.stat().st_size > 1_000_000  # uncommitted rows really are on disk when the writer dies
    finally:
        proc.kill()  # SIGKILL on POSIX: no cleanup, no rollback by the writer
        proc.wait(timeout=10)
        proc.stderr.close()
    if os.name == "posix":
        assert proc.returncode == -9
    with Gallery(path, create=False) as g:
        assert g.names() == ["alice", "bob"] and "victim" not in g
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        conn.close()
        assert g.enroll("carol", rng.standard_normal(128)) == 1  # the dead writer's lock is gone
    after = dump(path)
    assert after[0] == before[0] + [(3, "carol")] and after[1][:5] == before[1] and len(after[1]) == 6


READER = """
import json, sys, time
import numpy as np
from btnet_edge.gallery import Gallery

path, total, per, d = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
seen, errors = [], []
with Gallery(path, create=False) as g:
    print("ready", flush=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        infos = g.identities()
        errors += [f"{i.name} has {i.count} embeddings" for i in infos if i.count != per]
        if infos:  # every identity listed is found by its own axis: the matrix cache followed the writer
            axes = [int(i.name[3:]) for i in infos]
            for a, row in zip(axes, g.identify(np.eye(d)[axes], threshold=0.99)):
                if not row or row[0].name != f"id-{a}":
                    errors.append(f"axis {a} -> {row}")
        if not seen or seen[-1] != len(infos):
            seen.append(len(infos))
        if len(infos) == total:
            break
        time.sleep(0.001)
print(json.dumps({"seen": seen, "errors": errors[:5]}))
"""


def test_concurrent_readers_see_whole_enrolments(tmp_path: Path) -> None:
    path, total, per, d = tmp_path / "g.db", 40, 3, 64
    Gallery(path, embedding_size=d).close()
    readers = [subprocess.Popen([sys.executable, "-c", READER, str(path), str(total), str(per), str(d)], env=ENV,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        for r in readers:
            assert r.stdout.readline().strip() == "ready", r.stderr.read()
        with Gallery(path, create=False) as g:
            for i in range(total):
                nxt = np.eye(d)[(i + 1) % d]
                g.enroll(f"id-{i}", np.stack([np.eye(d)[i], np.eye(d)[i] + 0.3 * nxt, np.eye(d)[i] + 0.6 * nxt]))
                time.sleep(0.005)  # give the readers a chance to look between enrolments
        results = []
        for r in readers:
            out, err = r.communicate(timeout=30)
            assert r.returncode == 0, err
            results.append(json.loads(out))
    finally:
        for r in readers:
            if r.poll() is None:
                r.kill()
                r.communicate()
    for res in results:
        assert res["errors"] == [] and res["seen"][-1] == total
        assert res["seen"] == sorted(res["seen"])  # never goes back: no half-visible or lost write
    assert any(0 < n < total for res in results for n in res["seen"]), "readers never ran during the writes"


def test_cache_follows_other_connections(gallery: Gallery, tmp_path: Path) -> None:
    assert gallery.identify(axis(3), threshold=0.5) == [[]]
    loads = gallery.cache_loads
    gallery.identify(axis(0))
    assert gallery.cache_loads == loads  # nothing changed: no reload
    with Gallery(tmp_path / "g.db", create=False) as other:
        other.enroll("dave", axis(3))
        assert gallery.identify(axis(3), threshold=0.5) == [[Match("dave", pytest.approx(1.0), 4)]]
        assert gallery.cache_loads == loads + 1
        other.set_threshold(0.9, resolution=14)
        assert gallery.thresholds == {14: 0.9}
        other.remove("dave")
        assert gallery.identify(axis(3), threshold=0.5) == [[]]
    gallery.enroll("erin", axis(3))  # our own writes invalidate too
    assert gallery.identify(axis(3), threshold=0.5)[0][0].name == "erin"
