"""Read an ONNX recogniser as a sequence of layers, by its structure (never by node names).

The walk starts at the image input and follows the data: a tensor read by two nodes
opens a residual block, whose two paths meet at an ``Add``; the longer path is the
block's main path, the other its shortcut. Normalization ops on the input (``Sub``,
``Mul``, ``Div``, ``Add`` by constants) are read as preprocessing, not as layers.
A ``Concat`` with another graph input is an implant point (our own merged trunks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._deps import require
from ..errors import CheckpointError

# ONNX op -> layer kind. Ops mapped to None carry no weights and change nothing we model.
_KINDS = {"Conv": "conv", "BatchNormalization": "bn", "PRelu": "prelu", "Relu": "relu", "Gemm": "gemm",
          "Flatten": "flatten", "Reshape": "flatten", "Identity": None, "Dropout": None}
_NORMALIZE_OPS = ("Sub", "Add", "Mul", "Div")


@dataclass
class Layer:
    """One step of the walk: ``kind`` (conv, bn, prelu, relu, relu6, gemm, flatten, block, shortcut, add,
    implant) and the ONNX node it came from (None for the block markers)."""

    kind: str
    node: object = None
    implant: str | None = None  # the graph input concatenated here, for kind "implant"

    def describe(self) -> str:
        if self.node is None:
            return self.kind if self.implant is None else f"implant {self.implant}"
        name = getattr(self.node, "name", "") or "unnamed"
        return f"{self.node.op_type} node {name!r}"


@dataclass
class InputNormalization:
    """y = scale * x + offset per channel, applied inside the graph before its first layer."""

    scale: np.ndarray = field(default_factory=lambda: np.ones(3))
    offset: np.ndarray = field(default_factory=lambda: np.zeros(3))
    ops: list[str] = field(default_factory=list)

    @property
    def present(self) -> bool:
        return bool(self.ops)


class OnnxGraph:
    """Constants, producers and consumers of one ONNX model, and the structural walk over it."""

    def __init__(self, path: str | Path, data: bytes | None = None) -> None:
        """``data``: the file's bytes when the caller has already read (and verified) them."""
        onnx = require("onnx", extra="export")
        self.path = Path(path)
        if data is None and not self.path.is_file():
            raise CheckpointError(f"ONNX file {self.path} does not exist")
        try:
            self.model = onnx.load(str(self.path)) if data is None else onnx.load_model_from_string(data)
        except Exception as exc:  # onnx raises DecodeError and friends
            raise CheckpointError(f"{self.path} is not a readable ONNX model ({type(exc).__name__}: {exc})") from None
        graph = self.model.graph
        if data is not None and any(t.data_location == onnx.TensorProto.EXTERNAL for t in graph.initializer):
            # from bytes, numpy_helper would read external data relative to the current folder: never that
            raise CheckpointError(f"{self.path} keeps weights in external data, which is read here only from inside "
                                  "the graph; use the onnxruntime backend, which reads it from the verified package")
        self.constants: dict[str, np.ndarray] = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
        self.consumers: dict[str, list] = {}
        for node in graph.node:
            if node.op_type == "Constant":
                value = next((a for a in node.attribute if a.name == "value"), None)
                if value is not None:
                    self.constants[node.output[0]] = onnx.numpy_helper.to_array(value.t)
                continue
            if node.op_type == "Identity" and node.input[0] in self.constants:
                self.constants[node.output[0]] = self.constants[node.input[0]]  # the exporter's shared weights
                continue
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.inputs = [i.name for i in graph.input if i.name not in self.constants]
        self.outputs = [o.name for o in graph.output]

    def attribute(self, node, name: str, default=None):
        onnx = require("onnx", extra="export")
        for attr in node.attribute:
            if attr.name == name:
                return onnx.helper.get_attribute_value(attr)
        return default

    def constant(self, name: str, what: str) -> np.ndarray:
        if name not in self.constants:
            raise CheckpointError(f"{self.path.name}: {what} ({name!r}) is computed at run time, not stored; "
                                  "only graphs with constant weights can be imported")
        return self.constants[name]

    def _activation_inputs(self, node) -> list[str]:
        return [n for n in node.input if n and n not in self.constants]

    # -- the walk --------------------------------------------------------------------------

    def walk(self, image_input: str | None = None) -> tuple[InputNormalization, list[Layer]]:
        """The input normalization and the layer sequence from ``image_input`` (default: the first input)."""
        start = image_input or self.inputs[0]
        normalization = InputNormalization()
        tensor = self._read_normalization(start, normalization)
        layers, end, join = self._walk_from(tensor)
        if join is not None:
            raise CheckpointError(f"{self.path.name}: an Add joins two paths without a matching fork "
                                  f"({Layer('add', join).describe()}); this graph is not a supported recogniser")
        if end not in self.outputs:
            raise CheckpointError(f"{self.path.name}: the walk from {start!r} stopped at {end!r}, which is not a "
                                  f"graph output ({self.outputs})")
        return normalization, layers

    def _read_normalization(self, tensor: str, norm: InputNormalization) -> str:
        while True:
            readers = self.consumers.get(tensor, [])
            if len(readers) != 1 or readers[0].op_type not in _NORMALIZE_OPS:
                return tensor
            node = readers[0]
            others = [n for n in node.input if n != tensor]
            if len(others) != 1 or others[0] not in self.constants:
                return tensor
            value = np.asarray(self.constants[others[0]], dtype=np.float64).reshape(-1)
            if value.size not in (1, 3):
                raise CheckpointError(f"{self.path.name}: input normalization {node.op_type} by a constant of "
                                      f"{value.size} values; expected 1 or 3 (one per colour channel)")
            if node.op_type == "Sub" and list(node.input).index(tensor) == 0:
                norm.offset = norm.offset - value
            elif node.op_type == "Add":
                norm.offset = norm.offset + value
            elif node.op_type == "Mul":
                norm.scale, norm.offset = norm.scale * value, norm.offset * value
            elif node.op_type == "Div" and list(node.input).index(tensor) == 0:
                norm.scale, norm.offset = norm.scale / value, norm.offset / value
            else:
                return tensor
            norm.ops.append(node.op_type)
            tensor = node.output[0]

    def _layer(self, node) -> Layer:
        if node.op_type == "Clip":
            bounds = [float(np.asarray(self.constants[n]).reshape(-1)[0]) for n in list(node.input)[1:3]
                      if n in self.constants]
            if not bounds:
                bounds = [self.attribute(node, "min", None), self.attribute(node, "max", None)]
            if [round(float(b), 6) if b is not None else None for b in bounds] == [0.0, 6.0]:
                return Layer("relu6", node)
            raise CheckpointError(f"{self.path.name}: {Layer('clip', node).describe()} clips to {bounds}; only "
                                  "ReLU6 (0, 6) is supported")
        if node.op_type == "Concat":
            graph_inputs = [n for n in self._activation_inputs(node) if n in self.inputs]
            if len(graph_inputs) == 1 and len(self._activation_inputs(node)) == 2:
                return Layer("implant", node, graph_inputs[0])
        if node.op_type == "Cast" and self.attribute(node, "to") == 1:  # to float32: arcface_torch's fc(x.float())
            return Layer("skip", node)
        if node.op_type not in _KINDS:
            return Layer(f"unsupported {node.op_type}", node)
        return Layer(_KINDS[node.op_type] or "skip", node)

    def _is_join(self, node) -> bool:
        return node.op_type == "Add" and len(self._activation_inputs(node)) == 2

    def _walk_from(self, tensor: str) -> tuple[list[Layer], str, object]:
        """Layers along the data from ``tensor`` until a graph output or a residual join (returned)."""
        layers: list[Layer] = []
        while True:
            # A Shape node only reads the size (x.view(x.size(0), -1) exports that way): not a data path.
            readers = [n for n in self.consumers.get(tensor, []) if n.op_type != "Shape"]
            if not readers:
                return layers, tensor, None
            if len(readers) == 1:
                node = readers[0]
                if self._is_join(node):
                    return layers, tensor, node
                layer = self._layer(node)
                if layer.kind != "skip":
                    layers.append(layer)
                tensor = node.output[0]
                continue
            if len(readers) != 2:
                raise CheckpointError(f"{self.path.name}: tensor {tensor!r} feeds {len(readers)} nodes; a supported "
                                      "recogniser forks only into a residual block's two paths")
            paths = []
            for reader in readers:
                if self._is_join(reader):
                    paths.append(([], reader))
                    continue
                first = self._layer(reader)
                rest, _, join = self._walk_from(reader.output[0])
                paths.append((([first] if first.kind != "skip" else []) + rest, join))
            if paths[0][1] is None or paths[0][1] is not paths[1][1]:
                raise CheckpointError(f"{self.path.name}: the two paths from {tensor!r} do not meet at one Add; "
                                      "not a residual block of a supported recogniser")
            main, shortcut = sorted((p[0] for p in paths), key=len, reverse=True)
            join = paths[0][1]
            layers += [Layer("block"), *main, Layer("shortcut"), *shortcut, Layer("add", join)]
            tensor = join.output[0]
