"""What a package must know of an ONNX file without the onnx package: its I/O shapes and external data files.

The runtime needs neither torch nor onnx, yet must check that a graph is what the
manifest says (names and shapes of inputs and outputs) and which files its weights
live in (``TensorProto.external_data``): ONNX Runtime resolves those against the
current folder when a model is built from bytes, so an unchecked one would run
whatever file of that name lies there. This reads the protobuf wire format directly,
skipping the weight payloads by length (a 170 MB trunk is walked in milliseconds).
Field numbers are those of onnx/onnx.proto (ModelProto.graph = 7, GraphProto.node = 1,
initializer = 5, input = 11, output = 12, TensorProto.external_data = 13, ...).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Union

Dim = Union[int, str, None]  # a fixed size, a named dynamic size, or unknown
_MAX_DEPTH = 64  # subgraphs nest (If, Loop, Scan); a crafted file must not recurse without end


class OnnxFormatError(ValueError):
    """The bytes are not a well-formed ONNX protobuf."""


@dataclass(frozen=True)
class ValueInfo:
    name: str
    dims: tuple[Dim, ...] | None  # None: the graph declares no shape


@dataclass
class OnnxSummary:
    inputs: list[ValueInfo] = field(default_factory=list)
    outputs: list[ValueInfo] = field(default_factory=list)
    external_files: set[str] = field(default_factory=set)  # "location" of every tensor kept outside the file
    initializer_names: set[str] = field(default_factory=set)


def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise OnnxFormatError("truncated or overlong varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(buf: memoryview, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, value or payload start, payload end) of one message in buf[start:end]."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos, end)
            yield number, wire, value, pos
        elif wire == 1:
            pos += 8
            yield number, wire, pos - 8, pos
        elif wire == 2:
            length, pos = _varint(buf, pos, end)
            if pos + length > end:
                raise OnnxFormatError("a field runs past the end of its message")
            yield number, wire, pos, pos + length
            pos += length
        elif wire == 5:
            pos += 4
            yield number, wire, pos - 4, pos
        else:
            raise OnnxFormatError(f"unsupported protobuf wire type {wire}")
    if pos != end:
        raise OnnxFormatError("a message runs past its end")


def _text(buf: memoryview, start: int, end: int) -> str:
    return bytes(buf[start:end]).decode("utf-8", errors="replace")


def _value_info(buf: memoryview, start: int, end: int) -> ValueInfo:
    name, dims = "", None
    for number, wire, a, b in _fields(buf, start, end):
        if number == 1 and wire == 2:
            name = _text(buf, a, b)
        elif number == 2 and wire == 2:  # TypeProto
            for t_number, t_wire, ta, tb in _fields(buf, a, b):
                if t_number == 1 and t_wire == 2:  # TypeProto.Tensor
                    for s_number, s_wire, sa, sb in _fields(buf, ta, tb):
                        if s_number == 2 and s_wire == 2:  # TensorShapeProto
                            dims = tuple(_dimension(buf, da, db) for d_number, d_wire, da, db in _fields(buf, sa, sb)
                                         if d_number == 1 and d_wire == 2)
    return ValueInfo(name, dims)


def _dimension(buf: memoryview, start: int, end: int) -> Dim:
    for number, wire, a, b in _fields(buf, start, end):
        if number == 1 and wire == 0:
            return a - (1 << 64) if a >= 1 << 63 else a
        if number == 2 and wire == 2:
            return _text(buf, a, b)
    return None


def _tensor(buf: memoryview, start: int, end: int, summary: OnnxSummary, initializer: bool = False) -> None:
    location, external, name = None, False, ""
    for number, wire, a, b in _fields(buf, start, end):
        if number == 8 and wire == 2:
            name = _text(buf, a, b)
        elif number == 14 and wire == 0:
            external = a == 1  # TensorProto.DataLocation.EXTERNAL
        elif number == 13 and wire == 2:  # StringStringEntryProto
            entry = {n: _text(buf, x, y) for n, w, x, y in _fields(buf, a, b) if w == 2}
            if entry.get(1) == "location":
                location = entry.get(2, "")
    if initializer:
        summary.initializer_names.add(name)
    if external or location is not None:
        summary.external_files.add(location or "")


def _sparse_tensor(buf: memoryview, start: int, end: int, summary: OnnxSummary) -> None:
    for number, wire, a, b in _fields(buf, start, end):
        if number in (1, 2) and wire == 2:  # values, indices
            _tensor(buf, a, b, summary)


def _attribute(buf: memoryview, start: int, end: int, summary: OnnxSummary, depth: int) -> None:
    for number, wire, a, b in _fields(buf, start, end):
        if wire != 2:
            continue
        if number in (5, 10):  # t, tensors
            _tensor(buf, a, b, summary)
        elif number in (6, 11):  # g, graphs
            _graph(buf, a, b, summary, depth + 1, top=False)
        elif number in (22, 23):  # sparse_tensor, sparse_tensors
            _sparse_tensor(buf, a, b, summary)


def _node(buf: memoryview, start: int, end: int, summary: OnnxSummary, depth: int) -> None:
    for number, wire, a, b in _fields(buf, start, end):
        if number == 5 and wire == 2:
            _attribute(buf, a, b, summary, depth)


def _graph(buf: memoryview, start: int, end: int, summary: OnnxSummary, depth: int, top: bool) -> None:
    if depth > _MAX_DEPTH:
        raise OnnxFormatError(f"subgraphs nested deeper than {_MAX_DEPTH}")
    for number, wire, a, b in _fields(buf, start, end):
        if wire != 2:
            continue
        if number == 1:
            _node(buf, a, b, summary, depth)
        elif number == 5:
            _tensor(buf, a, b, summary, initializer=top)
        elif number == 15:
            _sparse_tensor(buf, a, b, summary)
        elif top and number == 11:
            summary.inputs.append(_value_info(buf, a, b))
        elif top and number == 12:
            summary.outputs.append(_value_info(buf, a, b))


def summarize(data: bytes | memoryview) -> OnnxSummary:
    """Inputs, outputs and external data files of an ONNX model; OnnxFormatError if it is not one."""
    buf = memoryview(data).cast("B")
    summary = OnnxSummary()
    graphs = 0
    for number, wire, a, b in _fields(buf, 0, len(buf)):
        if number == 7 and wire == 2:
            graphs += 1
            _graph(buf, a, b, summary, 0, top=True)
        elif number == 25 and wire == 2:  # FunctionProto: its nodes may hold tensors too
            for f_number, f_wire, fa, fb in _fields(buf, a, b):
                if f_number == 7 and f_wire == 2:
                    _node(buf, fa, fb, summary, 1)
        elif number == 20 and wire == 2:  # TrainingInfoProto: initialization and algorithm graphs
            for t_number, t_wire, ta, tb in _fields(buf, a, b):
                if t_number in (1, 2) and t_wire == 2:
                    _graph(buf, ta, tb, summary, 1, top=False)
    if graphs != 1:
        raise OnnxFormatError("no graph in the model" if not graphs else "more than one graph field")
    if not summary.inputs:
        raise OnnxFormatError("the graph has no inputs")
    # graph inputs that are initializers (old exporters list weights as inputs) are not entry points
    summary.inputs = [i for i in summary.inputs if i.name not in summary.initializer_names]
    return summary
