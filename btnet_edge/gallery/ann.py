"""Approximate search for large local galleries: 512-bit sign codes scanned by FAISS, the best rows rescored exactly.

Each embedding gets a binary code, the signs of a fixed random Gaussian projection
(SimHash: the chance that a bit differs is angle / pi for any data, so Hamming distance
estimates the cosine). FAISS scans the codes (64 bytes a row, 64 MB per million rows)
with SIMD popcounts; the ``CANDIDATES`` nearest rows are then scored exactly against
the float matrix the exact index already holds, and the answer is ranked on those exact
cosines. The codes grow with the matrix (enrolments append, nothing is rebuilt).
Why this and not HNSW: docs/serving.md ("Fast search") has the measurements.
"""

from __future__ import annotations

import logging

import numpy as np

from .._deps import require
from .index import ExactIndex, Ranked

log = logging.getLogger(__name__)

CODE_BITS = 512
# Rows rescored exactly per probe (at least 16 per wanted identity). 256 kept 91% of the hardest probes (cosine ~0.37 to
# their target) at 1 M rows; the scan costs the same for any count, and rescoring 1024 rows takes well under 1 ms.
CANDIDATES = 1024
PROJECTION_SEED = 20231  # fixed: codes of one gallery must come from one projection
_BLOCK = 1 << 15


class BinaryCodeIndex:
    """Sign codes of the rows of an :class:`ExactIndex`, in the same order; searches rescore through it."""

    kind = "ann"

    def __init__(self, exact: ExactIndex, bits: int = CODE_BITS) -> None:
        self.faiss = require("faiss", extra="ann")
        # A frame brings a few probes: OpenMP's threads cost more than they save there (one thread: 5 ms per probe
        # at 1 M rows; two: 55 ms, on the shared 2-core machine), and serve runs one query per front-end thread.
        self.faiss.omp_set_num_threads(1)
        self.exact = exact
        self.bits = bits
        rng = np.random.default_rng(PROJECTION_SEED)
        self.projection = rng.standard_normal((exact.dim, bits)).astype(np.float32)
        self.codes = self.faiss.IndexBinaryFlat(bits)
        self.rows = 0

    @property
    def nbytes(self) -> int:
        return self.rows * self.bits // 8 + self.projection.nbytes

    def _encode(self, vectors: np.ndarray) -> np.ndarray:
        return np.packbits(vectors.astype(np.float32) @ self.projection > 0, axis=1)

    def sync(self) -> int:
        """Encode the exact index's rows added since the last call; returns how many."""
        start = self.rows
        matrix = self.exact._matrix
        for s in range(start, self.exact.rows, _BLOCK):
            block = matrix[s:min(s + _BLOCK, self.exact.rows)]
            self.codes.add(self._encode(block))
        self.rows = self.exact.rows
        return self.rows - start

    def search(self, probes: np.ndarray, top_k: int) -> list[Ranked]:
        if not self.rows:
            return [Ranked((), ()) for _ in probes]
        wanted = min(self.rows, max(CANDIDATES, 16 * top_k))
        _, positions = self.codes.search(self._encode(probes), wanted)
        return [self.exact.rescore(p, rows, top_k) for p, rows in zip(probes, positions)]
