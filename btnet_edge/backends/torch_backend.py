"""PyTorch backend: the reference. Runs one package graph with weights read from the package's ONNX files.

CPU or CUDA; FP16 on CUDA (autocast off, weights and inputs in half, outputs back to FP32).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._deps import require
from ..errors import BackendError
from .base import Backend, TensorSpec

_NETS: dict[tuple[str, str, bool], Any] = {}  # one rebuilt BTNet per package/device/precision


class TorchBackend(Backend):
    """Emulates the graph ``file`` of ``package`` (trunk.onnx, branch_<r>.onnx or fused_<r>.onnx)."""

    name = "torch"

    def __init__(self, package, file: str, device: str = "cpu", fp16: bool = False, threads: int = 0) -> None:
        super().__init__(package.path(file))
        self.package, self.file, self.device, self.fp16, self.threads = package, file, device, fp16, threads
        self._net: Any = None  # the rebuilt BTNet once loaded (a torch module; torch is not a runtime dependency)

    def _load(self) -> None:
        torch = require("torch", extra="export")
        from ..export.package_weights import btnet_from_package

        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError("PyTorch has no CUDA device here; run on the CPU "
                               "(--device cpu; device='cpu' in the API)")
        if self.fp16 and not self.device.startswith("cuda"):
            raise BackendError("FP16 with the PyTorch backend needs CUDA; on the CPU run in FP32 (fp16=False)")
        if self.threads:
            torch.set_num_threads(self.threads)
        key = (str(self.package.folder.resolve()), self.device, self.fp16)
        if key not in _NETS:
            net = btnet_from_package(self.package).to(self.device)
            _NETS[key] = net.half() if self.fp16 else net
        self._net = _NETS[key]

    def _graph_specs(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        m = self.package.manifest
        if self.file == m.trunk.file:
            return ([TensorSpec(t.name, "float32", (-1, *t.shape)) for t in m.trunk.inputs],
                    [TensorSpec(m.trunk.output.name, "float32", (-1, *m.trunk.output.shape))])
        for info in (*m.branches, *m.fused):
            if info.file == self.file:
                return ([TensorSpec(info.input.name, "float32", (-1, *info.input.shape))],
                        [TensorSpec(info.output.name, "float32", (-1, *info.output.shape))])
        raise BackendError(f"{self.file} is not a graph of package {self.package.folder}")

    @property
    def inputs(self) -> list[TensorSpec]:
        return self._graph_specs()[0]

    @property
    def outputs(self) -> list[TensorSpec]:
        return self._graph_specs()[1]

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = require("torch", extra="export")
        net = self._net
        dtype = torch.float16 if self.fp16 else torch.float32
        tensors = [torch.from_numpy(np.ascontiguousarray(feeds[s.name])).to(self.device, dtype) for s in self.inputs]
        m = self.package.manifest
        with torch.no_grad():
            if self.file == m.trunk.file:
                parts = [net.run_trunk_from(r, x) for r, x in zip(m.trunk.entry_resolutions, tensors) if len(x)]
                out = torch.cat(parts) if parts else torch.zeros(0, m.embedding_size)
            elif self.file.startswith("branch_"):
                r = int(Path(self.file).stem.split("_")[1])
                out = net.run_branch(r, tensors[0])
            else:
                r = int(Path(self.file).stem.split("_")[1])
                out = net.embed(tensors[0], r)
        return {self.outputs[0].name: out.float().cpu().numpy()}
