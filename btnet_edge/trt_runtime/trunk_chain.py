"""Run trunk segments as one trunk: the same inputs and output as the merged trunk.onnx.

The chain concatenates, before each segment, the previous segment's output and
the branch implant along the batch axis, and skips a segment whose merged input
is empty. It works with any :class:`Backend` per segment (ONNX Runtime in the
tests, TensorRT on a GPU), so the chaining logic is checked without a GPU.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..backends.base import Backend, TensorSpec
from ..errors import BackendError
from ..package.manifest import Manifest
from .engine_folder import EngineEntry, EngineFolder, SegmentLink

log = logging.getLogger(__name__)


class SegmentedTrunk(Backend):
    """``infer({image_112, implant_28, ...}) -> {embedding}`` over segment backends (one per segment).

    ``chain`` is the folder's trunk segments in order: per segment its ``input``,
    ``output`` and ``concat`` (previous output, implant name).
    """

    name = "segmented-trunk"

    def __init__(self, chain: Sequence[SegmentLink], backends: Sequence[Backend],
                 entry_specs: Sequence[TensorSpec], output_spec: TensorSpec) -> None:
        if len(chain) != len(backends) or not chain:
            raise BackendError(f"a segmented trunk needs one backend per segment: {len(chain)} segments, "
                               f"{len(backends)} backends")
        super().__init__(backends[0].model_path)
        self.chain = list(chain)
        self.backends = list(backends)
        self._inputs = list(entry_specs)
        self._output = output_spec

    @property
    def inputs(self) -> list[TensorSpec]:
        return list(self._inputs)

    @property
    def outputs(self) -> list[TensorSpec]:
        return [self._output]

    def _load(self) -> None:
        for backend in self.backends:
            backend.load()

    def _close(self) -> None:
        for backend in self.backends:
            backend.close()

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        first = self.chain[0].input
        x = np.ascontiguousarray(feeds[first], dtype=np.float32)
        for link, backend in zip(self.chain, self.backends):
            if link.concat:
                implant = feeds[link.concat[1]]
                x = implant if x.shape[0] == 0 else np.concatenate([x, implant], axis=0)
            if x.shape[0] == 0:  # nothing reaches this segment: no launch
                x = np.zeros((0, *self._shape_after(link)), np.float32)
                continue
            x = backend.infer({link.input: np.ascontiguousarray(x, dtype=np.float32)})[link.output]
        return {self._output.name: x}

    def _shape_after(self, link: SegmentLink) -> tuple[int, ...]:
        """Per-face shape of ``link``'s output: the next implant's shape, or the embedding's."""
        index = self.chain.index(link)
        if index + 1 < len(self.chain):
            implant = self.chain[index + 1].concat[1]
            spec = next(s for s in self._inputs if s.name == implant)
        else:
            spec = self._output
        return tuple(int(d) for d in spec.shape[1:])


@dataclass
class PlanBackends:
    """The backends of one engine folder, shaped like the package: a backend per branch, one trunk, the detector."""

    branches: dict[int, Backend]
    trunk: Backend
    detector: Backend | None
    opened: list[Backend]  # every engine backend, for close()

    def close(self) -> None:
        for backend in self.opened:
            backend.close()


def open_plan(manifest: Manifest, folder: EngineFolder,
              backend_for: Callable[[EngineEntry], Backend]) -> PlanBackends:
    """Backends for a folder's engines; ``backend_for(entry)`` opens one (TensorRT, or ONNX Runtime in tests).

    With trunk segments the trunk is a :class:`SegmentedTrunk`, which takes the same
    feeds as the merged trunk.onnx, so callers never see the difference.
    """
    branches = {b.resolution: backend_for(folder.entry(f"branch_{b.resolution}")) for b in manifest.branches}
    if folder.trunk_form == "merged":
        trunk = backend_for(folder.entry("trunk"))
        parts = [trunk]
    else:
        parts = [backend_for(folder.entry(link.engine)) for link in folder.segments]
        specs = [TensorSpec(t.name, "float32", (-1, *t.shape)) for t in manifest.trunk.inputs]
        output = TensorSpec(manifest.trunk.output.name, "float32", (-1, *manifest.trunk.output.shape))
        trunk = SegmentedTrunk(folder.segments, parts, specs, output)
    detector = backend_for(folder.detector) if folder.detector else None
    opened = [*branches.values(), *parts, *([detector] if detector else [])]
    return PlanBackends(branches, trunk, detector, opened)


def open_engine_backends(folder: EngineFolder, manifest: Manifest, memory: Any = None) -> PlanBackends:
    """TensorRT backends for a built engine folder (branches, trunk, detector), shaped like the package."""
    from .engine_backend import TrtBackend

    return open_plan(manifest, folder, lambda entry: TrtBackend(folder.engine_path(entry), memory=memory))
