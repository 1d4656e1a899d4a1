"""FAISS against usearch for the gallery's approximate search, on random unit vectors (the case with no structure).

Two families are measured, each in both libraries where it exists: an HNSW graph
(FAISS ``IndexHNSWFlat``, usearch ``Index`` in f32/f16/i8) at a few ``ef`` values, and a
flat scan of 512-bit sign codes rescored exactly (FAISS ``IndexBinaryFlat``, usearch's
exact Hamming search). Per configuration: build seconds, p50/p99 ms of one-probe
queries (one thread), recall@1 against exact search, on probes at cosine ~0.78 and ~0.55
to their target. This is how the gallery's approximate index was chosen (docs/serving.md).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .._deps import require

EF_VALUES = (16, 64, 128, 256)
PROBES = 200


def _data(rows: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.empty((rows, dim), np.float32)
    for s in range(0, rows, 100_000):
        block = rng.standard_normal((min(100_000, rows - s), dim), dtype=np.float32)
        x[s:s + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    targets = rng.choice(rows, PROBES, replace=False)
    noise = rng.standard_normal((PROBES, dim), dtype=np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    weight = np.where(np.arange(PROBES) % 2 == 0, 0.8, 1.5).astype(np.float32)[:, None]
    q = x[targets] + weight * noise
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    exact = np.concatenate([np.argmax(q[i:i + 50] @ x.T, axis=1) for i in range(0, PROBES, 50)])
    return x, q, exact


def _timed(search, q: np.ndarray, exact: np.ndarray) -> dict[str, float]:
    times, found = [], []
    for i, probe in enumerate(q):
        t = time.perf_counter()
        found.append(search(i, probe))
        times.append(time.perf_counter() - t)
    return {"query_ms_p50": 1000 * float(np.percentile(times, 50)),
            "query_ms_p99": 1000 * float(np.percentile(times, 99)),
            "recall_at_1": float(np.mean(np.array(found) == exact))}


def hnsw(x: np.ndarray, q: np.ndarray, exact: np.ndarray, threads: int = 2) -> list[dict[str, Any]]:
    faiss = require("faiss", extra="ann")
    usearch = require("usearch.index", extra="ann")
    out = []
    faiss.omp_set_num_threads(threads)
    t = time.perf_counter()
    index = faiss.IndexHNSWFlat(x.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 40
    index.add(x)
    build = time.perf_counter() - t
    faiss.omp_set_num_threads(1)
    for ef in EF_VALUES:
        index.hnsw.efSearch = ef
        out.append({"library": "faiss", "index": "HNSW M32 efC40", "ef": ef, "build_s": build,
                    **_timed(lambda i, p: int(index.search(p[None], 1)[1][0, 0]), q, exact)})
    for dtype in ("f32", "f16", "i8"):
        t = time.perf_counter()
        graph = usearch.Index(ndim=x.shape[1], metric="ip", dtype=dtype, connectivity=16, expansion_add=128)
        graph.add(np.arange(len(x)), x, threads=threads)
        build = time.perf_counter() - t
        for ef in EF_VALUES:
            graph.expansion_search = ef
            out.append({"library": "usearch", "index": f"HNSW {dtype} conn16 exp128", "ef": ef, "build_s": build,
                        **_timed(lambda i, p, graph=graph: int(graph.search(p, 1, threads=1).keys[0]), q, exact)})
    return out


def sign_codes(x: np.ndarray, q: np.ndarray, exact: np.ndarray, candidates: int = 256) -> list[dict[str, Any]]:
    faiss = require("faiss", extra="ann")
    usearch = require("usearch.index", extra="ann")
    rng = np.random.default_rng(20231)
    projection = rng.standard_normal((x.shape[1], 512)).astype(np.float32)
    t = time.perf_counter()
    codes = np.concatenate([np.packbits(x[s:s + 65536] @ projection > 0, axis=1) for s in range(0, len(x), 65536)])
    encode = time.perf_counter() - t
    probe_codes = np.packbits(q @ projection > 0, axis=1)
    faiss.omp_set_num_threads(1)
    flat = faiss.IndexBinaryFlat(512)
    flat.add(codes)

    def rescored(rows: np.ndarray, probe: np.ndarray) -> int:
        return int(rows[np.argmax(x[rows] @ probe)])

    out = [{"library": "faiss", "index": f"IndexBinaryFlat 512 bits + exact rescoring of {candidates}", "ef": None,
            "build_s": encode, **_timed(lambda i, p: rescored(flat.search(probe_codes[i][None], candidates)[1][0], p),
                                        q, exact)}]
    out.append({"library": "usearch", "index": f"exact Hamming 512 bits + exact rescoring of {candidates}", "ef": None,
                "build_s": encode, **_timed(lambda i, p: rescored(np.asarray(usearch.search(
                    codes, probe_codes[i], candidates, usearch.MetricKind.Hamming, exact=True, threads=1).keys), p),
                    q, exact)})
    return out


def compare(hnsw_rows: int, scan_rows: int, dim: int) -> list[dict[str, Any]]:
    """HNSW on ``hnsw_rows`` (graph builds take minutes), sign-code scans on ``scan_rows``."""
    results = []
    if hnsw_rows:
        x, q, exact = _data(hnsw_rows, dim)
        results += [{"rows": hnsw_rows, **r} for r in hnsw(x, q, exact)]
    x, q, exact = _data(scan_rows, dim)
    results += [{"rows": scan_rows, **r} for r in sign_codes(x, q, exact)]
    return results


def format_table(results: list[dict[str, Any]]) -> str:
    from .report import _table

    header = ("library", "index", "rows", "ef", "build s", "p50 ms", "p99 ms", "recall@1")
    return _table(header, [(r["library"], r["index"], str(r["rows"]), str(r["ef"] or "-"), f"{r['build_s']:.1f}",
                            f"{r['query_ms_p50']:.2f}", f"{r['query_ms_p99']:.2f}", f"{r['recall_at_1']:.3f}")
                           for r in results])
