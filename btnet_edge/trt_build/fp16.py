"""FP32 ONNX -> FP16 ONNX for strongly typed TensorRT (11.x has no ``BuilderFlag.FP16``).

Weights and activations become FP16, except three FP32 islands that keep the
embedding as accurate as the FP32 graph: the graph inputs and outputs (callers
keep feeding and reading float32), and the embedding head, i.e. the final
linear layer (Gemm/MatMul, or the 1x1 Conv before a Flatten as in MobileFaceNet)
and the normalization after it (BN1d). Cast nodes are inserted wherever an FP16
tensor meets an FP32 consumer or the other way round. Inputs that ONNX defines
as float32 only (Resize scales) stay FP32.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._deps import require

log = logging.getLogger(__name__)

FLOAT, FLOAT16 = 1, 10  # onnx.TensorProto.FLOAT / FLOAT16
FP16_MAX = 65504.0
# (op, input position) that ONNX types as float32 whatever the data type.
FP32_ONLY_INPUTS = {"Resize": {1, 2}, "Upsample": {1}}
_HEAD_PASS = {"BatchNormalization", "Flatten", "Reshape", "Identity", "Squeeze", "Unsqueeze",
              "Add", "Mul", "Sub", "Div"}
_HEAD_FLATTEN = {"Flatten", "Reshape", "Squeeze"}


@dataclass
class Fp16Report:
    """What the conversion did, for the build plan and logs."""

    fp16_initializers: int = 0
    fp32_nodes: list[str] = field(default_factory=list)
    casts: int = 0
    clipped_values: int = 0


def _node_label(node: Any, index: int) -> str:
    return node.name or f"{node.op_type}#{index}"


def embedding_head(model: Any) -> set[int]:
    """Indices of the nodes of the embedding head: from each 2-D graph output back to its linear layer.

    The walk passes BN, Flatten/Reshape, Identity and bias-style Add/Mul, and ends at a
    Gemm/MatMul, or at a Conv when a Flatten/Reshape was passed (a 1x1 conv on a 1x1 map
    is the FC of MobileFaceNet). Outputs that do not end that way (feature maps,
    detector heads) have no head: nothing is kept.
    """
    graph = model.graph
    producer = {out: i for i, node in enumerate(graph.node) for out in node.output}
    constants = {init.name for init in graph.initializer}
    for node in graph.node:  # constants, and Identity/Cast aliases of them (the exporter makes these)
        if node.op_type == "Constant" or (node.op_type in ("Identity", "Cast") and node.input[0] in constants):
            constants.update(node.output)
    head: set[int] = set()
    for output in graph.output:
        if len(output.type.tensor_type.shape.dim) != 2:
            continue
        walk, name, flattened = [], output.name, False
        while name in producer:
            index = producer[name]
            node = graph.node[index]
            walk.append(index)
            if node.op_type in ("Gemm", "MatMul") or (node.op_type == "Conv" and flattened):
                head.update(walk)
                break
            data = [n for n in node.input if n and n not in constants]
            if node.op_type not in _HEAD_PASS or len(data) != 1:
                break
            flattened |= node.op_type in _HEAD_FLATTEN
            name = data[0]
    return head


def _fold_constant_identities(graph: Any) -> None:
    """Use initializers directly instead of their Identity aliases, so each weight's precision follows its users."""
    inits = {init.name for init in graph.initializer}
    outputs = {value.name for value in graph.output}
    alias = {}
    for node in graph.node:
        if node.op_type == "Identity" and node.input[0] in inits and node.output[0] not in outputs:
            alias[node.output[0]] = node.input[0]
    if not alias:
        return
    kept = [node for node in graph.node if not (node.op_type == "Identity" and node.output[0] in alias)]
    for node in kept:
        node.input[:] = [alias.get(name, name) for name in node.input]
    del graph.node[:]
    graph.node.extend(kept)


def _elem_types(model: Any) -> dict[str, int]:
    onnx = require("onnx", extra="trt")
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*graph.input, *graph.output, *graph.value_info)}
    types.update({init.name: init.data_type for init in graph.initializer})
    return types


def _to_fp16(array: np.ndarray, report: Fp16Report) -> np.ndarray:
    clipped = np.clip(array, -FP16_MAX, FP16_MAX)
    report.clipped_values += int(np.count_nonzero(clipped != array))
    return clipped.astype(np.float16)


def convert_to_fp16(model: Any, keep_fp32: Iterable[str] = (), fp32_head: bool = True) -> tuple[Any, Fp16Report]:
    """An FP16 copy of ``model`` with FP32 I/O and an FP32 embedding head (plus nodes named in ``keep_fp32``).

    ``fp32_head=False`` converts the head too: TensorRT for RTX has no FP32 GEMM on Turing (SM 7.5).
    """
    onnx = require("onnx", extra="trt")
    from onnx import helper, numpy_helper

    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    _fold_constant_identities(graph)
    types = _elem_types(model)
    report = Fp16Report()
    names = set(keep_fp32)
    island = {i for i, n in enumerate(graph.node) if n.name in names}
    if fp32_head:
        island |= embedding_head(model)
    report.fp32_nodes = [_node_label(graph.node[i], i) for i in sorted(island)]

    # What each consumer needs: (tensor, type) per node input; float tensors only.
    wants: dict[str, set[int]] = {}
    for i, node in enumerate(graph.node):
        for pos, name in enumerate(node.input):
            if name and types.get(name) == FLOAT:
                fp32 = i in island or pos in FP32_ONLY_INPUTS.get(node.op_type, ())
                wants.setdefault(name, set()).add(FLOAT if fp32 else FLOAT16)
    for output in graph.output:
        wants.setdefault(output.name, set()).add(FLOAT)

    # What each producer makes. Constants follow their consumers; FP16 copies serve mixed use.
    produced = {value.name: FLOAT for value in graph.input}
    renamed: dict[str, str] = {}  # fp32 constant -> its fp16 copy
    for init in list(graph.initializer):
        if init.data_type != FLOAT or init.name not in wants:
            continue
        need = wants[init.name]
        if need == {FLOAT}:
            produced[init.name] = FLOAT
            continue
        half = numpy_helper.from_array(_to_fp16(numpy_helper.to_array(init), report), init.name)
        report.fp16_initializers += 1
        if FLOAT in need:
            half.name = init.name + "__fp16"
            graph.initializer.append(half)
            renamed[init.name] = half.name
            produced[init.name], produced[half.name] = FLOAT, FLOAT16
        else:
            init.CopyFrom(half)
            produced[init.name] = FLOAT16
    for i, node in enumerate(graph.node):
        fp16_node = i not in island
        if node.op_type == "Constant":
            value = next((a for a in node.attribute if a.name == "value"), None)
            out = node.output[0]
            if value is not None and value.t.data_type == FLOAT and wants.get(out, {FLOAT}) != {FLOAT} and fp16_node:
                value.t.CopyFrom(numpy_helper.from_array(_to_fp16(numpy_helper.to_array(value.t), report)))
                produced[out] = FLOAT16
            else:
                produced[out] = types.get(out, 0)
            continue
        if fp16_node and node.op_type == "Cast":
            for attr in node.attribute:
                if attr.name == "to" and attr.i == FLOAT:
                    attr.i = FLOAT16
        if fp16_node and node.op_type == "ConstantOfShape":
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type == FLOAT:
                    attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float16)))
        for out in node.output:
            if types.get(out) == FLOAT:
                produced[out] = FLOAT16 if fp16_node else FLOAT

    # Casts where producer and consumer disagree, each made once and placed before its first use.
    casts: dict[tuple[str, int], str] = {}
    nodes = []

    def cast(name: str, to: int) -> str:
        key = (name, to)
        if key not in casts:
            casts[key] = f"{name}__to_{'fp16' if to == FLOAT16 else 'fp32'}"
            nodes.append(helper.make_node("Cast", [name], [casts[key]], to=to, name=casts[key]))
        return casts[key]

    for i, node in enumerate(graph.node):
        for pos, name in enumerate(node.input):
            if not name or types.get(name) != FLOAT:
                continue
            need = FLOAT if (i in island or pos in FP32_ONLY_INPUTS.get(node.op_type, ())) else FLOAT16
            if need == FLOAT16 and name in renamed:
                node.input[pos] = renamed[name]
            elif produced.get(name, FLOAT) != need:
                node.input[pos] = cast(name, need)
        nodes.append(node)
    for output in graph.output:
        if produced.get(output.name) == FLOAT16:
            inner = output.name + "__fp16"
            for node in nodes:
                node.output[:] = [inner if n == output.name else n for n in node.output]
                node.input[:] = [inner if n == output.name else n for n in node.input]
            nodes.append(helper.make_node("Cast", [inner], [output.name], to=FLOAT, name=output.name + "__to_fp32"))
            casts[(inner, FLOAT)] = output.name
    report.casts = len(casts)
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]
    onnx.checker.check_model(model)
    onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    if report.clipped_values:
        log.warning("FP16 conversion clipped %d weights to +-%g", report.clipped_values, FP16_MAX)
    return model, report


def convert_file(source: str, destination: str, keep_fp32: Iterable[str] = (), fp32_head: bool = True) -> Fp16Report:
    """Convert the ONNX file ``source`` and save it at ``destination``."""
    onnx = require("onnx", extra="trt")
    model, report = convert_to_fp16(onnx.load(str(source)), keep_fp32, fp32_head)
    from ..safe_io import atomic_path

    with atomic_path(destination, "FP16 ONNX") as temp:
        onnx.save(model, str(temp))
    log.info("FP16 %s: %d FP16 weights, FP32 nodes %s, %d casts", destination, report.fp16_initializers,
             report.fp32_nodes or "none", report.casts)
    return report
