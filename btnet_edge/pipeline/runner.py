"""Runners: what embeds faces grouped by resolution for the Recognizer (one run per used branch, one trunk run).

A runner is anything with the small :class:`Runner` protocol. :class:`PackageRunner` gets
its backends from a factory, so it never knows which backend it has (ONNX Runtime,
PyTorch, TensorRT engines one by one); the TensorRT device-resident runner
(:class:`~btnet_edge.trt_runtime.resident.ResidentRunner`) and the face server's remote
runner have the same shape. :func:`open_runner` opens the one a
:class:`~btnet_edge.pipeline.config.RecognizerConfig` names.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

import numpy as np

from ..backends.base import Backend
from ..errors import BackendError, ConfigError
from ..package.loader import ModelPackage
from .config import BACKENDS, RecognizerConfig

log = logging.getLogger(__name__)


@runtime_checkable
class Runner(Protocol):
    """Embeds faces per resolution: ``embed({r: batch}) -> {r: (N, D) raw embeddings}``, same order per group.

    ``takes_uint8``: True when ``embed`` takes the aligned (N, r, r, 3) uint8 BGR crops as they
    are (normalised on the device), False when it takes preprocessed (N, 3, r, r) float32.
    ``branch_s`` and ``trunk_s`` are cumulative seconds, for the Recognizer's stage times.
    """

    takes_uint8: bool
    branch_s: float
    trunk_s: float

    def embed(self, groups: Mapping[int, np.ndarray]) -> dict[int, np.ndarray]: ...

    def close(self) -> None: ...


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
        return engine_backend_factory(package, engines)
    raise ConfigError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def engine_backend_factory(package: ModelPackage, engines: str | Path | None) -> Callable[[str], Backend]:
    """``file -> Backend`` over a built engine folder: the trunk file maps to the (possibly segmented) trunk."""
    from ..trt_runtime.engine_folder import read_engine_folder
    from ..trt_runtime.trunk_chain import open_engine_backends

    if engines is None:
        raise BackendError("backend 'tensorrt' needs the engine folder: pass engines=DIR (CLI: --engines DIR); "
                           "build it with `btnet-edge build PKG --target desktop-fp16 --out DIR`")
    folder = read_engine_folder(engines)
    if folder.uint8:
        raise ConfigError(f"the engines in {engines} take aligned uint8 BGR crops (input_format = \"uint8_bgr\"), "
                          "not the package's float tensors fed graph by graph: run them whole-frame (Recognizer, "
                          "`btnet-edge run`/`compare`, `bench --frames`), or rebuild with a target whose "
                          "input_format is \"float\" to use them one by one")
    opened = open_engine_backends(folder, package.manifest)
    by_file = {package.manifest.trunk.file: opened.trunk}
    by_file.update({package.manifest.branch(r).file: backend for r, backend in opened.branches.items()})

    def make(file: str) -> Backend:
        if file not in by_file:
            raise BackendError(f"{engines} holds no engine for {file}; rebuild the engines for this package")
        return by_file[file]

    return make


def open_runner(package: ModelPackage, config: RecognizerConfig) -> Runner:
    """The runner ``config`` names: TensorRT engines built with uint8 inputs run device-resident, others per graph."""
    if config.backend == "tensorrt":
        from ..trt_runtime.engine_folder import read_engine_folder

        if config.engines is None:  # RecognizerConfig refuses this; a config built with replace() could still get here
            raise ConfigError("backend 'tensorrt' needs the engine folder: pass engines=DIR (CLI: --engines DIR)")
        folder = read_engine_folder(config.engines)
        if folder.package_name != package.manifest.name:
            log.warning("engines in %s were built for package %r, running them for %r", config.engines,
                        folder.package_name, package.manifest.name)
        if folder.uint8:
            from ..trt_runtime.resident import open_resident

            return open_resident(folder, "tensorrt")
    return PackageRunner(package, backend_factory(package, config.backend, config.device, config.threads,
                                                  config.fp16, config.engines))


class PackageRunner:
    """Embeds preprocessed faces per resolution through the branches and the merged trunk."""

    takes_uint8 = False

    def __init__(self, package: ModelPackage, make_backend: Callable[[str], Backend]) -> None:
        self.manifest = package.manifest
        self.branches = {b.resolution: make_backend(b.file) for b in self.manifest.branches}
        self.trunk = make_backend(self.manifest.trunk.file)
        self._zeros = {t.name: np.zeros((0, *t.shape), np.float32) for t in self.manifest.trunk.inputs}
        self.branch_s = 0.0  # cumulative seconds in branch and trunk runs: the frame benchmark's stages
        self.trunk_s = 0.0

    def load(self) -> PackageRunner:
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
