"""The embedding step shared by many requests: faces of all of them, per resolution, in one run each.

Requests arrive as ``{resolution: (n, 3, r, r) float32}`` (already detected, aligned
and preprocessed by a front-end), or as the aligned ``(n, r, r, 3)`` uint8 crops when the
runner is TensorRT's device-resident one (``takes_uint8``). :meth:`BatchEmbedder.embed_many` concatenates them
per resolution, runs each used branch once and the trunk once (``PackageRunner``),
and splits the embeddings back per request. No Ray here: the Ray deployment wraps it.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import ConfigError
from ..package.loader import ModelPackage
from ..pipeline.config import RecognizerConfig
from ..pipeline.runner import open_runner

log = logging.getLogger(__name__)

Groups = Mapping[int, np.ndarray]


class BatchEmbedder:
    """Embeds the faces of several requests together and counts what each graph run carried."""

    def __init__(self, package: ModelPackage, config: RecognizerConfig | None = None) -> None:
        """``config``: backend, device, threads and engines of the runner (default: ONNX Runtime, CPU, 1 thread)."""
        self.manifest = package.manifest
        self.runner = open_runner(package, config or RecognizerConfig(package=str(package.folder), threads=1))
        if hasattr(self.runner, "load"):
            self.runner.load()
        self._dtype = np.uint8 if self.runner.takes_uint8 else np.float32  # engines take the uint8 crops
        self.requests = 0
        self.batches = 0
        self.faces = Counter()  # resolution -> faces embedded
        self.requests_per_batch = Counter()  # batch size (requests) -> how many batches
        self._lock = threading.Lock()

    def embed_many(self, requests: Sequence[Groups]) -> list[dict[int, np.ndarray]]:
        """Per request ``{resolution: (n, D) raw embeddings}``, same order as its faces."""
        counts = [{int(r): len(b) for r, b in groups.items()} for groups in requests]
        for groups in requests:
            for r in groups:
                if int(r) not in self.manifest.resolutions:
                    raise ConfigError(f"request has faces for {r} px; the package has {self.manifest.resolutions}")
        merged: dict[int, np.ndarray] = {}
        for r in sorted({int(r) for groups in requests for r in groups}):
            parts = [np.asarray(g[r], self._dtype) for g in requests if r in g and len(g[r])]
            if parts:
                merged[r] = np.concatenate(parts) if len(parts) > 1 else parts[0]
        with self._lock:  # one PackageRunner: runs and counters change together
            out = self.runner.embed(merged) if merged else {}
            self.requests += len(requests)
            self.batches += 1
            self.requests_per_batch[len(requests)] += 1
            for r, batch in merged.items():
                self.faces[r] += len(batch)
        starts = Counter()
        results = []
        for c in counts:
            answer = {}
            for r, n in c.items():
                answer[r] = out[r][starts[r]:starts[r] + n] if n else np.zeros((0, self.manifest.embedding_size),
                                                                                np.float32)
                starts[r] += n
            results.append(answer)
        return results

    def stats(self) -> dict:
        """Graph runs, faces per run per graph and batch sizes: what the load test reports."""
        with self._lock:
            runs = self.runner.runs
            per_graph = {}
            for name, n in runs.items():
                faces = sum(self.faces.values()) if name == "trunk" else self.faces.get(int(name.split("_")[1]), 0)
                per_graph[name] = {"runs": n, "faces": int(faces), "faces_per_run": round(faces / n, 3) if n else 0.0}
            return {"requests": self.requests, "batches": self.batches,
                    "requests_per_batch": {str(k): v for k, v in sorted(self.requests_per_batch.items())},
                    "faces_by_resolution": {str(k): int(v) for k, v in sorted(self.faces.items())},
                    "graphs": per_graph}

    def close(self) -> None:
        self.runner.close()
