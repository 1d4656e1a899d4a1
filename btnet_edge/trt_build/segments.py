"""Cut the merged trunk.onnx at its implant Concats into segment graphs.

TensorRT cannot give an input a batch minimum of 0 (NVIDIA/TensorRT#337), so the
merged trunk, whose entry points may each be empty, is cut where each implant is
concatenated: segment 0 runs the stem on ``image_112`` up to the first implant
point, segment k takes the merged batch ``merged_<r>`` (trunk features followed
by the branch's implant) up to the next one, the last ends in the embedding.
The trunk weights stay in one file each; nothing is duplicated across segments.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._deps import require
from ..errors import PackageError
from ..safe_io import atomic_path

log = logging.getLogger(__name__)

BATCH_DIM = "batch"


@dataclass(frozen=True)
class Segment:
    """One trunk segment: its file, input and output, and what its input merges."""

    index: int
    name: str  # engine name, "trunk_seg0_112", "trunk_seg1_28", ...
    file: Path
    input: str  # "image_112" for segment 0, else "merged_<r>"
    output: str  # "features_<r>" (the trunk's own features at the next implant) or the embedding
    resolution: int  # spatial size of the input: 112, then each implant's
    concat: tuple[str, ...]  # for k >= 1: (previous segment output, implant input), in batch order

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "engine": self.name, "onnx": self.file.name, "input": self.input,
                "output": self.output, "resolution": self.resolution, "concat": list(self.concat)}


@dataclass(frozen=True)
class _Cut:
    concat_output: str
    trunk_input: str  # Concat input 0: the trunk's own features
    implant: str  # Concat input 1: the graph input of the branch's implant


def find_cuts(model: Any, implant_names: Sequence[str]) -> list[_Cut]:
    """The implant Concats of the merged trunk, in the order of ``implant_names`` (largest first)."""
    by_implant = {}
    for node in model.graph.node:
        if node.op_type != "Concat":
            continue
        hits = [name for name in node.input if name in implant_names]
        if hits:
            if len(node.input) != 2 or node.input[1] != hits[0]:
                raise PackageError(f"trunk Concat {node.name or node.output[0]} merges {list(node.input)}; expected "
                                   "(trunk features, implant): re-export the package with this btnet-edge")
            axis = next((a.i for a in node.attribute if a.name == "axis"), None)
            if axis != 0:
                raise PackageError(f"trunk Concat for {hits[0]} joins axis {axis}, not the batch axis 0")
            by_implant[hits[0]] = _Cut(node.output[0], node.input[0], hits[0])
    missing = [name for name in implant_names if name not in by_implant]
    if missing:
        raise PackageError(f"trunk.onnx has no batch Concat for {missing}: not a merged BTNet trunk; re-export it")
    return [by_implant[name] for name in implant_names]


def _rename(model: Any, old: str, new: str) -> None:
    for node in model.graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]
    for value in (*model.graph.input, *model.graph.output):
        if value.name == old:
            value.name = new


def _dynamic_batch(value: Any) -> None:
    dims = value.type.tensor_type.shape.dim
    if dims:
        dims[0].ClearField("dim_value")
        dims[0].dim_param = BATCH_DIM


def extract_segment(model: Any, input_name: str, output_name: str, new_input: str, new_output: str) -> Any:
    """The subgraph from ``input_name`` to ``output_name``, I/O renamed and batch made dynamic."""
    onnx = require("onnx", extra="trt")
    extractor = onnx.utils.Extractor(model)
    segment = extractor.extract_model([input_name], [output_name])
    if input_name != new_input:
        _rename(segment, input_name, new_input)
    if output_name != new_output:
        _rename(segment, output_name, new_output)
    for value in (*segment.graph.input, *segment.graph.output):
        _dynamic_batch(value)
    del segment.graph.value_info[:]
    del segment.opset_import[:]
    segment.opset_import.extend(model.opset_import)
    segment.ir_version = model.ir_version
    onnx.checker.check_model(segment)
    return segment


def cut_trunk(trunk_path: str | Path, entry_names: Sequence[str], entry_resolutions: Sequence[int],
              out_dir: str | Path, output_name: str = "embedding") -> list[Segment]:
    """Write ``trunk_seg<k>_<r>.onnx`` files to ``out_dir``; entries as the manifest lists them (112 first)."""
    onnx = require("onnx", extra="trt")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = onnx.shape_inference.infer_shapes(onnx.load(str(trunk_path)))
    image, implants = entry_names[0], list(entry_names[1:])
    cuts = find_cuts(model, implants)
    boundaries = [(image, image, entry_resolutions[0], ())]
    for cut, resolution in zip(cuts, entry_resolutions[1:]):
        boundaries.append((cut.concat_output, f"merged_{resolution}", resolution,
                           (f"features_{resolution}", cut.implant)))
    segments = []
    for k, (source, new_input, resolution, concat) in enumerate(boundaries):
        if k + 1 < len(boundaries):
            target, new_output = cuts[k].trunk_input, f"features_{boundaries[k + 1][2]}"
        else:
            target, new_output = output_name, output_name
        name = f"trunk_seg{k}_{resolution}"
        graph = extract_segment(model, source, target, new_input, new_output)
        path = out_dir / f"{name}.onnx"
        with atomic_path(path, "trunk segment ONNX") as temp:
            onnx.save(graph, str(temp))
        segments.append(Segment(k, name, path, new_input, new_output, resolution, concat))
        log.debug("trunk segment %s: %s -> %s (%d nodes)", name, new_input, new_output, len(graph.graph.node))
    return segments
