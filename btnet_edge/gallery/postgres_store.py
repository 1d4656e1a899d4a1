"""The shared gallery store: PostgreSQL with pgvector, one gallery per database, searched by the server.

Every front-end, camera box or CLI that opens ``postgresql://user@host/db`` sees the
same identities the moment an enrollment commits: nothing is cached here. Guarantees
kept from SQLite: one transaction per identity (all rows or none), the model id and
embedding size in a meta table checked on open, and durability from PostgreSQL itself
(WAL, ``synchronous_commit``): a killed client rolls back, a killed server recovers what
was committed. Stored vectors must be of unit norm (a CHECK constraint); candidates the
server returns are checked and rescored by the gallery. Search: an exact scan, or
pgvector's HNSW index (``vector_ip_ops``, maintained by the server on every insert).
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .._deps import require
from ..errors import GalleryError
from .records import DEFAULT_THRESHOLD, NORM_TOLERANCE, THRESHOLD_KEY, VECTOR_DTYPE, IdentityInfo
from .storage import FORMAT_TAG, SCHEMA_VERSION, GalleryStore, KeepRows, RowBlock

log = logging.getLogger(__name__)

SCHEMA = "btnet_gallery"
CONNECT_TIMEOUT_S = 5
STATEMENT_TIMEOUT_MS = 30_000
MIN_PGVECTOR = (0, 5, 0)  # HNSW indexes
HNSW_M, HNSW_EF_CONSTRUCTION = 16, 64
_CREATE_LOCK = 0x6274_6E65  # advisory lock key: one creator at a time


def redacted(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def vector_text(vector: np.ndarray) -> str:
    """pgvector's text form; float32 values printed exactly (repr of their float64 value round-trips)."""
    return "[" + ",".join(repr(float(v)) for v in vector) + "]"


def parse_vector(text: str) -> np.ndarray:
    return np.array(text.strip("[]").split(","), dtype=VECTOR_DTYPE)


class PostgresStore(GalleryStore):
    searches_itself = True

    def __init__(self, url: str, readonly: bool = False) -> None:
        self.url = url
        self.where = redacted(url)
        self.readonly = readonly
        self._conn: Any = None  # a psycopg connection; None before the first connect, False once closed
        self._dim = 0
        self._index = "auto"

    # Connection

    def _psycopg(self):
        return require("psycopg", extra="postgres")

    def _connect(self):
        psycopg = self._psycopg()
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
        except psycopg.Error as exc:
            raise GalleryError(f"{self.where}: cannot connect to PostgreSQL ({_first_line(exc)}); check the URL, that "
                               "the server runs and accepts this user, then retry") from None
        conn.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
        if self.readonly:
            conn.execute("SET default_transaction_read_only = on")
        return conn

    def _db(self):
        if self._conn is None or self._conn.closed:
            if self._conn is False:
                raise GalleryError(f"{self.where}: gallery is closed; open a new Gallery")
            self._conn = self._connect()
        return self._conn

    def _read(self, what: str, fn):
        """Run a read; a connection lost to a restarted server is reopened once and the read retried."""
        psycopg = self._psycopg()
        for attempt in (1, 2):
            try:
                return fn(self._db())
            except psycopg.OperationalError as exc:
                if self._conn is not None and self._conn is not False and not self._conn.closed:
                    self._conn.close()
                self._conn = None
                if attempt == 2:
                    raise GalleryError(f"{self.where}: cannot {what}: the PostgreSQL server is unreachable "
                                       f"({_first_line(exc)}); retry when it is back") from None
            except psycopg.Error as exc:
                raise GalleryError(f"{self.where}: cannot {what} ({_first_line(exc)})") from None

    def _write(self, what: str, fn):
        """Run ``fn(conn)`` in one transaction; never retried (it may have committed before the link broke)."""
        if self.readonly:
            raise GalleryError(f"{self.where}: opened read-only; cannot {what}")
        psycopg = self._psycopg()
        try:
            conn = self._db()
            with conn.transaction():
                return fn(conn)
        except psycopg.OperationalError as exc:
            self._conn = None
            raise GalleryError(f"{self.where}: cannot {what}: the connection to PostgreSQL was lost "
                               f"({_first_line(exc)}); it was rolled back unless the commit itself was cut: check "
                               "with `btnet-edge gallery` and retry (embeddings already stored are not stored twice)"
                               ) from None
        except psycopg.Error as exc:
            raise GalleryError(f"{self.where}: cannot {what} ({_first_line(exc)}); nothing was changed") from None

    def close(self) -> None:
        if self._conn:
            self._conn.close()
        self._conn = False

    # Schema

    def open(self, embedding_size: int | None, create: bool, model_id: str | None) -> dict[str, str]:
        create = create and not self.readonly
        exists = self._read("open the gallery", lambda c: c.execute(
            "SELECT to_regclass(%s) IS NOT NULL", (f"{SCHEMA}.meta",)).fetchone()[0])
        if not exists:
            if not create:
                raise GalleryError(f"{self.where}: no gallery there (no {SCHEMA} tables in that database); check "
                                   "the URL, or enroll someone to create it")
            if embedding_size is None:
                raise GalleryError(f"{self.where}: no gallery there, and no embedding size to create one with")
            self._write("create a gallery", lambda c: self._create(c, embedding_size, model_id))
        self._check_pgvector()
        return self.meta()

    def _check_pgvector(self) -> None:
        row = self._read("check pgvector", lambda c: c.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone())
        version = tuple(int(p) for p in row[0].split(".")[:3]) if row else ()
        if version < MIN_PGVECTOR:
            raise GalleryError(f"{self.where}: pgvector {row[0] if row else 'is not installed'}; the gallery needs "
                               "pgvector >= 0.5 (HNSW): ALTER EXTENSION vector UPDATE, or install a newer pgvector")

    def _create(self, conn, embedding_size: int, model_id: str | None) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_CREATE_LOCK,))
        if conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{SCHEMA}.meta",)).fetchone()[0]:
            return  # another process created it meanwhile
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        d = int(embedding_size)
        for statement in (
            f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}",
            f"CREATE TABLE {SCHEMA}.meta (key text PRIMARY KEY, value text)",
            f"CREATE TABLE {SCHEMA}.identities (id bigserial PRIMARY KEY, name text NOT NULL UNIQUE, "
            "created_at timestamptz NOT NULL DEFAULT now())",
            f"CREATE TABLE {SCHEMA}.embeddings (id bigserial PRIMARY KEY, identity_id bigint NOT NULL "
            f"REFERENCES {SCHEMA}.identities(id) ON DELETE CASCADE, vector vector({d}) NOT NULL, "
            "resolution integer NOT NULL CHECK (resolution > 0), source text, "
            "created_at timestamptz NOT NULL DEFAULT now(), "
            f"CONSTRAINT unit_norm CHECK (abs(vector_norm(vector) - 1) <= {NORM_TOLERANCE}))",
            f"CREATE INDEX embeddings_identity ON {SCHEMA}.embeddings (identity_id)",
            f"CREATE INDEX embeddings_hnsw ON {SCHEMA}.embeddings USING hnsw (vector vector_ip_ops) "
            f"WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION})",
        ):
            conn.execute(statement)
        rows = {"format": FORMAT_TAG, "schema_version": str(SCHEMA_VERSION), "embedding_size": str(d),
                THRESHOLD_KEY: repr(DEFAULT_THRESHOLD)}
        if model_id is not None:
            rows["model_id"] = model_id
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO {SCHEMA}.meta (key, value) VALUES (%s, %s)", list(rows.items()))
        log.info("%s: new gallery, embedding size %d, model %s", self.where, d, model_id)

    def configure_search(self, dim: int, index: str) -> None:
        from .local import INDEX_KINDS

        if index not in INDEX_KINDS:
            raise GalleryError(f"index should be one of {INDEX_KINDS}, got {index!r}")
        self._dim, self._index = dim, index

    def meta(self) -> dict[str, str]:
        return dict(self._read("read the gallery",
                               lambda c: c.execute(f"SELECT key, value FROM {SCHEMA}.meta").fetchall()))

    # Writes

    def write_identity(self, name: str, vectors: np.ndarray, resolutions: Sequence[int],
                       sources: Sequence[str | None], keep: KeepRows) -> tuple[int, int]:
        def write(conn) -> tuple[int, int]:
            conn.execute(f"INSERT INTO {SCHEMA}.identities (name) VALUES (%s) ON CONFLICT (name) DO NOTHING", (name,))
            (identity_id,) = conn.execute(f"SELECT id FROM {SCHEMA}.identities WHERE name = %s FOR UPDATE",
                                          (name,)).fetchone()
            stored = conn.execute(f"SELECT vector::text FROM {SCHEMA}.embeddings WHERE identity_id = %s",
                                  (identity_id,)).fetchall()
            existing = np.stack([parse_vector(r[0]) for r in stored]) if stored else np.empty((0, vectors.shape[1]))
            mask = keep(existing.astype(VECTOR_DTYPE))
            rows = [(identity_id, vector_text(v), int(r), s) for v, r, s, k in zip(vectors, resolutions, sources, mask)
                    if k]
            with conn.cursor() as cur:
                cur.executemany(f"INSERT INTO {SCHEMA}.embeddings (identity_id, vector, resolution, source) "
                                "VALUES (%s, %s::vector, %s, %s)", rows)
            return int(identity_id), len(rows)

        return self._write(f"enroll {name!r}", write)

    def remove(self, name: str) -> bool:
        return self._write(f"remove {name!r}", lambda c: c.execute(
            f"DELETE FROM {SCHEMA}.identities WHERE name = %s", (name,)).rowcount > 0)

    def rename(self, old: str, new: str) -> None:
        def rename(conn) -> None:
            if conn.execute(f"SELECT 1 FROM {SCHEMA}.identities WHERE name = %s", (new,)).fetchone():
                raise GalleryError(f"{self.where}: cannot rename {old!r}: {new!r} is already enrolled; remove it")
            if conn.execute(f"UPDATE {SCHEMA}.identities SET name = %s WHERE name = %s", (new, old)).rowcount == 0:
                raise GalleryError(f"{self.where}: cannot rename {old!r}: not enrolled; see names()")

        self._write(f"rename {old!r} to {new!r}", rename)

    def set_meta(self, values: dict[str, str], clear_prefix: str | None = None) -> None:
        def write(conn) -> None:
            if clear_prefix is not None:
                conn.execute(f"DELETE FROM {SCHEMA}.meta WHERE key LIKE %s", (clear_prefix + "%",))
            with conn.cursor() as cur:
                cur.executemany(f"INSERT INTO {SCHEMA}.meta (key, value) VALUES (%s, %s) "
                                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value", list(values.items()))

        self._write("set " + ", ".join(values) if values else "clear thresholds", write)

    # Reads

    def identities(self) -> list[IdentityInfo]:
        rows = self._read("list identities", lambda c: c.execute(
            f"SELECT i.name, i.id, count(e.id), array_remove(array_agg(DISTINCT e.resolution), NULL) "
            f"FROM {SCHEMA}.identities i LEFT JOIN {SCHEMA}.embeddings e ON e.identity_id = i.id "
            'GROUP BY i.id ORDER BY i.name COLLATE "C"').fetchall())
        return [IdentityInfo(name, int(iid), int(n), tuple(sorted(res))) for name, iid, n, res in rows]

    def names_of(self, identity_ids: Sequence[int]) -> dict[int, str]:
        if not identity_ids:
            return {}
        rows = self._read("read names", lambda c: c.execute(
            f"SELECT id, name FROM {SCHEMA}.identities WHERE id = ANY(%s)", (list(identity_ids),)).fetchall())
        return {int(i): n for i, n in rows}

    def identity_id(self, name: str) -> int | None:
        row = self._read("read the gallery", lambda c: c.execute(
            f"SELECT id FROM {SCHEMA}.identities WHERE name = %s", (name,)).fetchone())
        return int(row[0]) if row else None

    def count_identities(self) -> int:
        return int(self._read("count identities", lambda c: c.execute(
            f"SELECT count(*) FROM {SCHEMA}.identities").fetchone()[0]))

    def estimated_rows(self) -> int:
        """The planner's row estimate (cheap; -1 before the first ANALYZE, then counted)."""
        estimate = self._read("count embeddings", lambda c: c.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", (f"{SCHEMA}.embeddings",)).fetchone()[0])
        if estimate is None or estimate < 0:
            estimate = self._read("count embeddings", lambda c: c.execute(
                f"SELECT count(*) FROM {SCHEMA}.embeddings").fetchone()[0])
        return int(estimate)

    def uses_hnsw(self, exact: bool) -> bool:
        from .local import ANN_MIN_ROWS

        if exact or self._index == "exact":
            return False
        return self._index == "ann" or self.estimated_rows() >= ANN_MIN_ROWS

    def search(self, probes: np.ndarray, candidates: int, exact: bool) -> list[RowBlock]:
        """Per probe, the ``candidates`` rows of highest inner product, in one read-only snapshot."""
        hnsw = self.uses_hnsw(exact)

        def run(conn) -> list[RowBlock]:
            out: list[RowBlock] = []
            with conn.transaction():
                if hnsw:
                    conn.execute(f"SET LOCAL hnsw.ef_search = {min(1000, max(40, candidates))}")
                else:
                    conn.execute("SET LOCAL enable_indexscan = off")
                for probe in probes:
                    rows = conn.execute(f"SELECT id, identity_id, vector::text FROM {SCHEMA}.embeddings "
                                        "ORDER BY vector <#> %s::vector LIMIT %s",
                                        (vector_text(probe), candidates)).fetchall()
                    out.append((np.array([r[0] for r in rows], np.int64), np.array([r[1] for r in rows], np.int64),
                                np.stack([parse_vector(r[2]) for r in rows]) if rows else np.empty((0, len(probe)))))
            return out

        return self._read("search the gallery", run)

    def damaged_rows(self) -> list[tuple[int, int, str]]:
        rows = self._read("check the gallery", lambda c: c.execute(
            f"SELECT id, identity_id, vector_norm(vector) FROM {SCHEMA}.embeddings "
            f"WHERE NOT (abs(vector_norm(vector) - 1) <= {NORM_TOLERANCE})").fetchall())
        return [(int(r), int(i), f"has norm {n:.6g}, not 1 (a stored vector was changed)") for r, i, n in rows]

    def index_info(self) -> dict:
        size = self._read("read index size", lambda c: c.execute(
            "SELECT pg_relation_size(%s::regclass)", (f"{SCHEMA}.embeddings_hnsw",)).fetchone()[0])
        return {"kind": "ann" if self.uses_hnsw(False) else "exact", "rows": self.estimated_rows(),
                "memory_bytes": int(size), "where": "server (pgvector HNSW)"}

    def rows_after(self, row_id: int) -> Iterator[RowBlock]:  # pragma: no cover - not a local store
        raise NotImplementedError


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
