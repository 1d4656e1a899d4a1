"""Approximate search for large local galleries: 4-bit product-quantized codes scanned by FAISS fast-scan, the best rows
rescored exactly.

Each embedding is cut into sub-vectors of 4 dimensions (128 at 512-d) and each sub-vector is
replaced by the nearest of 16 centroids learnt from the gallery itself (product quantization, 64
bytes a row, 64 MB per million rows). A probe is compared with every code *asymmetrically* (the
probe stays float, a table of partial scores is looked up with SIMD shuffles: FAISS
``IndexPQFastScan``), which estimates the cosine far better than Hamming distance between sign
codes, so few rows need rescoring. The ``RESCORED`` best rows are scored exactly against the float
matrix the exact index already holds, and the answer is ranked on those exact cosines.
Enrolments append codes; the centroids are learnt again (and every row re-encoded) when the
gallery has grown 4x since they were learnt, up to ``TRAIN_ROWS`` training rows.
Why this and not HNSW, sign codes or 8-dimension sub-vectors: docs/serving.md ("Fast search").
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from .._deps import require
from .index import ExactIndex, Ranked

log = logging.getLogger(__name__)

# Dimensions per sub-vector. At 1 M random 512-d rows, probes at cosine ~0.37 to their target (a scratch run, one
# FAISS thread, quiet machine): 8 dimensions (32 bytes a row) scan in 2.0-2.5 ms but lose 1 % of the hardest probes
# whatever the rescored count (128-1024); 4 dimensions scan in 3.6-4.1 ms and lost none at 128-1024 rescored.
SUBSPACE_DIMS = 4
RESCORED = 128  # rows rescored exactly per probe (at least 16 per wanted identity); bench-gallery at 1 M: recall 1.0
CANDIDATES = 512  # rows a gallery server (pgvector's HNSW) is asked for per probe, rescored here
TRAIN_ROWS = 65_536  # rows the centroids are learnt from (evenly spaced over the gallery)
MIN_TRAIN_ROWS = 1_024  # below this, the centroids would be learnt from too few rows: search exactly instead
_BLOCK = 1 << 15


class BinaryCodeIndex:
    """Product-quantized codes of the rows of an :class:`ExactIndex`, in the same order; searches rescore through it.

    (The name is kept from the sign-code index it replaced: callers and docs refer to it.)
    """

    kind = "ann"

    def __init__(self, exact: ExactIndex, subspace_dims: int = SUBSPACE_DIMS) -> None:
        self.faiss = require("faiss", extra="ann")
        # A frame brings a few probes: OpenMP's threads cost more than they save there (measured on the shared 2-core
        # machine), and serve runs one query per front-end thread.
        self.faiss.omp_set_num_threads(1)
        wanted = max(1, exact.dim // subspace_dims)
        subspaces = next(m for m in range(wanted, 0, -1) if exact.dim % m == 0)  # sub-vectors must tile the vector
        self.exact = exact
        self.subspaces = subspaces
        self.codes: Any = None  # a faiss.IndexPQFastScan once learnt
        self.trained_on = 0
        self.rows = 0

    @property
    def nbytes(self) -> int:
        centroids = self.subspaces * 16 * (self.exact.dim // self.subspaces) * 4
        return self.rows * self.subspaces // 2 + centroids

    def _train(self) -> None:
        matrix = self.exact._matrix[:self.exact.rows]
        take = min(len(matrix), TRAIN_ROWS)
        sample = np.ascontiguousarray(matrix[np.linspace(0, len(matrix) - 1, take).astype(np.int64)], np.float32)
        codes = self.faiss.IndexPQFastScan(self.exact.dim, self.subspaces, 4, self.faiss.METRIC_INNER_PRODUCT)
        codes.train(sample)
        self.codes, self.trained_on, self.rows = codes, len(matrix), 0
        log.info("ann index: centroids learnt from %d of %d rows", take, len(matrix))

    def sync(self) -> int:
        """Encode the rows added since the last call (every row after learning again); returns how many."""
        total = self.exact.rows
        if total < self.rows:  # rows were dropped (a removal regrouped the matrix): encode again from scratch
            self.codes, self.trained_on, self.rows = None, 0, 0
        if total < MIN_TRAIN_ROWS:
            self.codes, self.trained_on, self.rows = None, 0, total
            return 0
        if self.codes is None or (total >= 4 * self.trained_on and self.trained_on < TRAIN_ROWS):
            self._train()
        start = self.rows
        matrix = self.exact._matrix
        for s in range(start, total, _BLOCK):
            self.codes.add(np.ascontiguousarray(matrix[s:min(s + _BLOCK, total)], np.float32))
        self.rows = total
        return total - start

    def search(self, probes: np.ndarray, top_k: int) -> list[Ranked]:
        if not self.rows:
            return [Ranked((), ()) for _ in probes]
        if self.codes is None:  # a small gallery, no centroids learnt: the exact search answers
            return self.exact.search(probes, top_k)
        wanted = min(self.rows, max(RESCORED, 16 * top_k))
        _, positions = self.codes.search(np.ascontiguousarray(probes, np.float32), wanted)
        return [self.exact.rescore(p, rows, top_k) for p, rows in zip(probes, positions)]
