"""An in-process index that follows a local store (SQLite): new rows are read incrementally, damaged rows quarantined.

Every row is checked as it is read (the right number of bytes, finite, unit norm):
a row that fails is left out of every search, logged once with the identity to
re-enroll, and listed in ``damaged``. Search is exact below ``ANN_MIN_ROWS`` and, with
``index="auto"`` and FAISS installed, approximate above (``ann.BinaryCodeIndex``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from .._deps import available
from ..errors import GalleryError
from .index import ExactIndex, Ranked
from .records import VECTOR_DTYPE, DamagedRow, row_problems
from .storage import GalleryStore

if TYPE_CHECKING:
    from .ann import BinaryCodeIndex

log = logging.getLogger(__name__)

INDEX_KINDS = ("auto", "exact", "ann")
# Exact search below this many rows: 20 ms per probe on this 2-core machine, measured by bench-gallery
# (docs/serving.md); above it the sign-code scan answers in a few ms with the same top-1.
ANN_MIN_ROWS = 50_000


class LocalIndex:
    def __init__(self, store: GalleryStore, dim: int, matrix_dtype: str = "float32", kind: str = "auto") -> None:
        if kind not in INDEX_KINDS:
            raise GalleryError(f"index should be one of {INDEX_KINDS}, got {kind!r}")
        if kind == "ann":
            from .._deps import require

            require("faiss", extra="ann")
        self.store, self.dim, self.matrix_dtype, self.kind = store, dim, matrix_dtype, kind
        self.exact = ExactIndex(dim, matrix_dtype)
        self.ann: BinaryCodeIndex | None = None  # built on demand: it needs faiss
        self.damaged: list[DamagedRow] = []
        self.loads = 0  # (re)loads so far, incremental ones included
        self.rows_read = 0  # rows read from the store so far: an incremental reload reads only new ones
        self._token: object = None
        self._seen = 0  # rows read, damaged ones included
        self._last: tuple[int, int, bytes] | None = None  # (row id, identity id, raw vector) of the last row read

    @property
    def active_kind(self) -> str:
        return "ann" if self.ann is not None else "exact"

    @property
    def nbytes(self) -> int:
        return self.exact.nbytes + (self.ann.nbytes if self.ann is not None else 0)

    def invalidate(self) -> None:
        """Our own commits do not change SQLite's data_version: look again on the next search."""
        self._token = None

    def refresh(self) -> None:
        token = self.store.change_token()
        if token == self._token and self._token is not None:
            return
        if not self._still_holds():
            self.exact, self.ann, self.damaged = ExactIndex(self.dim, self.matrix_dtype), None, []
            self._seen, self._last = 0, None
        added = self._read_new_rows()
        self.exact.regroup()
        self._choose_search()
        self._token = token
        self.loads += 1
        log.debug("%s: read %d new embeddings, %d in memory (%d identities)", self.store.where, added,
                  self.exact.rows, len(self.exact.identity_ids))

    def _still_holds(self) -> bool:
        """No row we read was removed or replaced: same count up to our last id, same last row."""
        if self._last is None:
            return True
        last_id, identity_id, raw = self._last
        return self.store.count_rows_upto(last_id) == self._seen and self.store.row(last_id) == (identity_id, raw)

    def _read_new_rows(self) -> int:
        size = self.dim * VECTOR_DTYPE.itemsize
        start = self._last[0] if self._last else 0
        added = 0
        for row_ids, identity_ids, raws in self.store.rows_after(start):
            ok_length = np.array([isinstance(r, bytes) and len(r) == size for r in raws], bool)
            vectors = np.zeros((len(raws), self.dim), VECTOR_DTYPE)
            if ok_length.any():
                vectors[ok_length] = np.frombuffer(b"".join(r for r, ok in zip(raws, ok_length) if ok),
                                                   VECTOR_DTYPE).reshape(-1, self.dim)
            problems = row_problems(vectors)
            good = np.array([ok and p is None for ok, p in zip(ok_length, problems)], bool)
            for i in np.flatnonzero(~good):
                why = (problems[i] if ok_length[i] else None) or f"is not {size} bytes of vector"
                self._quarantine(int(row_ids[i]), int(identity_ids[i]), why)
            self.exact.append(row_ids[good], identity_ids[good], vectors[good])
            self._seen += len(raws)
            last = raws[-1]
            self._last = (int(row_ids[-1]), int(identity_ids[-1]), last)
            added += len(raws)
        self.rows_read += added
        return added

    def _quarantine(self, row_id: int, identity_id: int, why: str) -> None:
        self.damaged.append(DamagedRow(row_id, identity_id, why))
        name = self.store.names_of([identity_id]).get(identity_id, f"identity {identity_id}")
        log.warning("%s: embedding %d of %r %s; it is left out of every search. The gallery was edited or damaged: "
                    "`btnet-edge gallery %s --remove %r`, then enroll %r again", self.store.where, row_id, name, why,
                    self.store.where, name, name)

    def _choose_search(self) -> None:
        wanted = self.kind == "ann" or (self.kind == "auto" and self.exact.rows >= ANN_MIN_ROWS and available("faiss"))
        if not wanted:
            self.ann = None
            return
        if self.ann is None:
            from .ann import BinaryCodeIndex

            self.ann = BinaryCodeIndex(self.exact)
        self.ann.sync()

    def search(self, probes: np.ndarray, top_k: int) -> list[Ranked]:
        self.refresh()
        if self.ann is not None:
            return self.ann.search(probes, top_k)
        return self.exact.search(probes, top_k)
