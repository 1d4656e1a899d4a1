"""Runs a package's graphs for faces grouped by resolution: one run per used branch, one trunk run.

The runner gets its backends from a factory, so the Recognizer never knows which
backend it has (ONNX Runtime, PyTorch, TensorRT).
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Mapping

import numpy as np

from ..backends.base import Backend
from ..errors import BackendError, ConfigError
from ..package.loader import ModelPackage

log = logging.getLogger(__name__)

BACKENDS = ("auto", "onnxruntime", "torch", "tensorrt")


def backend_factory(package: ModelPackage, backend: str = "auto", device: str = "cpu", threads: int = 0,
                    fp16: bool = False, engines: str | None = None) -> Callable[[str], Backend]:
    """A function file name -> Backend for ``package`` on the chosen backend ("auto": ONNX Runtime)."""
    if backend in ("auto", "onnxruntime"):
        from ..backends.ort import OrtBackend

        return lambda file: OrtBackend(package.path(file), device=device, threads=threads,
                                       read_model=lambda: package.read_verified(file), read_file=package.read_verified)
    if backend == "torch":
        from ..backends.torch_backend import TorchBackend

        return lambda file: TorchBackend(package, file, device=device, fp16=fp16, threads=threads)
    if backend == "tensorrt":
        from ..backends.trt import trt_backend_factory  # type: ignore[attr-defined]

        return trt_backend_factory(package, engines)
    raise ConfigError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


class PackageRunner:
    """Embeds preprocessed faces per resolution through the branches and the merged trunk."""

    def __init__(self, package: ModelPackage, make_backend: Callable[[str], Backend]) -> None:
        self.manifest = package.manifest
        self.branches = {b.resolution: make_backend(b.file) for b in self.manifest.branches}
        self.trunk = make_backend(self.manifest.trunk.file)
        self._zeros = {t.name: np.zeros((0, *t.shape), np.float32) for t in self.manifest.trunk.inputs}
        self.branch_s = 0.0  # cumulative seconds in branch and trunk runs: the frame benchmark's stages
        self.trunk_s = 0.0

    def load(self) -> "PackageRunner":
        for backend in (*self.branches.values(), self.trunk):
            backend.load()
        return self

    def close(self) -> None:
        for backend in (*self.branches.values(), self.trunk):
            backend.close()

    @property
    def runs(self) -> dict[str, int]:
        """Graph executions so far, per graph: what the batching tests assert."""
        counts = {f"branch_{r}": b.runs for r, b in self.branches.items()}
        counts["trunk"] = self.trunk.runs
        return counts

    def embed(self, groups: Mapping[int, np.ndarray]) -> dict[int, np.ndarray]:
        """{resolution: (N, 3, r, r) float32} -> {resolution: (N, D) embeddings}, same order within each group."""
        feeds = dict(self._zeros)
        counts = {}
        for resolution, batch in groups.items():
            if resolution not in (112, *self.branches):
                raise ConfigError(f"package has no {resolution} px entry; it has {self.manifest.resolutions}")
            counts[resolution] = len(batch)
            if not len(batch):
                continue
            if resolution == 112:
                feeds[self.manifest.trunk.inputs[0].name] = batch
            else:
                info = self.manifest.branch(resolution)
                t = time.perf_counter()
                feeds[info.output.name] = self.branches[resolution].infer({info.input.name: batch})[info.output.name]
                self.branch_s += time.perf_counter() - t
        total = sum(counts.values())
        if total == 0:
            return {r: np.zeros((0, self.manifest.embedding_size), np.float32) for r in groups}
        t = time.perf_counter()
        embeddings = self.trunk.infer(feeds)[self.manifest.trunk.output.name]
        self.trunk_s += time.perf_counter() - t
        if len(embeddings) != total:
            raise BackendError(f"trunk returned {len(embeddings)} embeddings for {total} faces")
        out, start = {}, 0
        for resolution in self.manifest.trunk.entry_resolutions:  # the trunk's output order
            n = counts.get(resolution, 0)
            out[resolution] = embeddings[start:start + n]
            start += n
        return {r: out[r] for r in groups}
