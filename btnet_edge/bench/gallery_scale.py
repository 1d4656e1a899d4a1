"""Gallery at scale: memory and time per query for a gallery of N embeddings, float32 and float16.

Everything is measured in one run on the same file: the first load, a query, an
incremental reload after one more enrolment, and a full reload (what every query
cost before the matrix was kept and reloaded incrementally). float16 is compared
with float32 on the same probes (top-1 agreement, largest score difference).
"""

from __future__ import annotations

import logging
import statistics
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..gallery import Gallery

log = logging.getLogger(__name__)

HEADER = ("dtype", "embeddings", "dim", "matrix MB", "RSS growth MB", "first load s", "query ms",
          "query after 1 enrol ms", "rows read", "full reload s", "top-1 correct")
TARGET_PREFIX = "bench-target-"
PROBE_NOISE = 0.8  # probe = target + this much noise (norms 1 each): cosine to its target about 0.78


def _rss_mb() -> float:
    """Resident memory of this process (Linux /proc; 0 elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    rows = rng.standard_normal((n, dim), dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def fill_gallery(path: Path, embeddings: int, dim: int, per_identity: int, seed: int = 0, progress: bool = True) -> None:
    """Enroll ``embeddings`` random unit vectors, ``per_identity`` per name, through the public API."""
    from tqdm.auto import tqdm

    rng = np.random.default_rng(seed)
    with Gallery(path, embedding_size=dim, model_id="bench:random") as gallery:
        for start in tqdm(range(0, embeddings, per_identity), desc="enroll", unit="identity", disable=not progress):
            n = min(per_identity, embeddings - start)
            gallery.enroll(f"person{start // per_identity:07d}", _unit_rows(rng, n, dim))


@contextmanager
def probe_targets(path: Path, count: int, dim: int, seed: int = 1) -> Iterator[np.ndarray]:
    """Enroll ``count`` target people and yield noisy probes of them; the targets are removed afterwards."""
    rng = np.random.default_rng(seed)
    targets = _unit_rows(rng, count, dim)
    probes = targets + PROBE_NOISE * _unit_rows(rng, count, dim)
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    with Gallery(path, create=False) as gallery:
        for i, target in enumerate(targets):
            gallery.enroll(f"{TARGET_PREFIX}{i}", target)
    try:
        yield probes
    finally:
        with Gallery(path, create=False) as gallery:
            for i in range(count):
                gallery.remove(f"{TARGET_PREFIX}{i}")


def _median_ms(samples: Sequence[float]) -> float:
    return 1000.0 * statistics.median(samples)


def measure(path: Path, dtype: str, probes: np.ndarray, queries: int) -> dict[str, Any]:
    """One dtype: first load, query time, incremental and full reload, memory."""
    rss_before = _rss_mb()
    gallery = Gallery(path, create=False, matrix_dtype=dtype)
    t = time.perf_counter()
    first = gallery.identify(probes[:1])
    first_load_s = time.perf_counter() - t
    index = gallery._refresh()
    rows, matrix_mb = index.rows, index.nbytes / 2**20
    times = []
    for i in range(queries):
        t = time.perf_counter()
        gallery.identify(probes[i % len(probes)][None])
        times.append(time.perf_counter() - t)
    rss_growth = _rss_mb() - rss_before
    rows_before = gallery.rows_loaded
    with Gallery(path, create=False) as writer:  # another connection enrolls one more person
        writer.enroll(f"late-{dtype}", _unit_rows(np.random.default_rng(7), 1, probes.shape[1]))
    t = time.perf_counter()
    gallery.identify(probes[:1])
    reload_ms = 1000.0 * (time.perf_counter() - t)
    rows_read = gallery.rows_loaded - rows_before
    matches = gallery.identify(probes, top_k=1, threshold=-1.0)
    correct = sum(bool(m) and m[0].name == f"{TARGET_PREFIX}{i}" for i, m in enumerate(matches)) / len(probes)
    gallery.close()
    with Gallery(path, create=False, matrix_dtype=dtype) as fresh:
        t = time.perf_counter()
        fresh.identify(probes[:1])
        full_reload_s = time.perf_counter() - t
    with Gallery(path, create=False) as writer:
        writer.remove(f"late-{dtype}")
    del first
    return {"dtype": dtype, "embeddings": rows, "dim": index.dim, "matrix_mb": matrix_mb,
            "rss_growth_mb": rss_growth, "first_load_s": first_load_s, "query_ms": _median_ms(times),
            "reload_after_one_enrolment_ms": reload_ms, "rows_read_on_reload": rows_read,
            "full_reload_s": full_reload_s, "top1_correct": correct,
            "top1": [(m[0].name, m[0].score) if m else None for m in matches]}


def compare(results: list[dict[str, Any]]) -> dict[str, float] | None:
    """float16 against float32 on the same probes: top-1 agreement and the largest score difference."""
    by = {r["dtype"]: r for r in results}
    if not {"float32", "float16"} <= set(by):
        return None
    a, b = by["float32"]["top1"], by["float16"]["top1"]
    same = sum(x is not None and y is not None and x[0] == y[0] for x, y in zip(a, b))
    diff = max(abs(x[1] - y[1]) for x, y in zip(a, b) if x and y)
    return {"top1_agreement": same / len(a), "max_score_difference": diff}


def format_table(results: list[dict[str, Any]]) -> str:
    from .report import _table

    lines = [(r["dtype"], str(r["embeddings"]), str(r["dim"]), f"{r['matrix_mb']:.0f}", f"{r['rss_growth_mb']:.0f}",
              f"{r['first_load_s']:.2f}", f"{r['query_ms']:.1f}", f"{r['reload_after_one_enrolment_ms']:.1f}",
              str(r["rows_read_on_reload"]), f"{r['full_reload_s']:.2f}", f"{r['top1_correct']:.3f}")
             for r in results]
    return _table(HEADER, lines)
