"""The manifest against its graphs: every input and output it declares, and only hashed external data.

A manifest edited to declare another resolution or embedding size than its graphs
compute would otherwise load and fail (or, worse, run) later; a graph whose weights sit
in an external file the manifest does not hash would run whatever file of that name
the current folder holds. Both are refused when the package is opened.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import PurePosixPath, PureWindowsPath

from ..errors import PackageError
from .manifest import Manifest, TensorInfo
from .onnx_proto import Dim, OnnxFormatError, OnnxSummary, ValueInfo, summarize


def graph_tensors(manifest: Manifest) -> dict[str, tuple[tuple[TensorInfo, ...], tuple[TensorInfo, ...]]]:
    """graph file -> (inputs, outputs) the manifest declares for it (shapes without the batch axis)."""
    graphs: dict[str, tuple[tuple[TensorInfo, ...], tuple[TensorInfo, ...]]] = {
        manifest.trunk.file: (manifest.trunk.inputs, (manifest.trunk.output,))}
    for branch in manifest.branches:
        graphs[branch.file] = ((branch.input,), (branch.output,))
    for fused in manifest.fused:
        graphs[fused.file] = ((fused.input,), (fused.output,))
    return graphs


def read_summary(name: str, data: bytes | memoryview) -> OnnxSummary:
    try:
        return summarize(data)
    except OnnxFormatError as exc:
        raise PackageError(f"package graph {name} is not a readable ONNX model ({exc}); "
                           "re-export the package") from None


def check_external_data(name: str, summary: OnnxSummary, hashed: Iterable[str]) -> None:
    """External weights must be plain file names the manifest hashes (so they are read from the package, verified)."""
    hashed = set(hashed)
    for location in sorted(summary.external_files):
        plain = (location and location not in (".", "..") and PurePosixPath(location).name == location
                 and PureWindowsPath(location).name == location)
        if not plain:
            raise PackageError(f"package graph {name} keeps weights in external data at {location!r}, outside the "
                               "package folder: refused. Re-export the package with the weights inside its graphs")
        if location not in hashed:
            raise PackageError(f"package graph {name} keeps weights in the external data file {location!r}, which the "
                               "manifest does not hash: refused (an unverified file would run). Re-export the "
                               "package, or list that file's sha256 under files in manifest.json")


def _dims_agree(graph: tuple[Dim, ...] | None, declared: tuple[int, ...]) -> bool:
    if graph is None:  # no shape declared in the graph: nothing to contradict
        return True
    if len(graph) != 1 + len(declared):
        return False
    return all(not isinstance(g, int) or g == d for g, d in zip(graph[1:], declared))


def _shape(info: ValueInfo) -> str:
    return "no shape" if info.dims is None else "[" + ", ".join("N" if not isinstance(d, int) else str(d)
                                                                 for d in info.dims) + "]"


def check_io(name: str, summary: OnnxSummary, inputs: tuple[TensorInfo, ...], outputs: tuple[TensorInfo, ...]) -> None:
    """The graph's inputs and outputs are the manifest's, by name and shape (the batch axis aside)."""
    for kind, found, declared in (("inputs", summary.inputs, inputs), ("outputs", summary.outputs, outputs)):
        by_name = {v.name: v for v in found}
        if set(by_name) != {t.name for t in declared}:
            raise PackageError(f"package graph {name} has {kind} {sorted(by_name)}, but the manifest declares "
                               f"{sorted(t.name for t in declared)}: the manifest does not describe this graph. "
                               "Re-export the package; do not edit manifest.json by hand")
        for tensor in declared:
            value = by_name[tensor.name]
            if not _dims_agree(value.dims, tensor.shape):
                raise PackageError(f"package graph {name}: {kind[:-1]} {tensor.name} is {_shape(value)} in the graph "
                                   f"but [N, {', '.join(map(str, tensor.shape))}] in the manifest (a resolution or "
                                   "embedding size that the graph does not compute). Re-export the package; do not "
                                   "edit manifest.json by hand")
