"""Gallery at scale: exact search against the approximate index on one file of N embeddings, in one run.

For each index the same probes are timed one at a time (p50, p99), and the top-1 of
every probe is compared with exact search (recall@1). Build time is the first load
(reading the rows, plus encoding them for the approximate index); memory is what the
index holds. The incremental reload after one more enrolment by another connection is
measured too. Probes are noisy copies of enrolled targets at three noise levels (mean
cosine to their target about 0.78, 0.55 and 0.37), so recall is measured on easy and on
hard matches; the gallery itself is random unit vectors, the hardest case for any index
(no clusters to exploit).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..gallery import Gallery

log = logging.getLogger(__name__)

HEADER = ("index", "embeddings", "dim", "memory MB", "build s", "query p50 ms", "query p99 ms", "recall@1",
          "top-1 is target", "reload after 1 enrol ms", "rows read")
TARGET_PREFIX = "bench-target-"
PROBE_NOISE = (0.8, 1.5, 2.5)  # probe = target + this much noise (both of norm 1): cosine ~0.78, ~0.55, ~0.37


def _unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    rows = rng.standard_normal((n, dim), dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def fill_gallery(path: Path, embeddings: int, dim: int, per_identity: int, seed: int = 0,
                 progress: bool = True) -> None:
    """Enroll ``embeddings`` random unit vectors, ``per_identity`` per name, through the public API."""
    from tqdm.auto import tqdm

    rng = np.random.default_rng(seed)
    with Gallery(path, embedding_size=dim, model_id="bench:random") as gallery:
        for start in tqdm(range(0, embeddings, per_identity), desc="enroll", unit="identity", disable=not progress,
                          unit_scale=per_identity):
            n = min(per_identity, embeddings - start)
            gallery.enroll(f"person{start // per_identity:07d}", _unit_rows(rng, n, dim))


@contextmanager
def probe_targets(path: Path, count: int, dim: int, seed: int = 1) -> Iterator[np.ndarray]:
    """Enroll ``count`` target people and yield noisy probes of them; the targets are removed afterwards."""
    rng = np.random.default_rng(seed)
    targets = _unit_rows(rng, count, dim)
    noise = np.array([PROBE_NOISE[i % len(PROBE_NOISE)] for i in range(count)], np.float32)[:, None]
    probes = targets + noise * _unit_rows(rng, count, dim)
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


def measure(path: Path, index: str, probes: np.ndarray, queries: int, dtype: str = "float32") -> dict[str, Any]:
    """One index: build (first load), memory, per-query latency, top-1 of every probe, incremental reload."""
    gallery = Gallery(path, create=False, matrix_dtype=dtype, index=index)
    t = time.perf_counter()
    gallery.identify(probes[:1])
    build_s = time.perf_counter() - t
    info = gallery.index_info()
    times = []
    for i in range(queries):
        t = time.perf_counter()
        gallery.identify(probes[i % len(probes)][None])
        times.append(time.perf_counter() - t)
    top1 = [m[0].name if m else None for m in gallery.identify(probes, top_k=1, threshold=-1.0)]
    rows_before = gallery.rows_loaded
    with Gallery(path, create=False) as writer:  # another connection enrolls one more person
        writer.enroll(f"late-{index}", _unit_rows(np.random.default_rng(7), 1, probes.shape[1]))
    t = time.perf_counter()
    gallery.identify(probes[:1])
    reload_ms = 1000.0 * (time.perf_counter() - t)
    rows_read = gallery.rows_loaded - rows_before
    gallery.close()
    with Gallery(path, create=False) as writer:
        writer.remove(f"late-{index}")
    correct = sum(name == f"{TARGET_PREFIX}{i}" for i, name in enumerate(top1)) / len(probes)
    return {"index": info["kind"], "requested": index, "dtype": dtype, "embeddings": info["rows"],
            "dim": probes.shape[1], "memory_mb": info["memory_bytes"] / 2**20, "build_s": build_s,
            "query_ms_p50": 1000.0 * float(np.percentile(times, 50)),
            "query_ms_p99": 1000.0 * float(np.percentile(times, 99)),
            "top1_is_target": correct, "reload_after_one_enrolment_ms": reload_ms, "rows_read_on_reload": rows_read,
            "top1": top1}


def add_recall(results: list[dict[str, Any]], probes: np.ndarray) -> None:
    """recall_at_1 of each index: the share of probes whose top-1 is exact search's top-1 (and per noise level)."""
    exact = next((r for r in results if r["index"] == "exact"), None)
    if exact is None:
        return
    levels = np.array([PROBE_NOISE[i % len(PROBE_NOISE)] for i in range(len(probes))])
    for r in results:
        same = np.array([a == b for a, b in zip(r["top1"], exact["top1"])])
        r["recall_at_1"] = float(same.mean())
        r["recall_at_1_by_probe_noise"] = {str(level): float(same[levels == level].mean()) for level in PROBE_NOISE}


def format_table(results: list[dict[str, Any]]) -> str:
    from .report import _table

    lines = [(r["index"], str(r["embeddings"]), str(r["dim"]), f"{r['memory_mb']:.0f}", f"{r['build_s']:.2f}",
              f"{r['query_ms_p50']:.2f}", f"{r['query_ms_p99']:.2f}", f"{r.get('recall_at_1', float('nan')):.3f}",
              f"{r['top1_is_target']:.3f}", f"{r['reload_after_one_enrolment_ms']:.1f}", str(r["rows_read_on_reload"]))
             for r in results]
    return _table(HEADER, lines)
