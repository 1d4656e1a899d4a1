"""The embedded gallery store: one SQLite file, vectors as raw little-endian float32 blobs (never pickle).

Durability: WAL journal, ``synchronous=NORMAL``, every write in one ``BEGIN IMMEDIATE``
transaction. Readers in other processes never see half a write, and a process killed
mid-write loses only that transaction. A store opened ``readonly`` never writes, not
even the journal mode, so a gallery on a read-only folder or a full disk can still be
read to recognise people (falling back to SQLite's ``immutable`` mode when the WAL
index cannot be created there).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..errors import GalleryError
from .records import DEFAULT_THRESHOLD, THRESHOLD_KEY, VECTOR_DTYPE, IdentityInfo
from .storage import FORMAT_TAG, SCHEMA_VERSION, GalleryStore, KeepRows, RowBlock

log = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 5.0
READ_ROWS = 1 << 15  # embeddings fetched at once when (re)loading the matrix
_NOW = "(strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"
_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)",
    f"CREATE TABLE identities (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, "
    f"created_at TEXT NOT NULL DEFAULT {_NOW})",
    "CREATE TABLE embeddings (id INTEGER PRIMARY KEY, "
    "identity_id INTEGER NOT NULL REFERENCES identities(id) ON DELETE CASCADE, "
    "vector BLOB NOT NULL, resolution INTEGER NOT NULL CHECK (resolution > 0), source TEXT, "
    f"created_at TEXT NOT NULL DEFAULT {_NOW})",
    "CREATE INDEX embeddings_identity ON embeddings(identity_id)",
)


class SqliteStore(GalleryStore):
    def __init__(self, path: str | Path, readonly: bool = False) -> None:
        self.path = Path(path)
        self.where = str(path)
        self.readonly = readonly
        self._conn: sqlite3.Connection | None = None
        self._vector_bytes = 0

    def open(self, embedding_size: int | None, create: bool, model_id: str | None) -> dict[str, str]:
        path, create = self.path, create and not self.readonly
        if path.is_dir():
            raise GalleryError(f"{path} is a folder; give a gallery file, e.g. {path / 'gallery.db'}")
        existed = path.exists()
        if not existed:
            if not create:
                raise GalleryError(f"{path}: no gallery there; check the path, or enroll someone to create it")
            if embedding_size is None:
                raise GalleryError(f"{path}: no gallery there, and no embedding size to create one with; check the "
                                   "path, or enroll someone to create it")
        try:
            meta = self._connect(create, embedding_size, model_id)
        except BaseException:
            self.close()
            if not existed:  # a failed creation leaves no empty gallery behind
                for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")):
                    leftover.unlink(missing_ok=True)
            raise
        return meta

    def _connect(self, create: bool, embedding_size: int | None, model_id: str | None) -> dict[str, str]:
        base = self.path.resolve().as_uri()
        mode = "ro" if self.readonly else ("rwc" if create else "rw")
        try:
            self._conn = sqlite3.connect(f"{base}?mode={mode}", uri=True, timeout=BUSY_TIMEOUT_S,
                                         isolation_level=None, check_same_thread=False)
            meta = self._read_or_create_meta(create, embedding_size, model_id)
        except GalleryError as exc:
            if not self.readonly or "cannot open" not in str(exc):
                raise
            # A WAL file needs its -shm index; on a read-only folder or a full disk it cannot be made.
            log.warning("%s: opened as immutable (read-only folder or full disk?): enrolments made by others "
                        "while it is open are not seen", self.path)
            self.close()
            self._conn = sqlite3.connect(f"{base}?mode=ro&immutable=1", uri=True, timeout=BUSY_TIMEOUT_S,
                                         isolation_level=None, check_same_thread=False)
            meta = self._read_or_create_meta(False, embedding_size, model_id)
        if not self.readonly:  # only now, knowing the file is ours, change it: WAL mode is persistent
            conn = self._db()
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                log.warning("%s: journal mode is %s, not WAL: readers may block the writer", self.path, mode)
            conn.execute("PRAGMA synchronous=NORMAL")
        self._db().execute("PRAGMA foreign_keys=ON")
        return meta

    def _read_or_create_meta(self, create: bool, embedding_size: int | None, model_id: str | None) -> dict[str, str]:
        not_ours = f"{self.path} is not a btnet-edge gallery"
        conn = self._db()
        try:
            tables = _tables(conn)
            if not tables:
                if not create or embedding_size is None:
                    raise GalleryError(f"{not_ours}: it is an empty SQLite database; enroll someone into it to make "
                                       "it a gallery, or pass another path")
                with self._write("create a gallery"):
                    if not _tables(conn):  # another process may have created it meanwhile
                        self._create_schema(conn, embedding_size, model_id)
                tables = _tables(conn)
            if not {"meta", "identities", "embeddings"} <= tables:
                raise GalleryError(f"{not_ours}: it is a SQLite database with tables {sorted(tables)}; "
                                   "pass a new path or delete it")
            return dict(conn.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.OperationalError as e:  # locked, unreadable, missing folder: not a verdict on the file
            raise GalleryError(f"{self.path}: cannot open ({e}); check the folder exists and is writable, "
                               "or that no other process holds the gallery locked") from e
        except sqlite3.DatabaseError as e:
            raise GalleryError(f"{not_ours}: SQLite cannot read it ({e}); pass a new path or delete it") from e

    def _create_schema(self, conn: sqlite3.Connection, embedding_size: int, model_id: str | None) -> None:
        for statement in _SCHEMA:
            conn.execute(statement)
        rows = {"format": FORMAT_TAG, "schema_version": str(SCHEMA_VERSION),
                "embedding_size": str(int(embedding_size)), THRESHOLD_KEY: repr(DEFAULT_THRESHOLD)}
        if model_id is not None:
            rows["model_id"] = model_id
        conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", rows.items())
        log.info("%s: new gallery, embedding size %d, model %s", self.path, embedding_size, model_id)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise GalleryError(f"{self.path}: gallery is closed; open a new Gallery")
        return self._conn

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        """A read in one statement (one snapshot); sqlite errors become GalleryError."""
        try:
            return self._db().execute(sql, params).fetchall()
        except sqlite3.Error as e:
            raise GalleryError(f"{self.path}: cannot read the gallery ({e}); check the file and retry") from e

    @contextmanager
    def _write(self, what: str) -> Iterator[sqlite3.Connection]:
        """One all-or-nothing write; sqlite errors become GalleryError naming ``what``."""
        if self.readonly:
            raise GalleryError(f"{self.path}: opened read-only; cannot {what}")
        conn = self._db()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            finally:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
        except sqlite3.Error as e:
            raise GalleryError(f"{self.path}: cannot {what}: {e}; nothing was changed") from e

    def meta(self) -> dict[str, str]:
        return dict(self._query("SELECT key, value FROM meta"))

    def write_identity(self, name: str, vectors: np.ndarray, resolutions: Sequence[int],
                       sources: Sequence[str | None], keep: KeepRows) -> tuple[int, int]:
        with self._write(f"enroll {name!r}") as conn:
            conn.execute("INSERT OR IGNORE INTO identities (name) VALUES (?)", (name,))
            (identity_id,) = conn.execute("SELECT id FROM identities WHERE name = ?", (name,)).fetchone()
            stored = [r[0] for r in conn.execute("SELECT vector FROM embeddings WHERE identity_id = ?", (identity_id,))]
            size = vectors.shape[1] * VECTOR_DTYPE.itemsize
            existing = np.frombuffer(b"".join(b for b in stored if isinstance(b, bytes) and len(b) == size),
                                     VECTOR_DTYPE).reshape(-1, vectors.shape[1])
            mask = keep(existing)
            conn.executemany(
                "INSERT INTO embeddings (identity_id, vector, resolution, source) VALUES (?, ?, ?, ?)",
                ((identity_id, v.tobytes(), int(r), s) for v, r, s, k in zip(vectors, resolutions, sources, mask) if k))
        return int(identity_id), int(mask.sum())

    def remove(self, name: str) -> bool:
        with self._write(f"remove {name!r}") as conn:
            return conn.execute("DELETE FROM identities WHERE name = ?", (name,)).rowcount > 0

    def rename(self, old: str, new: str) -> None:
        with self._write(f"rename {old!r} to {new!r}") as conn:
            if conn.execute("SELECT 1 FROM identities WHERE name = ?", (new,)).fetchone():
                raise GalleryError(f"{self.path}: cannot rename {old!r}: {new!r} is already enrolled; remove it")
            if conn.execute("UPDATE identities SET name = ? WHERE name = ?", (new, old)).rowcount == 0:
                raise GalleryError(f"{self.path}: cannot rename {old!r}: not enrolled; see names()")

    def set_meta(self, values: dict[str, str], clear_prefix: str | None = None) -> None:
        with self._write("set " + ", ".join(values) if values else "clear thresholds") as conn:
            if clear_prefix is not None:
                conn.execute("DELETE FROM meta WHERE key LIKE ?", (clear_prefix + "%",))
            conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", values.items())

    def identities(self) -> list[IdentityInfo]:
        rows = self._query(
            "SELECT i.name, i.id, COUNT(e.id), GROUP_CONCAT(DISTINCT e.resolution) FROM identities i "
            "LEFT JOIN embeddings e ON e.identity_id = i.id GROUP BY i.id ORDER BY i.name")
        return [IdentityInfo(name, iid, count, tuple(sorted(int(r) for r in res.split(","))) if res else ())
                for name, iid, count, res in rows]

    def names_of(self, identity_ids: Sequence[int]) -> dict[int, str]:
        wanted = sorted(set(identity_ids))
        names: dict[int, str] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            names.update(self._query(f"SELECT id, name FROM identities WHERE id IN ({','.join('?' * len(chunk))})",
                                     chunk))
        return names

    def identity_id(self, name: str) -> int | None:
        rows = self._query("SELECT id FROM identities WHERE name = ?", (name,))
        return int(rows[0][0]) if rows else None

    def count_identities(self) -> int:
        return self._query("SELECT COUNT(*) FROM identities")[0][0]

    def change_token(self) -> object:
        return self._query("PRAGMA data_version")[0][0]

    def count_rows_upto(self, row_id: int) -> int:
        # COUNT(*) reads the small identity index; a rowid range count would read the whole table (4 GB at 1 M rows)
        total = self._query("SELECT COUNT(*) FROM embeddings")[0][0]
        return total - self._query("SELECT COUNT(*) FROM embeddings WHERE id > ?", (row_id,))[0][0]

    def row(self, row_id: int) -> tuple[int, bytes] | None:
        rows = self._query("SELECT identity_id, vector FROM embeddings WHERE id = ?", (row_id,))
        return (int(rows[0][0]), rows[0][1]) if rows else None

    def rows_after(self, row_id: int) -> Iterator[RowBlock]:
        try:
            cursor = self._db().execute("SELECT id, identity_id, vector FROM embeddings WHERE id > ? ORDER BY id",
                                        (row_id,))
            while rows := cursor.fetchmany(READ_ROWS):
                yield (np.fromiter((r[0] for r in rows), np.int64, len(rows)),
                       np.fromiter((r[1] for r in rows), np.int64, len(rows)), [r[2] for r in rows])
        except sqlite3.Error as e:
            raise GalleryError(f"{self.path}: cannot read the gallery ({e}); check the file and retry") from e


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
