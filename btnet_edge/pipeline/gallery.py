"""A face gallery for 1:N open-set identification, persisted in one SQLite file.

Vectors are stored as raw little-endian float32 bytes (never pickle), L2-normalised,
so a cosine is a dot product. The file records its schema version, embedding size and
optionally the model that made the embeddings: embeddings of another model cannot be
compared, so a mismatch is an error, not a silent wrong answer.

Durability: WAL journal, ``synchronous=NORMAL``, every write in one ``BEGIN IMMEDIATE``
transaction. Readers in other processes never see half a write, and a process killed
mid-write loses only that transaction.
"""

from __future__ import annotations

import logging
import numbers
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np

from ..errors import GalleryError
from .gallery_index import EmbeddingIndex

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
FORMAT_TAG = "btnet-edge-gallery"
DEFAULT_THRESHOLD = 0.3  # a starting point only: calibrate per model and resolution
BUSY_TIMEOUT_S = 5.0
_VECTOR_DTYPE = np.dtype("<f4")
_MIN_NORM = 1e-12
_THRESHOLD_KEY = "threshold"  # default; per resolution: "threshold.<resolution>"
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


@dataclass(frozen=True)
class Match:
    """One gallery identity matched by a probe; ``score`` is a cosine in [-1, 1]."""

    name: str
    score: float
    identity_id: int


@dataclass(frozen=True)
class IdentityInfo:
    """An enrolled identity: how many embeddings it has, from which branch resolutions."""

    name: str
    identity_id: int
    count: int
    resolutions: tuple[int, ...]


_READ_ROWS = 1 << 15  # embeddings fetched from SQLite at once when (re)loading the matrix


class Gallery:
    """Enrolled identities and their embeddings; ``identify`` answers 1:N, open-set.

    An identity's score for a probe is the MAX cosine over that identity's embeddings:
    one good enrolment photo (e.g. at the probe's resolution) should be enough to match,
    and a mean would let poor photos drag a true match below the threshold.

    The matrix is held once in memory and reloaded incrementally: after enrolments
    (here or in another process) only the new rows are read. ``matrix_dtype="float16"``
    halves its memory for galleries of millions of embeddings (cosines move by ~1e-3).
    """

    def __init__(self, path: str | Path, embedding_size: int | None = None, create: bool = True,
                 model_id: str | None = None, matrix_dtype: str = "float32") -> None:
        self.path = Path(path)
        self.cache_loads = 0  # matrix (re)loads so far, incremental ones included: asserted by the cache tests
        self.rows_loaded = 0  # embeddings read from the file so far: an incremental reload reads only new ones
        self._index: EmbeddingIndex | None = None
        self._matrix_dtype = matrix_dtype
        self._version: int | None = None
        self._default_threshold = DEFAULT_THRESHOLD
        self._thresholds: dict[int, float] = {}
        self._conn: sqlite3.Connection | None = None
        self._open(embedding_size, create, model_id)

    def _open(self, embedding_size: int | None, create: bool, model_id: str | None) -> None:
        path = self.path
        if not path.exists():
            if not create:
                raise GalleryError(f"{path}: no gallery there; check the path, or enroll someone to create it")
            if embedding_size is None:
                raise GalleryError(f"{path}: no gallery there, and no embedding size to create one with; check the "
                                   "path, or enroll someone to create it")
        if embedding_size is not None and not (_is_int(embedding_size) and embedding_size > 0):
            raise GalleryError(f"embedding_size must be a positive int, got {embedding_size!r}")
        if model_id is not None and not (isinstance(model_id, str) and model_id):
            raise GalleryError(f"model_id must be a non-empty str (e.g. '<package>:<trunk sha256>'), got {model_id!r}")
        uri = f"{path.resolve().as_uri()}?mode={'rwc' if create else 'rw'}"
        try:
            self._conn = conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as e:
            raise GalleryError(f"{path}: cannot open ({e}); check the folder exists and is writable") from e
        try:
            meta = self._read_or_create_meta(conn, embedding_size, create, model_id)
            self._check_meta(meta, embedding_size, model_id)
            # Only now, knowing the file is ours, change it: WAL mode is persistent.
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                log.warning("%s: journal mode is %s, not WAL: readers may block the writer", path, mode)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
        except BaseException:
            self.close()
            raise

    def _read_or_create_meta(
        self, conn: sqlite3.Connection, embedding_size: int | None, create: bool, model_id: str | None
    ) -> dict[str, str]:
        not_ours = f"{self.path} is not a btnet-edge gallery"
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
                "embedding_size": str(int(embedding_size)), _THRESHOLD_KEY: repr(DEFAULT_THRESHOLD)}
        if model_id is not None:
            rows["model_id"] = model_id
        conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", rows.items())
        log.info("%s: new gallery, embedding size %d, model %s", self.path, embedding_size, model_id)

    def _check_meta(self, meta: dict[str, str], embedding_size: int | None, model_id: str | None) -> None:
        if meta.get("format") != FORMAT_TAG or "schema_version" not in meta:
            raise GalleryError(f"{self.path} is not a btnet-edge gallery: its meta table has keys "
                               f"{sorted(meta)}; pass a new path or delete it")
        if meta["schema_version"] != str(SCHEMA_VERSION):
            raise GalleryError(f"{self.path}: gallery schema version {meta['schema_version']}, this btnet-edge reads "
                               f"version {SCHEMA_VERSION}; use a matching btnet-edge or re-enroll into a new path")
        size = meta.get("embedding_size", "")
        if not size.isdigit() or int(size) < 1:
            raise GalleryError(f"{self.path}: the gallery's embedding_size is {size!r}, not a positive number; the "
                               "file was edited by hand or damaged: re-enroll into a new gallery")
        self.embedding_size = int(size)
        self.model_id = meta.get("model_id")
        self.check_model(embedding_size, model_id)

    def check_model(self, embedding_size: int | None, model_id: str | None) -> None:
        """Refuse a model whose embeddings this gallery cannot compare (None: not checked)."""
        advice = "embeddings of different models cannot be compared: use another gallery or re-enroll"
        if embedding_size is not None and embedding_size != self.embedding_size:
            raise GalleryError(f"{self.path}: gallery holds {self.embedding_size}-d embeddings, the model gives "
                               f"{embedding_size}-d; {advice}")
        if model_id is not None and self.model_id is not None and model_id != self.model_id:
            from ..package.manifest import model_id_note

            raise GalleryError(f"{self.path}: gallery was enrolled with model {self.model_id!r}, not {model_id!r}; "
                               f"{advice}{model_id_note(self.model_id)}")
        if model_id is not None and self.model_id is None:
            log.warning("%s: gallery records no model id; cannot check it matches %s", self.path, model_id)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
            self._index = None

    def __enter__(self) -> "Gallery":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
        conn = self._db()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            finally:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                self._version = None  # our own commits do not change data_version: look again
        except sqlite3.Error as e:
            raise GalleryError(f"{self.path}: cannot {what}: {e}; nothing was changed") from e

    def enroll(self, name: str, embeddings: np.ndarray, resolutions: int | Sequence[int] = 112,
               sources: str | Sequence[str | None] | None = None) -> int:
        """Add embeddings (N, D) or (D,) to ``name`` (created if new); return how many were added."""
        _check_name(name)
        vectors = self._normalised(embeddings, "embedding")
        n = len(vectors)
        res = [resolutions] * n if _is_int(resolutions) else list(resolutions)  # type: ignore[arg-type]
        if len(res) != n or not all(_is_int(r) and r > 0 for r in res):
            raise GalleryError(f"resolutions must be one positive int or {n} of them, got {resolutions!r}")
        src = [sources] * n if sources is None or isinstance(sources, str) else list(sources)
        if len(src) != n or not all(s is None or isinstance(s, str) for s in src):
            raise GalleryError(f"sources must be None, a str, or {n} str/None values, got {sources!r}")
        with self._write(f"enroll {name!r}") as conn:
            conn.execute("INSERT OR IGNORE INTO identities (name) VALUES (?)", (name,))
            (identity_id,) = conn.execute("SELECT id FROM identities WHERE name = ?", (name,)).fetchone()
            conn.executemany(
                "INSERT INTO embeddings (identity_id, vector, resolution, source) VALUES (?, ?, ?, ?)",
                ((identity_id, v.tobytes(), int(r), s) for v, r, s in zip(vectors, res, src)),
            )
        log.debug("%s: enrolled %d embeddings for %r", self.path, n, name)
        return n

    def remove(self, name: str) -> bool:
        """Delete ``name`` and its embeddings; False if it was not enrolled."""
        with self._write(f"remove {name!r}") as conn:
            removed = conn.execute("DELETE FROM identities WHERE name = ?", (name,)).rowcount
        return removed > 0

    def rename(self, old: str, new: str) -> None:
        _check_name(new)
        with self._write(f"rename {old!r} to {new!r}") as conn:
            if conn.execute("SELECT 1 FROM identities WHERE name = ?", (new,)).fetchone():
                raise GalleryError(f"{self.path}: cannot rename {old!r}: {new!r} is already enrolled; remove it")
            if conn.execute("UPDATE identities SET name = ? WHERE name = ?", (new, old)).rowcount == 0:
                raise GalleryError(f"{self.path}: cannot rename {old!r}: not enrolled; see names()")

    @property
    def default_threshold(self) -> float:
        self._refresh()
        return self._default_threshold

    @property
    def thresholds(self) -> dict[int, float]:
        """Per probe branch resolution; a resolution not listed uses ``default_threshold``."""
        self._refresh()
        return dict(self._thresholds)

    @thresholds.setter
    def thresholds(self, values: Mapping[int, float]) -> None:
        checked = {_check_resolution(r): _check_threshold(t) for r, t in values.items()}
        with self._write("set thresholds") as conn:
            conn.execute("DELETE FROM meta WHERE key LIKE ?", (_THRESHOLD_KEY + ".%",))
            conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)",
                             ((f"{_THRESHOLD_KEY}.{r}", repr(t)) for r, t in checked.items()))

    def set_threshold(self, value: float, resolution: int | None = None) -> None:
        """Set the threshold for probes of one branch resolution, or the default (None)."""
        key = _THRESHOLD_KEY if resolution is None else f"{_THRESHOLD_KEY}.{_check_resolution(resolution)}"
        checked = repr(_check_threshold(value))
        with self._write("set threshold") as conn:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, checked))

    def identify(self, embeddings: np.ndarray, top_k: int = 1, threshold: float | None = None,
                 probe_resolutions: Sequence[int] | None = None) -> list[list[Match]]:
        """Best ``top_k`` identities per probe, best first, dropping scores below the threshold.

        An empty list means "unknown". ``threshold`` applies to every probe; when None, each
        probe uses ``thresholds[probe_resolutions[i]]``, else ``default_threshold``.
        """
        if not (_is_int(top_k) and top_k > 0):
            raise GalleryError(f"top_k must be a positive int, got {top_k!r}")
        probes = self._normalised(embeddings, "probe")
        index = self._refresh()
        limits = self._probe_thresholds(len(probes), threshold, probe_resolutions)
        if not index.identity_ids:
            return [[] for _ in probes]
        found = index.scores(probes)  # (M, I): max cosine per identity, searched in chunks
        scores, ids = found.scores, found.ids
        k = min(top_k, scores.shape[1])
        best = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < scores.shape[1] else \
            np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
        chosen = [[j for j in sorted(row, key=lambda j: (-scores[i, j], j)) if scores[i, j] >= limits[i]]
                  for i, row in enumerate(best)]
        names = self._names_of({ids[j] for row in chosen for j in row})
        return [[Match(names[ids[j]], float(scores[i, j]), ids[j]) for j in row if ids[j] in names]
                for i, row in enumerate(chosen)]

    def _names_of(self, identity_ids: set[int]) -> dict[int, str]:
        """Names of the matched identities only, read now: renames by any process show at once."""
        wanted, names = sorted(identity_ids), {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            marks = ",".join("?" * len(chunk))
            names.update(self._query(f"SELECT id, name FROM identities WHERE id IN ({marks})", chunk))
        return names

    def names(self) -> list[str]:
        return [row[0] for row in self._query("SELECT name FROM identities ORDER BY name")]

    def identities(self) -> list[IdentityInfo]:
        rows = self._query(
            "SELECT i.name, i.id, COUNT(e.id), GROUP_CONCAT(DISTINCT e.resolution) FROM identities i "
            "LEFT JOIN embeddings e ON e.identity_id = i.id GROUP BY i.id ORDER BY i.name")
        return [IdentityInfo(name, iid, count, tuple(sorted(int(r) for r in res.split(","))) if res else ())
                for name, iid, count, res in rows]

    def __len__(self) -> int:
        return self._query("SELECT COUNT(*) FROM identities")[0][0]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(self._query("SELECT 1 FROM identities WHERE name = ?", (name,)))

    def _refresh(self) -> EmbeddingIndex:
        """Bring the matrix and thresholds up to date if any connection (ours or another process's) wrote.

        Only rows added since the last load are read, unless rows were deleted (then all are).
        """
        version = self._query("PRAGMA data_version")[0][0]  # changes when another connection commits
        if self._index is not None and version == self._version:
            return self._index
        index = self._index
        if index is None or not self._still_holds(index):
            index = EmbeddingIndex(self.embedding_size, self._matrix_dtype)  # first load, or rows were removed
        added = self._read_rows(index)
        index.regroup()
        self._read_thresholds()
        self._index, self._version = index, version
        self.cache_loads += 1
        log.debug("%s: read %d new embeddings, %d in memory (%d identities)", self.path, added, index.rows,
                  len(index.identity_ids))
        return index

    def _still_holds(self, index: EmbeddingIndex) -> bool:
        """No row we loaded was removed or replaced: same count below our last id, same last row."""
        if not index.rows:
            return True
        # COUNT(*) reads the small identity index; the range count reads new rows only
        total = self._query("SELECT COUNT(*) FROM embeddings")[0][0]
        new = self._query("SELECT COUNT(*) FROM embeddings WHERE id > ?", (index.max_row_id,))[0][0]
        last = self._query("SELECT identity_id, vector FROM embeddings WHERE id = ?", (index.max_row_id,))
        if total - new != index.rows or not last or not isinstance(last[0][1], bytes):
            return False
        vector = np.frombuffer(last[0][1], _VECTOR_DTYPE)
        return len(vector) == self.embedding_size and index.holds_last(last[0][0], vector)

    def _read_rows(self, index: EmbeddingIndex) -> int:
        """Append the embeddings with ids above ``index.max_row_id``, streamed in blocks; returns how many."""
        size = self.embedding_size * _VECTOR_DTYPE.itemsize
        added = 0
        try:
            cursor = self._db().execute("SELECT id, identity_id, vector FROM embeddings WHERE id > ? ORDER BY id",
                                        (index.max_row_id,))
            while rows := cursor.fetchmany(_READ_ROWS):
                bad = next((r for r in rows if not isinstance(r[2], bytes) or len(r[2]) != size), None)
                if bad is not None:
                    name = self._query("SELECT name FROM identities WHERE id = ?", (bad[1],))
                    who = repr(name[0][0]) if name else f"identity {bad[1]}"
                    raise GalleryError(f"{self.path}: embedding {bad[0]} of {who} is not {size} bytes of vector; "
                                       f"the file is damaged: remove and re-enroll {who}")
                vectors = np.frombuffer(b"".join(r[2] for r in rows), _VECTOR_DTYPE).reshape(len(rows), -1)
                index.append(np.fromiter((r[0] for r in rows), np.int64, len(rows)),
                             np.fromiter((r[1] for r in rows), np.int64, len(rows)), vectors)
                added += len(rows)
        except sqlite3.Error as e:
            raise GalleryError(f"{self.path}: cannot read the gallery ({e}); check the file and retry") from e
        self.rows_loaded += added
        return added

    def _read_thresholds(self) -> None:
        meta = self._query("SELECT key, value FROM meta WHERE key LIKE ?", (_THRESHOLD_KEY + "%",))
        thresholds = dict(meta)
        try:
            self._default_threshold = float(thresholds.pop(_THRESHOLD_KEY, DEFAULT_THRESHOLD))
            self._thresholds = {int(k.split(".", 1)[1]): float(v) for k, v in thresholds.items()}
        except ValueError:
            raise GalleryError(f"{self.path}: a threshold in the meta table is not a number ({thresholds}); the "
                               "file was edited by hand: set it again with `btnet-edge gallery --threshold`") from None

    def _probe_thresholds(self, m: int, threshold: float | None, resolutions: Sequence[int] | None) -> list[float]:
        if threshold is not None:
            return [_check_threshold(threshold)] * m
        if resolutions is None:
            return [self._default_threshold] * m
        if _is_int(resolutions) or len(resolutions) != m:
            raise GalleryError(f"probe_resolutions must list one resolution per probe ({m}), got {resolutions!r}")
        return [self._thresholds.get(_check_resolution(r), self._default_threshold) for r in resolutions]

    def _normalised(self, embeddings: np.ndarray, what: str) -> np.ndarray:
        """(N, D) float32 unit rows, or GalleryError before anything is written or searched."""
        arr = np.asarray(embeddings)
        if arr.ndim == 1:
            arr = arr[None, :]
        d = self.embedding_size
        if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] != d or not np.issubdtype(arr.dtype, np.number):
            raise GalleryError(f"{what}s must be a numeric array of shape (N, {d}) or ({d},), "
                               f"got {arr.dtype} {arr.shape}; is it from the gallery's model?")
        arr = arr.astype(np.float64)
        if not np.isfinite(arr).all():
            bad = np.flatnonzero(~np.isfinite(arr).all(axis=1)).tolist()
            raise GalleryError(f"{what} rows {bad} contain NaN or inf; check the recognizer output")
        norms = np.linalg.norm(arr, axis=1)
        if (norms < _MIN_NORM).any():
            raise GalleryError(f"{what} rows {np.flatnonzero(norms < _MIN_NORM).tolist()} are zero vectors; "
                               "check the recognizer output")
        return (arr / norms[:, None]).astype(_VECTOR_DTYPE)


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not name.strip():
        raise GalleryError(f"identity name must be a non-empty str, got {name!r}")


def _check_resolution(resolution: object) -> int:
    if not (_is_int(resolution) and resolution > 0):  # type: ignore[operator]
        raise GalleryError(f"a resolution must be a positive int (e.g. 112, 28, 14, 7), got {resolution!r}")
    return int(resolution)  # type: ignore[call-overload]


def _check_threshold(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not -1.0 <= float(value) <= 1.0:
        raise GalleryError(f"a threshold is a cosine in [-1, 1], got {value!r}")
    return float(value)
