"""The PostgreSQL gallery against a real server (pgvector), every SQLite guarantee checked again: one database per test.

Killed clients and a killed server are real SIGKILLs; the HNSW path is checked with
EXPLAIN and against exact search.
"""

from __future__ import annotations

import json
import os
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
SCHEMA = "btnet_gallery"
pytestmark = pytest.mark.postgres


def axis(i: int, d: int = D) -> np.ndarray:
    v = np.zeros(d, np.float32)
    v[i] = 1.0
    return v


def sql(url: str, statement: str, params=()) -> list:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


@pytest.fixture
def gallery(postgres_url: str):
    with Gallery(postgres_url, embedding_size=D, model_id="m:1") as g:
        g.enroll("alice", np.stack([axis(0), axis(1)]))
        g.enroll("bob", np.array([3.0, 4.0, 0.0, 0.0]))
        g.enroll("carol", np.array([0.0, 0.0, -2.0, 0.0]))
        yield g


def test_same_answers_as_sqlite(gallery: Gallery, postgres_url: str, tmp_path: Path) -> None:
    with Gallery(tmp_path / "g.db", embedding_size=D, model_id="m:1") as local:
        local.enroll("alice", np.stack([axis(0), axis(1)]))
        local.enroll("bob", np.array([3.0, 4.0, 0.0, 0.0]))
        local.enroll("carol", np.array([0.0, 0.0, -2.0, 0.0]))
        probes = np.stack([axis(0), axis(1) * 7, np.array([0.6, 0.8, 0, 0]), -axis(2)])
        assert gallery.identify(probes, top_k=3, threshold=-1.0) == local.identify(probes, top_k=3, threshold=-1.0)
        assert gallery.identities() == local.identities()
    (r0,) = gallery.identify(axis(0), top_k=3, threshold=-1.0)
    assert [(m.name, round(m.score, 6)) for m in r0] == [("alice", 1.0), ("bob", 0.6), ("carol", 0.0)]
    stored = sql(postgres_url, f"SELECT vector::text FROM {SCHEMA}.embeddings WHERE identity_id = 2")
    assert stored == [("[0.6,0.8,0,0]",)]  # float32 values, exactly


def test_thresholds_remove_rename_and_names(gallery: Gallery, postgres_url: str) -> None:
    gallery.thresholds = {112: 0.6, 14: 0.4}
    gallery.set_threshold(0.45)
    probe = np.array([0.0, 0.0, -0.5, 1.0])  # carol at cosine 0.447
    assert [len(r) for r in gallery.identify(np.stack([probe] * 3), probe_resolutions=[112, 14, 28])] == [0, 1, 0]
    with Gallery(postgres_url, readonly=True) as other:
        assert other.thresholds == {112: 0.6, 14: 0.4} and other.default_threshold == 0.45
        with pytest.raises(GalleryError, match="read-only"):
            other.enroll("dave", axis(3))
    assert gallery.remove("alice") and not gallery.remove("alice")
    assert sql(postgres_url, f"SELECT count(*) FROM {SCHEMA}.embeddings")[0][0] == 2  # cascaded
    gallery.rename("bob", "Zoë ")  # stored NFC, trimmed
    assert gallery.names() == ["Zoë", "carol"] or gallery.names() == ["carol", "Zoë"]
    assert "Zoe\u0308" in gallery  # the decomposed spelling is the same person
    with pytest.raises(GalleryError, match="already enrolled"):
        gallery.rename("carol", "Zoë")


def test_model_and_size_checks_and_missing_gallery(gallery: Gallery, postgres_url: str, postgres_server) -> None:
    with pytest.raises(GalleryError, match="4-d embeddings, the model gives 512-d"):
        Gallery(postgres_url, embedding_size=512)
    with pytest.raises(GalleryError, match="'m:1', not 'other:2'"):
        Gallery(postgres_url, model_id="other:2")
    empty = postgres_url.rsplit("/", 1)[0] + "/postgres"
    with pytest.raises(GalleryError, match="no gallery there"):
        Gallery(empty, create=False)
    with pytest.raises(GalleryError, match="cannot connect to PostgreSQL"):
        Gallery(f"postgresql://postgres@127.0.0.1:{postgres_server.port + 1}/x", create=False)


def test_a_failing_row_rolls_back_the_whole_identity(gallery: Gallery, postgres_url: str) -> None:
    sql(postgres_url, "CREATE FUNCTION boom() RETURNS trigger AS $$ BEGIN IF NEW.source = 'boom' THEN "
                      "RAISE EXCEPTION 'refused by test trigger'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql")
    sql(postgres_url, f"CREATE TRIGGER boom BEFORE INSERT ON {SCHEMA}.embeddings FOR EACH ROW EXECUTE FUNCTION boom()")
    before = sql(postgres_url, f"SELECT id, identity_id FROM {SCHEMA}.embeddings ORDER BY id")
    vectors = np.stack([axis(0) + axis(3), axis(1) + axis(3), axis(2) + axis(3), axis(3)])
    for name in ("alice", "newcomer"):
        with pytest.raises(GalleryError, match=r"refused by test trigger.*nothing was changed"):
            gallery.enroll(name, vectors, sources=["ok", "ok", "boom", "ok"])
    assert sql(postgres_url, f"SELECT id, identity_id FROM {SCHEMA}.embeddings ORDER BY id") == before
    assert "newcomer" not in gallery
    assert gallery.enroll("newcomer", vectors, sources="ok") == 4


def test_tampered_row_is_left_out_and_listed(gallery: Gallery, postgres_url: str) -> None:
    sql(postgres_url, f"ALTER TABLE {SCHEMA}.embeddings DROP CONSTRAINT unit_norm")  # what a hand edit needs first
    sql(postgres_url, f"UPDATE {SCHEMA}.embeddings SET vector = '[1000,1000,1000,1000]' WHERE identity_id = 2")
    strangers = np.random.default_rng(0).standard_normal((20, D))
    assert all(not row or row[0].name != "bob" or row[0].score <= 1.0 for row in gallery.identify(strangers))
    assert all(m.name != "bob" for row in gallery.identify(strangers, top_k=3, threshold=-1.0) for m in row)
    assert [(d.identity_id, "not 1" in d.reason) for d in gallery.damaged] == [(2, True)]


def test_the_constraint_refuses_a_non_unit_vector(gallery: Gallery, postgres_url: str) -> None:
    import psycopg

    with pytest.raises(psycopg.errors.CheckViolation):
        sql(postgres_url, f"UPDATE {SCHEMA}.embeddings SET vector = '[2,0,0,0]' WHERE identity_id = 1")
    with pytest.raises(psycopg.errors.DataException):  # pgvector refuses NaN outright
        sql(postgres_url, f"UPDATE {SCHEMA}.embeddings SET vector = '[NaN,0,0,0]' WHERE identity_id = 1")


def test_an_enrollment_through_one_connection_is_seen_by_the_next_search_of_another(gallery: Gallery,
                                                                                     postgres_url: str) -> None:
    with Gallery(postgres_url, readonly=True) as reader:
        assert reader.identify(axis(3), threshold=0.5) == [[]]
        gallery.enroll("dave", axis(3))
        assert reader.identify(axis(3), threshold=0.5) == [[Match("dave", pytest.approx(1.0), 4)]]
        gallery.remove("dave")
        assert reader.identify(axis(3), threshold=0.5) == [[]]


def test_hnsw_is_used_and_agrees_with_exact(postgres_url: str) -> None:
    d, n = 32, 3000
    rng = np.random.default_rng(4)
    rows = rng.standard_normal((n, d))
    with Gallery(postgres_url, embedding_size=d, index="ann") as ann, Gallery(postgres_url, index="exact") as exact:
        for start in range(0, n, 10):
            ann.enroll(f"p{start // 10:04d}", rows[start:start + 10])
        probes = rows[rng.choice(n, 50, replace=False)] + 0.5 * rng.standard_normal((50, d)) / np.sqrt(d)
        a = [r[0].name for r in ann.identify(probes, threshold=-1.0)]
        e = [r[0].name for r in exact.identify(probes, threshold=-1.0)]
        assert np.mean([x == y for x, y in zip(a, e)]) >= 0.98
        assert ann.index_info()["kind"] == "ann" and exact.index_info()["kind"] == "exact"
    plan = sql(postgres_url, f"EXPLAIN SELECT id FROM {SCHEMA}.embeddings ORDER BY vector <#> %s::vector LIMIT 256",
               ("[" + ",".join(["0.1"] * d) + "]",))
    assert "embeddings_hnsw" in " ".join(r[0] for r in plan)


PARKED_WRITER = """
import sys
import numpy as np
from btnet_edge.gallery import Gallery

g = Gallery(sys.argv[1], create=False)
print("enrolling", flush=True)
g.enroll("victim", np.random.default_rng(0).standard_normal((50, 4)) + 3.0, sources=[None] * 49 + ["last"])
"""


def _park_writer(url: str) -> subprocess.Popen:
    """A client inside enroll's transaction, its rows sent, stopped by a trigger on the last one."""
    sql(url, "CREATE FUNCTION park() RETURNS trigger AS $$ BEGIN IF NEW.source = 'last' THEN PERFORM pg_sleep(60); "
             "END IF; RETURN NEW; END $$ LANGUAGE plpgsql")
    sql(url, f"CREATE TRIGGER park BEFORE INSERT ON {SCHEMA}.embeddings FOR EACH ROW EXECUTE FUNCTION park()")
    proc = subprocess.Popen([sys.executable, "-c", PARKED_WRITER, url], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "enrolling", proc.stderr.read()
    deadline = time.monotonic() + 30
    while not sql(url, "SELECT 1 FROM pg_stat_activity WHERE wait_event = 'PgSleep'"):
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    return proc


def test_a_killed_client_leaves_nothing_half_written(gallery: Gallery, postgres_url: str) -> None:
    database = postgres_url.rsplit("/", 1)[1]
    sql(postgres_url, f"ALTER DATABASE {database} SET client_connection_check_interval = '100ms'")
    before = gallery.identities()
    proc = _park_writer(postgres_url)
    assert "victim" not in gallery  # uncommitted rows are invisible to everyone else
    proc.kill()
    proc.wait(timeout=10)
    proc.stdout.close()
    proc.stderr.close()
    deadline = time.monotonic() + 20  # the server notices the dead client and rolls its transaction back
    while sql(postgres_url, "SELECT 1 FROM pg_stat_activity WHERE wait_event = 'PgSleep'"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert gallery.identities() == before and "victim" not in gallery
    assert sql(postgres_url, f"SELECT count(*) FROM {SCHEMA}.embeddings")[0][0] == 4


def test_a_killed_server_keeps_every_committed_enrollment(gallery: Gallery, postgres_url: str,
                                                            postgres_server) -> None:
    before = gallery.identities()
    proc = _park_writer(postgres_url)
    try:
        postgres_server.kill()  # SIGKILL: no shutdown checkpoint; recovery replays the WAL
        with pytest.raises(GalleryError, match=r"cannot connect to PostgreSQL|unreachable"):
            gallery.identify(axis(0))
        postgres_server.start()
    finally:
        proc.kill()
        proc.communicate(timeout=10)
    assert gallery.identities() == before  # the same connection object reconnects for reads
    assert gallery.identify(axis(1))[0][0].name == "alice" and "victim" not in gallery
    sql(postgres_url, f"DROP TRIGGER park ON {SCHEMA}.embeddings")
    assert gallery.enroll("dave", axis(3)) == 1


def test_cli_lists_and_edits_a_postgresql_gallery(gallery: Gallery, postgres_url: str, capsys) -> None:
    from btnet_edge.cli.main import main

    assert main(["gallery", postgres_url, "--threshold", "0.5", "--resolution", "14"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["thresholds"] == {"14": 0.5} and [i["name"] for i in listing["identities"]] == ["alice", "bob",
                                                                                                    "carol"]
    assert main(["gallery", "--remove", "bob", postgres_url]) == 0
    assert [i["name"] for i in json.loads(capsys.readouterr().out)["identities"]] == ["alice", "carol"]
    assert gallery.identities()[0] == IdentityInfo("alice", 1, 2, (112,))
