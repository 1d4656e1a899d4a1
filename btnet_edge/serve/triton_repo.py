"""A Triton model repository from a model package: branches, trunk and an ensemble, for stock Triton servers.

Layout (``REPO/<model>/config.pbtxt`` and ``REPO/<model>/1/model.onnx|model.plan``):

- ``btnet_branch_<r>``: one per branch, ``max_batch_size`` > 0 with dynamic batching, so
  Triton merges the r px faces of many streams into one run (the BTNet win at scale).
  ``tensorrt_plan`` when ``--engines`` holds the branch's engine, else ``onnxruntime_onnx``.
- ``btnet_trunk``: the merged trunk, ``max_batch_size: 0`` because each entry point has
  its own batch (possibly 0): Triton's batcher needs one batch size for all inputs.
- ``btnet_embed``: an ensemble (``max_batch_size: 0``) running the branches then the trunk.

Files are written under a temporary name and renamed: a failed export leaves no half repository.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..package.loader import load_package
from ..safe_io import staging_folder
from .pbtxt import Enum, to_pbtxt

log = logging.getLogger(__name__)

ENSEMBLE = "btnet_embed"
TRUNK = "btnet_trunk"
VERSION = "1"
DEFAULT_MAX_BATCH = 64
DEFAULT_QUEUE_DELAY_US = 2000
FP32 = Enum("TYPE_FP32")
CLIENT_EXAMPLE = Path(__file__).parent / "templates" / "triton_client.py"


def branch_model(r: int) -> str:
    return f"btnet_branch_{r}"


def _instance(kind: str) -> list[dict]:
    return [{"count": 1, "kind": Enum("KIND_GPU" if kind == "gpu" else "KIND_CPU")}]


def _tensor(name: str, dims: list[int]) -> dict:
    return {"name": name, "data_type": FP32, "dims": dims}


def _engine_files(engines: Path | None) -> dict[str, Any]:
    """Engine entries of a ``btnet-edge build`` folder by name, with their file present."""
    if engines is None:
        return {}
    from ..trt_runtime.engine_folder import read_engine_folder

    folder = read_engine_folder(engines)
    if folder.uint8:  # Triton's ensemble feeds the package's float NCHW tensors to each branch
        raise ConfigError(f"the engines in {engines} take aligned uint8 BGR crops (N, H, W, 3) (input_format = "
                          "\"uint8_bgr\"), but the Triton ensemble feeds float32 (N, 3, H, W) tensors: rebuild the "
                          "engines with a target whose input_format is \"float\" (copy desktop-fp16.toml and change "
                          "it), or export without --engines (ONNX Runtime models)")
    return {e.name: e for e in folder.engines if folder.engine_path(e).is_file()}


def repository_configs(package_dir: str | Path, engines: str | Path | None = None, max_batch: int = DEFAULT_MAX_BATCH,
                       queue_delay_us: int = DEFAULT_QUEUE_DELAY_US, kind: str = "gpu") -> dict[str, dict]:
    """``{model: {"config": dict, "source": Path, "file": "model.onnx"|"model.plan"}}`` (no file written)."""
    if kind not in ("gpu", "cpu"):
        raise ConfigError(f"instance kind should be gpu or cpu, found {kind!r}")
    if max_batch < 1:
        raise ConfigError(f"max batch should be at least 1, found {max_batch}")
    package = load_package(package_dir)
    m = package.manifest
    built = _engine_files(Path(engines) if engines else None)
    models: dict[str, dict] = {}
    for b in m.branches:
        engine = built.get(f"branch_{b.resolution}")
        batch = max_batch
        if engine is not None:  # an engine's profile caps the batch it accepts
            batch = min(max_batch, max(p[b.input.name].max[0] for p in engine.profiles))
        config = {"name": branch_model(b.resolution),
                  "platform": "tensorrt_plan" if engine else "onnxruntime_onnx",
                  "max_batch_size": batch,
                  "input": [_tensor(b.input.name, list(b.input.shape))],
                  "output": [_tensor(b.output.name, list(b.output.shape))],
                  "dynamic_batching": {"max_queue_delay_microseconds": queue_delay_us},
                  "instance_group": _instance(kind)}
        models[config["name"]] = {"config": config, "file": "model.plan" if engine else "model.onnx",
                                  "source": Path(engines) / engine.engine if engine else package.path(b.file)}
    trunk = {"name": TRUNK, "platform": "onnxruntime_onnx", "max_batch_size": 0,
             "input": [_tensor(t.name, [-1, *t.shape]) for t in m.trunk.inputs],
             "output": [_tensor(m.trunk.output.name, [-1, *m.trunk.output.shape])],
             "instance_group": _instance(kind)}
    models[TRUNK] = {"config": trunk, "file": "model.onnx", "source": package.trunk_path}
    steps = [{"model_name": branch_model(b.resolution), "model_version": -1,
              "input_map": [{"key": b.input.name, "value": b.input.name}],
              "output_map": [{"key": b.output.name, "value": b.output.name}]} for b in m.branches]
    steps.append({"model_name": TRUNK, "model_version": -1,
                  "input_map": [{"key": t.name, "value": t.name} for t in m.trunk.inputs],
                  "output_map": [{"key": m.trunk.output.name, "value": m.trunk.output.name}]})
    ensemble = {"name": ENSEMBLE, "platform": "ensemble", "max_batch_size": 0,
                "input": [_tensor(m.trunk.inputs[0].name, [-1, *m.trunk.inputs[0].shape])]
                + [_tensor(b.input.name, [-1, *b.input.shape]) for b in m.branches],
                "output": [_tensor(m.trunk.output.name, [-1, *m.trunk.output.shape])],
                "ensemble_scheduling": {"step": steps}}
    models[ENSEMBLE] = {"config": ensemble, "file": None, "source": None}
    return models


def export_triton(package_dir: str | Path, out: str | Path, engines: str | Path | None = None,
                  max_batch: int = DEFAULT_MAX_BATCH, queue_delay_us: int = DEFAULT_QUEUE_DELAY_US,
                  kind: str = "gpu", force: bool = False) -> dict[str, Any]:
    """Write the repository to ``out`` (refusing a non-empty folder unless ``force`` and it is ours)."""
    out = Path(out)
    models = repository_configs(package_dir, engines, max_batch, queue_delay_us, kind)
    if out.exists() and any(out.iterdir()):
        if not force:
            raise ConfigError(f"{out} exists and is not empty; pass --force to replace a repository written by "
                              "btnet-edge export-triton, or choose another folder")
        if not (out / "btnet_repository.json").is_file():
            raise ConfigError(f"{out} was not written by btnet-edge export-triton (no btnet_repository.json); "
                              "refusing to replace it: choose another folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_folder(out)
    try:
        for name, model in models.items():
            folder = staging / name / VERSION
            folder.mkdir(parents=True)
            (staging / name / "config.pbtxt").write_text(to_pbtxt(model["config"]) + "\n")
            if model["source"] is not None:
                shutil.copyfile(model["source"], folder / model["file"])
        shutil.copyfile(CLIENT_EXAMPLE, staging / "client_example.py")
        report = {"package": str(Path(package_dir).resolve()), "ensemble": ENSEMBLE, "instance_kind": kind,
                  "models": {n: {"platform": m["config"]["platform"], "max_batch_size": m["config"]["max_batch_size"],
                                 "file": m["file"]} for n, m in models.items()}}
        (staging / "btnet_repository.json").write_text(json.dumps(report, indent=2) + "\n")
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            os.replace(out, old)
            os.replace(staging, out)
            shutil.rmtree(old)
        else:
            os.replace(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    log.info("wrote the Triton repository %s (%d models)", out, len(models))
    return report
