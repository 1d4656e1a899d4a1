"""FP16 ONNX conversion (TensorRT 11's strongly typed path) on the real MobileFaceNet package.

Converted graphs must hold FP16 weights, keep float32 I/O and the embedding head
in FP32, and give embeddings within cosine 0.999 of FP32: on ONNX Runtime CPU,
and on the ONNX reference evaluator, which really computes in float16.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import FIXTURES

onnx = pytest.importorskip("onnx", reason="the FP16 conversion rewrites ONNX graphs: needs onnx (btnet-edge[trt])")

from btnet_edge.backends.ort import OrtBackend  # noqa: E402
from btnet_edge.trt_build.check import (  # noqa: E402
    compare,
    cosine_rows,
    face_inputs,
    ort_reference,
    plan_embedder,
    random_inputs,
)
from btnet_edge.trt_build.fp16 import FLOAT, FLOAT16, convert_to_fp16  # noqa: E402

FACES = FIXTURES / "images" / "people"
GRAPHS = ("branch_28.onnx", "branch_7.onnx", "trunk.onnx", "fused_14.onnx")


@pytest.fixture(scope="module")
def converted(mfn_package) -> dict[str, tuple]:
    """name -> (fp32 model, fp16 model, report)."""
    out = {}
    for name in GRAPHS:
        model = onnx.load(str(Path(mfn_package) / name))
        half, report = convert_to_fp16(model)
        out[name] = (model, half, report)
    return out


@pytest.fixture(scope="module")
def inputs(mfn_package):
    """Real faces (centre crops of the fixture portraits) when present, and random inputs, per resolution."""
    from btnet_edge.package.loader import load_package

    manifest = load_package(mfn_package).manifest
    sets = {"random": random_inputs(manifest, 6, seed=5)}
    if FACES.is_dir():
        sets["faces"] = face_inputs(manifest, FACES, limit=8)
    return manifest, sets


@pytest.fixture(scope="module")
def tensors(inputs):
    """The same crops normalised for the graphs (float NCHW), as the host does."""
    from btnet_edge.pipeline.preprocess import preprocess

    manifest, sets = inputs
    return manifest, {source: {r: preprocess(crops, manifest.preprocess, r) for r, crops in per_resolution.items()}
                      for source, per_resolution in sets.items()}


def _initializers(model) -> dict[str, int]:
    return {init.name: init.data_type for init in model.graph.initializer}


@pytest.mark.parametrize("name", GRAPHS)
def test_weights_fp16_io_fp32(converted, name):
    _, half, report = converted[name]
    types = _initializers(half)
    head = set(report.fp32_nodes)
    conv_weights = [(node.name, node.input[1]) for node in half.graph.node if node.op_type == "Conv"]
    assert conv_weights
    for node_name, weight in conv_weights:
        assert types[weight] == (FLOAT if node_name in head else FLOAT16), (node_name, weight)
    assert all(v.type.tensor_type.elem_type == FLOAT for v in (*half.graph.input, *half.graph.output))
    assert [v.name for v in half.graph.input] == [v.name for v in converted[name][0].graph.input]
    assert report.clipped_values == 0


@pytest.mark.parametrize("name", ["trunk.onnx", "fused_14.onnx"])
def test_embedding_head_stays_fp32(converted, name):
    _, half, report = converted[name]
    # MobileFaceNet's embedding FC is conv3 (1x1 conv on the 1x1 map, BN folded in) before the Flatten.
    assert report.fp32_nodes == ["/conv3/Conv", "/Flatten"]
    conv3 = next(n for n in half.graph.node if n.name == "/conv3/Conv")
    types = _initializers(half)
    assert types[conv3.input[1]] == FLOAT and types[conv3.input[2]] == FLOAT


def test_iresnet_head_gemm_and_bn1d_stay_fp32(tiny_package):
    half, report = convert_to_fp16(onnx.load(str(Path(tiny_package) / "trunk.onnx")))
    assert report.fp32_nodes == ["/fc/Gemm", "/features/BatchNormalization"]
    types = _initializers(half)
    for node in half.graph.node:
        if node.name in report.fp32_nodes:
            assert all(types.get(i, FLOAT) == FLOAT for i in node.input[1:])


def test_branches_have_no_head(converted):
    for name in ("branch_28.onnx", "branch_7.onnx"):
        assert converted[name][2].fp32_nodes == []


def _run(model, feeds):
    return OrtBackend(model.SerializeToString()).infer(feeds)


def test_cosine_on_onnx_runtime(converted, tensors):
    manifest, sets = tensors
    for source, per_resolution in sets.items():
        for r in (28, 7):
            feeds = {f"image_{r}": per_resolution[r]}
            fp32, fp16 = (_run(converted[f"branch_{r}.onnx"][i], feeds)[f"implant_{r}"] for i in (0, 1))
            assert cosine_rows(fp32, fp16).min() >= 0.999, (source, r)
        trunk_feeds = {t.name: np.zeros((0, *t.shape), np.float32) for t in manifest.trunk.inputs}
        trunk_feeds["image_112"] = per_resolution[112]
        fp32, fp16 = (_run(converted["trunk.onnx"][i], trunk_feeds)["embedding"] for i in (0, 1))
        assert fp16.dtype == np.float32 and cosine_rows(fp32, fp16).mean() >= 0.999, source
        feeds = {"image_14": per_resolution[14]}
        fp32, fp16 = (_run(converted["fused_14.onnx"][i], feeds)["embedding"] for i in (0, 1))
        assert cosine_rows(fp32, fp16).mean() >= 0.999, source


def test_cosine_on_reference_evaluator(converted, tensors):
    """float16 arithmetic end to end (ONNX Runtime CPU may run some FP16 nodes in FP32)."""
    from onnx.reference import ReferenceEvaluator

    _, sets = tensors
    faces = sets.get("faces") or sets["random"]
    fp32_model, fp16_model, _ = converted["fused_14.onnx"]
    feeds = {"image_14": faces[14][:4]}
    reference = _run(fp32_model, feeds)["embedding"]
    half = ReferenceEvaluator(fp16_model).run(None, feeds)[0]
    assert half.dtype == np.float32 and cosine_rows(reference, half).min() >= 0.999


def test_detector_fp16(tmp_path):
    from btnet_edge.trt_build.plan import DETECTOR_INPUT, DETECTOR_OUTPUTS, detector_onnx_bytes

    model = onnx.load_from_string(detector_onnx_bytes())
    assert [i.name for i in model.graph.input] == [DETECTOR_INPUT]
    assert tuple(o.name for o in model.graph.output) == DETECTOR_OUTPUTS
    half, report = convert_to_fp16(model)
    assert report.fp32_nodes == []
    resize = [n for n in half.graph.node if n.op_type == "Resize"]
    consts = {n.output[0]: n for n in half.graph.node if n.op_type == "Constant"}
    for node in resize:  # Resize's roi/scales are float32 by the ONNX spec and must stay so
        for name in node.input[1:3]:
            if name in consts:
                assert consts[name].attribute[0].t.data_type == FLOAT
    image = np.random.default_rng(0).uniform(-120, 130, (1, 3, 96, 128)).astype(np.float32)
    fp32, fp16 = (_run(m, {DETECTOR_INPUT: image}) for m in (model, half))
    assert cosine_rows(fp32["conf"][0], fp16["conf"][0]).mean() >= 0.999


def test_check_logic_on_cpu(mfn_package, inputs, tmp_path):
    """btnet-edge check's comparison, with the strongly typed plan's FP16 ONNX standing in for engines."""
    from btnet_edge.package.loader import load_package
    from btnet_edge.trt_build.features import simulated_features
    from btnet_edge.trt_build.plan import plan_engines
    from btnet_edge.trt_build.targets import load_target

    package = load_package(mfn_package)
    target = load_target("jetson-orin-fp16")
    plan = plan_engines(mfn_package, target, simulated_features("11.4"), tmp_path)
    reference, _ = ort_reference(package)
    from btnet_edge.trt_runtime.engine_folder import engine_folder_from_json

    folder = engine_folder_from_json(json.loads(json.dumps(plan)))
    candidate, _opened = plan_embedder(package.manifest, folder, lambda entry: OrtBackend(entry.onnx))
    _manifest, sets = inputs
    rows = []
    for source, per_resolution in sets.items():
        rows += compare(reference, candidate, per_resolution, source)
    assert {row["resolution"] for row in rows} == {112, 28, 14, 7}
    assert all(row["passed"] and row["min_cosine"] > 0.99 for row in rows), rows
    # A wrong candidate fails: a trunk fed the wrong entry point is far from the reference.
    wrong = compare(reference, lambda r, x: reference(112, np.zeros((len(x), 112, 112, 3), np.uint8)),
                    {28: sets["random"][28]}, "random")
    assert not wrong[0]["passed"]
