"""The whole TensorRT path on the stand-in: build, run (CLI and Recognizer), check, compare, per frame size.

``btnet-edge build PKG --target desktop-fp16`` builds real engines with TensorRT for RTX
(the stand-in's builder); every frame then goes through the detector engine (passes fitted
to its profile), the device-resident runner (batches split by the profiles) and the
stand-in runtime, and must give the faces and embeddings ONNX Runtime gives.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from tests.conftest import FIXTURES, needs_fixtures

pytest.importorskip("onnx", reason="planning writes ONNX graphs: needs onnx")

SCENE = FIXTURES / "images" / "scenes" / "obama-720p.jpg"
CROWD = FIXTURES / "images" / "unlabeled" / "crowd_t2.jpg"
SIZES = [(640, 480), (1280, 720), (1920, 1080), (3840, 2160), (1001, 333), (333, 1001)]


def _cli(*args, timeout=600):
    env = {**os.environ, "BTNET_TRT_STANDIN": "1"}
    return subprocess.run([sys.executable, "-m", "btnet_edge", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)


@needs_fixtures(SCENE, CROWD)
def test_frames_of_every_size_and_the_crowd_match_onnxruntime(trt_standin, standin_engines, tiny_package):
    """Same faces, embeddings of cosine >= 0.98, with the default detection plan (desktop-fp16's detector
    max of 1920x1920 holds its tiles, so both sides see the same pieces)."""
    from btnet_edge.bench.engine_compare import compare_frames
    from btnet_edge.pipeline.config import RecognizerConfig

    scene = cv2.imread(str(SCENE))
    frames = [(f"{w}x{h}", cv2.resize(scene, (w, h), interpolation=cv2.INTER_AREA)) for w, h in SIZES]
    frames.append(("crowd", cv2.imread(str(CROWD))))
    config = RecognizerConfig(package=str(tiny_package))
    rows = compare_frames(config, str(standin_engines), frames)
    for row in rows:
        assert row["faces_tensorrt"] == row["faces_onnxruntime"] == row["matched"], row
        assert row["worst_cosine"] is None or row["worst_cosine"] >= 0.98, row
        assert row["syncs"] >= 1 and row["htod"] >= 1  # the detector engine ran on the stand-in GPU
    by_name = {row["frame"]: row for row in rows}
    assert by_name["crowd"]["faces_onnxruntime"] >= 60  # the 67-face photo: batches beyond a profile's max
    assert by_name["1280x720"]["faces_onnxruntime"] == 1


@needs_fixtures(SCENE)
def test_cli_run_and_check_on_the_engines(standin_engines, tiny_package, tmp_path):
    ort_json, trt_json = tmp_path / "ort.json", tmp_path / "trt.json"
    assert _cli("run", tiny_package, SCENE, "--json", ort_json, "--quiet").returncode == 0
    result = _cli("run", tiny_package, SCENE, "--backend", "tensorrt", "--engines", standin_engines, "--json",
                  trt_json, "--quiet")
    assert result.returncode == 0, result.stderr
    want, got = (json.loads(p.read_text())["images"][0]["faces"] for p in (ort_json, trt_json))
    assert len(got) == len(want) == 1
    assert np.abs(np.array(got[0]["bbox"]) - np.array(want[0]["bbox"])).max() < 0.5
    check = _cli("check", tiny_package, "--engines", standin_engines, "--samples", "4", "--json")
    assert check.returncode == 0, check.stderr
    rows = json.loads(check.stdout)["rows"]
    assert {row["resolution"] for row in rows} == {112, 28, 14, 7}
    assert all(row["min_cosine"] > 0.9999 for row in rows)  # FP32 ONNX both sides: the stand-in has no FP16


@needs_fixtures(SCENE)
def test_cli_compare_prints_and_writes_rows(standin_engines, tiny_package, tmp_path):
    out = tmp_path / "compare.json"
    result = _cli("compare", tiny_package, SCENE, "--engines", standin_engines, "--sizes", "640x480",
                  "--json", out)
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [r["size"] for r in rows] == ["1280x720", "640x480"]
    assert all(r["matched"] == r["faces_onnxruntime"] == 1 and r["worst_cosine"] > 0.99 for r in rows)
    assert "worst cos" in result.stdout


def test_engines_of_another_gpu_are_rebuilt_or_refused(standin_engines, tiny_package, tmp_path):
    """An engine whose key names another GPU: run rebuilds it from its ONNX (the stand-in GPU differs)."""
    import shutil

    folder = tmp_path / "engines"
    shutil.copytree(standin_engines, folder)
    sidecar = folder / "branch_7.engine.key.json"
    key = json.loads(sidecar.read_text())
    key["key"]["gpu_name"] = "NVIDIA H200"
    sidecar.write_text(json.dumps(key))
    result = _cli("check", tiny_package, "--engines", folder, "--samples", "2")
    assert result.returncode == 0, result.stderr
    assert "stale" in result.stderr and "rebuilding" in result.stderr


@needs_fixtures(SCENE)
def test_serve_embedder_and_frontend_on_engines(trt_standin, standin_engines, tiny_package):
    """`serve --backend tensorrt --engines DIR`: the front-end sends uint8 crops, the embedder runs the engines."""
    from btnet_edge.errors import ConfigError
    from btnet_edge.package.loader import load_package
    from btnet_edge.serve.config import ServeConfig
    from btnet_edge.serve.embedder import BatchEmbedder
    from btnet_edge.serve.frontend import FrontEnd
    from btnet_edge.serve.protocol import face_from_wire

    with pytest.raises(ConfigError, match="replica-gpus"):
        ServeConfig(package=str(tiny_package), backend="tensorrt", engines=str(standin_engines))
    package = load_package(tiny_package)
    body = SCENE.read_bytes()
    answers, runs = [], []
    for cfg in (ServeConfig(package=str(tiny_package)),
                ServeConfig(package=str(tiny_package), backend="tensorrt", engines=str(standin_engines),
                            replica_gpus=0.5)):
        core = BatchEmbedder(package, cfg.recognizer_config())
        front = FrontEnd(cfg, lambda groups, core=core: core.embed_many([groups])[0], package)
        try:
            answers.append([face_from_wire(f) for f in front.process(body)["faces"]])
            stats = core.stats()
        finally:
            front.close()
            core.close()
        runs.append(stats["graphs"]["trunk"]["runs"])
    assert cfg.embedder_takes_uint8
    assert runs[0] == runs[1] >= 1  # the engines ran as often as the ONNX graphs
    want, got = answers
    assert len(got) == len(want) == 1
    assert float(np.dot(got[0].normed_embedding, want[0].normed_embedding)) > 0.999


def test_uint8_engines_are_refused_where_float_tensors_are_fed(standin_engines, tiny_package, tmp_path):
    """export-triton and per-graph bench would feed float NCHW tensors to uint8 NHWC engines: a clear refusal."""
    triton = _cli("export-triton", tiny_package, "--out", tmp_path / "repo", "--engines", standin_engines)
    assert triton.returncode != 0 and "input_format" in triton.stderr and "Traceback" not in triton.stderr
    assert not (tmp_path / "repo").exists()
    bench = _cli("bench", tiny_package, "--backend", "tensorrt", "--engines", standin_engines, "--batch", "1",
                 "--quiet")
    assert bench.returncode != 0 and "uint8" in bench.stderr and "Traceback" not in bench.stderr


def test_serve_write_config_carries_the_gpu_backend(standin_engines, tiny_package, tmp_path):
    from btnet_edge.cli.main import main

    target = tmp_path / "serve.yaml"
    assert main(["serve", str(tiny_package), "--backend", "tensorrt", "--engines", str(standin_engines),
                 "--replica-gpus", "0.5", "--write-config", str(target)]) == 0
    args = json.loads(target.read_text())["applications"][0]["args"]
    assert (args["backend"], args["engines"], args["replica_gpus"]) == ("tensorrt", str(standin_engines), 0.5)
    assert main(["serve", str(tiny_package), "--device", "cuda", "--write-config", str(target)]) == 1  # no GPUs
