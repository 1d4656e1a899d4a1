"""The in-memory side of a gallery: one embedding matrix, grown by appends, searched in chunks.

Rows stay in the order they were enrolled (embedding id order), so a reload after
new enrolments reads only the new rows. Per-identity scores come from a permutation
that groups rows by identity (``order``) and ``np.maximum.reduceat``. The matrix may be
float16 (half the memory; cosines change by about 1e-3); search converts one chunk
at a time to float32, so no full-size float32 copy ever exists.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import GalleryError

MATRIX_DTYPES = ("float32", "float16")
SEARCH_BLOCK_ELEMENTS = 1 << 24  # probes x rows scored at once: 64 MB of float32 cosines
ROW_CHUNK = 1 << 16  # rows converted to float32 at once when the matrix is float16


@dataclass(frozen=True)
class IdentityScores:
    """Max cosine per identity for each probe: ``scores`` (M, I), column j is identity ``ids[j]``."""

    scores: np.ndarray
    ids: tuple[int, ...]


class EmbeddingIndex:
    """Embeddings with their row (embedding) ids and identity ids; ``append`` only, rebuild to delete."""

    def __init__(self, dim: int, dtype: str = "float32") -> None:
        if dtype not in MATRIX_DTYPES:
            raise GalleryError(f"matrix_dtype should be one of {MATRIX_DTYPES}, got {dtype!r}")
        self.dim, self.dtype = dim, np.dtype(dtype)
        self._matrix = np.empty((0, dim), self.dtype)
        self._row_ids = np.empty(0, np.int64)
        self._identity = np.empty(0, np.int64)
        self.rows = 0
        self._order = self._starts = np.empty(0, np.int64)
        self.identity_ids: tuple[int, ...] = ()

    @property
    def max_row_id(self) -> int:
        return int(self._row_ids[self.rows - 1]) if self.rows else 0

    @property
    def nbytes(self) -> int:
        """Memory held by the matrix and the per-row arrays (capacity included)."""
        return self._matrix.nbytes + self._row_ids.nbytes + self._identity.nbytes + self._order.nbytes

    def holds_last(self, identity_id: int, vector: np.ndarray) -> bool:
        """Whether the last row held is still (``identity_id``, ``vector``) in the file: SQLite reuses the
        ids of deleted tail rows, so an id alone does not prove the row is the one we loaded."""
        n = self.rows
        return bool(n) and int(self._identity[n - 1]) == identity_id and \
            np.array_equal(self._matrix[n - 1], vector.astype(self.dtype))

    def append(self, row_ids: np.ndarray, identity_ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add rows with ids above every id held (the caller reads ``WHERE id > max_row_id``)."""
        n = len(row_ids)
        if not n:
            return
        need = self.rows + n
        if need > len(self._matrix):  # grow with 1/8 headroom: a few later enrolments need no copy
            capacity = max(need + need // 8, 1024)
            self._matrix = _grown(self._matrix, capacity)
            self._row_ids = _grown(self._row_ids, capacity)
            self._identity = _grown(self._identity, capacity)
        self._matrix[self.rows:need] = vectors
        self._row_ids[self.rows:need] = row_ids
        self._identity[self.rows:need] = identity_ids
        self.rows = need

    def regroup(self) -> None:
        """Recompute the rows-by-identity permutation after appends."""
        identity = self._identity[:self.rows]
        self._order = np.argsort(identity, kind="stable")
        grouped = identity[self._order]
        self._starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]]) if self.rows else np.empty(0, np.int64)
        self.identity_ids = tuple(int(i) for i in grouped[self._starts])

    def scores(self, probes: np.ndarray) -> IdentityScores:
        """Max cosine per identity for unit ``probes`` (M, D) float32, in blocks of probes and rows."""
        m, n = len(probes), self.rows
        out = np.empty((m, len(self._starts)), np.float32)
        if not n:
            return IdentityScores(out, ())
        block = max(1, SEARCH_BLOCK_ELEMENTS // n)
        cosines = np.empty((min(block, m), n), np.float32)
        for p in range(0, m, block):
            chunk = probes[p:p + block]
            view = cosines[:len(chunk)]
            if self.dtype == np.float32:
                np.matmul(chunk, self._matrix[:n].T, out=view)
            else:
                for r in range(0, n, ROW_CHUNK):
                    rows = self._matrix[r:min(r + ROW_CHUNK, n)].astype(np.float32)
                    np.matmul(chunk, rows.T, out=view[:, r:r + len(rows)])
            out[p:p + len(chunk)] = np.maximum.reduceat(view[:, self._order], self._starts, axis=1)
        np.clip(out, -1.0, 1.0, out=out)
        return IdentityScores(out, self.identity_ids)


def _grown(array: np.ndarray, capacity: int) -> np.ndarray:
    grown = np.empty((capacity, *array.shape[1:]), array.dtype)
    grown[:len(array)] = array
    return grown
