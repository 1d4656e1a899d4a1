"""Put the image normalisation inside the graph: engines that take uint8 NHWC BGR crops as the camera gives them.

On a GPU the only host-to-device copy per frame is then the aligned uint8 face
crops (a quarter of the float32 bytes, no host pass over the pixels): cast,
colour flip, (x - mean) / std and NHWC -> NCHW run as four cheap layers in the
engine. The graph computes exactly what :func:`btnet_edge.pipeline.preprocess.preprocess`
computes on the host, in the same order, so the two agree to float rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._deps import require
from ..errors import PackageError

UINT8 = 2  # onnx.TensorProto.UINT8
U8_SUFFIX = ".u8.onnx"


def uint8_input(model: Any, input_name: str, mean: Sequence[float], std: Sequence[float], color_order: str) -> Any:
    """A copy of ``model`` whose float NCHW input ``input_name`` becomes uint8 NHWC BGR of the same name."""
    onnx = require("onnx", extra="trt")
    from onnx import helper, numpy_helper

    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    value = next((v for v in graph.input if v.name == input_name), None)
    if value is None:
        raise PackageError(f"graph has no input {input_name!r} to take uint8 crops; it has "
                           f"{[v.name for v in graph.input]}")
    dims = value.type.tensor_type.shape.dim
    if len(dims) != 4 or dims[1].dim_value != 3:
        raise PackageError(f"input {input_name} should be (N, 3, H, W) float to take uint8 crops")
    batch, height, width = dims[0], dims[2], dims[3]
    inner = f"{input_name}__normalized"
    for node in graph.node:
        node.input[:] = [inner if n == input_name else n for n in node.input]
    prefix = f"{input_name}__"
    nodes = [helper.make_node("Cast", [input_name], [prefix + "float"], to=onnx.TensorProto.FLOAT,
                              name=prefix + "cast")]
    pixels = prefix + "float"
    if color_order == "RGB":  # crops are BGR (OpenCV); the network wants RGB
        graph.initializer.append(numpy_helper.from_array(np.array([2, 1, 0], np.int64), prefix + "bgr_to_rgb"))
        nodes.append(helper.make_node("Gather", [pixels, prefix + "bgr_to_rgb"], [prefix + "rgb"], axis=3,
                                      name=prefix + "flip"))
        pixels = prefix + "rgb"
    graph.initializer.append(numpy_helper.from_array(np.asarray(mean, np.float32), prefix + "mean"))
    graph.initializer.append(numpy_helper.from_array(np.asarray(std, np.float32), prefix + "std"))
    nodes += [helper.make_node("Sub", [pixels, prefix + "mean"], [prefix + "centered"], name=prefix + "sub"),
              helper.make_node("Div", [prefix + "centered", prefix + "std"], [prefix + "scaled"], name=prefix + "div"),
              helper.make_node("Transpose", [prefix + "scaled"], [inner], perm=[0, 3, 1, 2], name=prefix + "nchw")]
    new_input = helper.make_tensor_value_info(input_name, UINT8, [None, None, None, 3])
    new_dims = new_input.type.tensor_type.shape.dim
    for target, source in zip((new_dims[0], new_dims[1], new_dims[2]), (batch, height, width)):
        target.CopyFrom(source)
    value.CopyFrom(new_input)
    old_nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + old_nodes)
    del graph.value_info[:]
    onnx.checker.check_model(model)
    return model


def write_uint8_input(source: Path, destination: Path, input_name: str, mean: Sequence[float], std: Sequence[float],
                      color_order: str) -> Path:
    """Save the uint8-input copy of the ONNX file ``source`` (skipped when an identical file is there)."""
    onnx = require("onnx", extra="trt")
    return save_if_changed(uint8_input(onnx.load(str(source)), input_name, mean, std, color_order), destination)


def save_if_changed(model: Any, destination: Path) -> Path:
    """Write ``model`` to ``destination`` unless identical bytes are there (temporary name, then rename)."""
    data = model.SerializeToString()
    if not destination.is_file() or destination.read_bytes() != data:
        from ..safe_io import atomic_write_bytes

        atomic_write_bytes(destination, data, "ONNX")
    return destination
