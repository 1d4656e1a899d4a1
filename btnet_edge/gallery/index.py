"""The in-memory side of a local gallery: one embedding matrix, grown by appends, searched exactly.

Rows stay in the order they were enrolled (embedding id order), so a reload after
new enrolments reads only the new rows. Per-identity scores come from a permutation
that groups rows by identity (``order``) and ``np.maximum.reduceat``. The matrix may be
float16 (half the memory; cosines change by about 1e-3); search converts one chunk
at a time to float32, so no full-size float32 copy ever exists. Scores are never
clipped: rows are checked for unit norm before they get here, so a cosine outside
[-1, 1] would be a bug to see, not to hide.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import GalleryError

MATRIX_DTYPES = ("float32", "float16")
SEARCH_BLOCK_ELEMENTS = 1 << 24  # probes x rows scored at once: 64 MB of float32 cosines
ROW_CHUNK = 1 << 16  # rows converted to float32 at once when the matrix is float16


@dataclass(frozen=True)
class Ranked:
    """The best identities for one probe, best first: ``identity_ids[i]`` scored ``scores[i]``."""

    identity_ids: tuple[int, ...]
    scores: tuple[float, ...]


class ExactIndex:
    """Embeddings with their row (embedding) ids and identity ids; ``append`` only, rebuild to delete."""

    kind = "exact"

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
    def nbytes(self) -> int:
        """Memory held by the matrix and the per-row arrays (capacity included)."""
        return self._matrix.nbytes + self._row_ids.nbytes + self._identity.nbytes + self._order.nbytes

    def append(self, row_ids: np.ndarray, identity_ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add rows with ids above every id held (the caller reads ``WHERE id > last id``)."""
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

    def identity_scores(self, probes: np.ndarray) -> np.ndarray:
        """(M, I) max cosine per identity (columns in ``identity_ids`` order), in blocks of probes and rows."""
        m, n = len(probes), self.rows
        out = np.empty((m, len(self._starts)), np.float32)
        if not n:
            return out
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
        return out

    def search(self, probes: np.ndarray, top_k: int) -> list[Ranked]:
        """The ``top_k`` identities of each probe by max cosine, best first (ties: lower identity id)."""
        if not self.identity_ids:
            return [Ranked((), ()) for _ in probes]
        scores = self.identity_scores(probes)
        ids = np.asarray(self.identity_ids, np.int64)
        k = min(top_k, scores.shape[1])
        out = []
        for row in scores:
            best = np.argpartition(-row, k - 1)[:k] if k < len(row) else np.arange(len(row))
            ranked = sorted(best, key=lambda j: (-row[j], ids[j]))
            out.append(Ranked(tuple(int(ids[j]) for j in ranked), tuple(float(row[j]) for j in ranked)))
        return out

    def rescore(self, probe: np.ndarray, positions: np.ndarray, top_k: int) -> Ranked:
        """Exact max cosine per identity over the rows at ``positions`` only (an ANN's candidates)."""
        positions = positions[(positions >= 0) & (positions < self.rows)]
        if not len(positions):
            return Ranked((), ())
        positions = np.unique(positions)  # a position twice would not change the answer, only cost
        cosines = self._matrix[positions].astype(np.float32) @ probe
        owners = self._identity[positions]
        order = np.lexsort((owners, -cosines))  # best cosine first; ties: the lower identity id, as the exact search
        first = np.unique(owners[order], return_index=True)[1]  # each identity's best row
        best = order[np.sort(first)][:top_k]
        return Ranked(tuple(owners[best].tolist()), tuple(cosines[best].tolist()))


def _grown(array: np.ndarray, capacity: int) -> np.ndarray:
    grown = np.empty((capacity, *array.shape[1:]), array.dtype)
    grown[:len(array)] = array
    return grown
