"""Pick the detector's best anchors inside the engine, so the frame's largest download shrinks.

RetinaFace outputs 16 floats for every anchor: 12 600 anchors (0.8 MB) at 640x480, about
85 000 (5.4 MB) at 1920x1080, all copied to the host to keep the few above the score
threshold. Appended here: TopK over the face score and a Gather of the K best anchors'
loc, conf and landmarks, plus their anchor indices (int32), so the host downloads K rows
and decodes them against the same priors (``pipeline/detectors/retinaface.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._deps import require
from ..errors import ConfigError

ANCHOR_INDEX = "anchor_index"  # the extra output: which anchors the K rows are
OUTPUTS = ("loc", "conf", "landmarks")
_ANCHORS_PER_CELL = 2
_STRIDES = (8, 16, 32)


def anchor_count(height: int, width: int) -> int:
    """Anchors RetinaFace produces for a padded height x width input."""
    return sum(_ANCHORS_PER_CELL * -(-height // s) * -(-width // s) for s in _STRIDES)


def check_top_k(top_k: int, min_hw: tuple[int, int]) -> None:
    """K must not exceed the anchors of the smallest input (TopK needs K <= its axis) nor TensorRT's 3840."""
    fewest = anchor_count(*min_hw)
    if not 0 < top_k <= min(fewest, 3840):
        raise ConfigError(f"target field detector.top_k should be 1..{min(fewest, 3840)} (anchors of min_hw "
                          f"{list(min_hw)}: {fewest}; TensorRT's TopK: 3840), found {top_k}")


def top_anchors(model: Any, top_k: int) -> Any:
    """A copy of the (batch 1) RetinaFace ``model`` whose outputs are the ``top_k`` best anchors and their indices."""
    onnx = require("onnx", extra="trt")
    from onnx import helper, numpy_helper

    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    if [o.name for o in graph.output] != list(OUTPUTS):
        raise ConfigError(f"detector outputs {[o.name for o in graph.output]} are not RetinaFace's {list(OUTPUTS)}")
    inner = {name: f"{name}__all" for name in OUTPUTS}
    for node in graph.node:
        node.output[:] = [inner.get(n, n) for n in node.output]
        node.input[:] = [inner.get(n, n) for n in node.input]
    graph.initializer.extend([numpy_helper.from_array(np.array(1, np.int64), "top__face_class"),
                              numpy_helper.from_array(np.array([top_k], np.int64), "top__k")])
    nodes = [helper.make_node("Gather", [inner["conf"], "top__face_class"], ["top__score"], axis=2),
             helper.make_node("TopK", ["top__score", "top__k"], ["top__values", "top__index"], axis=1),
             helper.make_node("Squeeze", ["top__index"], ["top__rows"], axes=[0])]
    for name in OUTPUTS:
        nodes += [helper.make_node("Squeeze", [inner[name]], [f"top__{name}_rows"], axes=[0]),
                  helper.make_node("Gather", [f"top__{name}_rows", "top__rows"], [f"top__{name}_k"], axis=0),
                  helper.make_node("Unsqueeze", [f"top__{name}_k"], [name], axes=[0])]
    nodes.append(helper.make_node("Cast", ["top__index"], [ANCHOR_INDEX], to=onnx.TensorProto.INT32))
    graph.node.extend(nodes)
    widths = {"loc": 4, "conf": 2, "landmarks": 10}
    del graph.output[:]
    graph.output.extend([helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [1, top_k, widths[n]])
                         for n in OUTPUTS])
    graph.output.append(helper.make_tensor_value_info(ANCHOR_INDEX, onnx.TensorProto.INT32, [1, top_k]))
    del graph.value_info[:]
    onnx.checker.check_model(model)
    return model
