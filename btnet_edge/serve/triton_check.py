"""Checks a Triton model repository as far as a machine without Triton allows, and runs its ensemble on CPU.

``check_repository`` parses every config.pbtxt and applies the rules Triton applies
when it loads models: platform and files present, batching settings coherent, tensor
names, types and shapes equal to the ONNX graphs, and the ensemble's steps wired
(every input produced before use, every composing input mapped, shapes agreeing).
``run_ensemble`` executes the ensemble's steps with ONNX Runtime, as Triton would
schedule them, so its output can be compared with the package's own runner.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from .pbtxt import parse_pbtxt

PLATFORM_FILES = {"onnxruntime_onnx": "model.onnx", "tensorrt_plan": "model.plan"}
DATA_TYPES = {"TYPE_FP32": "float32", "TYPE_FP16": "float16", "TYPE_INT64": "int64", "TYPE_INT32": "int32",
              "TYPE_UINT8": "uint8", "TYPE_BOOL": "bool"}


def _one(message: dict, key: str, default: Any = None) -> Any:
    values = message.get(key, [])
    return values[0] if values else default


def _tensors(config: dict, key: str) -> dict[str, tuple[str, list[int]]]:
    return {_one(t, "name"): (_one(t, "data_type"), list(t.get("dims", []))) for t in config.get(key, [])}


def read_configs(repo: str | Path) -> dict[str, dict]:
    repo = Path(repo)
    configs = {p.parent.name: parse_pbtxt(p.read_text()) for p in sorted(repo.glob("*/config.pbtxt"))}
    if not configs:
        raise ConfigError(f"{repo} holds no */config.pbtxt: not a Triton model repository")
    return configs


def _full_shape(config: dict, dims: list[int]) -> list[int]:
    """The shape a request tensor has: batching models add the batch axis in front."""
    return ([-1] if _one(config, "max_batch_size", 0) > 0 else []) + list(dims)


def _compatible(a: list[int], b: list[int]) -> bool:
    return len(a) == len(b) and all(x == y or x == -1 or y == -1 for x, y in zip(a, b))


def check_repository(repo: str | Path) -> list[str]:
    """Problems found (empty when the repository is sound as far as it can be checked here)."""
    repo = Path(repo)
    configs = read_configs(repo)
    problems: list[str] = []
    for name, config in configs.items():
        where = f"{name}/config.pbtxt"
        if _one(config, "name") != name:
            problems.append(f"{where}: name {_one(config, 'name')!r} differs from its folder")
        batch = _one(config, "max_batch_size", 0)
        if not isinstance(batch, int) or batch < 0:
            problems.append(f"{where}: max_batch_size {batch!r} is not a non-negative integer")
        if config.get("dynamic_batching") and batch == 0:
            problems.append(f"{where}: dynamic_batching needs max_batch_size > 0")
        for key in ("input", "output"):
            for tensor, (dtype, dims) in _tensors(config, key).items():
                if dtype not in DATA_TYPES:
                    problems.append(f"{where}: {key} {tensor} has data_type {dtype!r}")
                if not dims or not all(isinstance(d, int) and (d > 0 or d == -1) for d in dims):
                    problems.append(f"{where}: {key} {tensor} has dims {dims}")
        platform = _one(config, "platform")
        if platform == "ensemble":
            problems += _check_ensemble(name, config, configs)
        elif platform in PLATFORM_FILES:
            problems += _check_model_file(repo, name, config, platform)
        else:
            problems.append(f"{where}: platform {platform!r} is not one of {sorted(PLATFORM_FILES)} or ensemble")
    return problems


def _check_model_file(repo: Path, name: str, config: dict, platform: str) -> list[str]:
    path = repo / name / "1" / PLATFORM_FILES[platform]
    if not path.is_file():
        return [f"{name}: {path.relative_to(repo)} is missing"]
    if platform != "onnxruntime_onnx":
        return []  # a TensorRT plan is read only by TensorRT on its GPU
    from ..backends.ort import OrtBackend

    problems = []
    with OrtBackend(path) as graph:
        for key, specs in (("input", graph.inputs), ("output", graph.outputs)):
            declared = _tensors(config, key)
            actual = {s.name: s for s in specs}
            if set(declared) != set(actual):
                problems.append(f"{name}: config {key}s {sorted(declared)} but the graph has {sorted(actual)}")
                continue
            for tensor, (dtype, dims) in declared.items():
                spec = actual[tensor]
                shape = [d if isinstance(d, int) and d > 0 else -1 for d in spec.shape]
                if DATA_TYPES.get(dtype) != spec.dtype or not _compatible(_full_shape(config, dims), shape):
                    problems.append(f"{name}: {key} {tensor} is {dtype} {_full_shape(config, dims)} in the config, "
                                    f"{spec.dtype} {shape} in the graph")
                elif _one(config, "max_batch_size", 0) > 0 and shape[0] != -1:
                    problems.append(f"{name}: {key} {tensor} has a fixed batch {shape[0]} but the config batches it")
    return problems


def _check_ensemble(name: str, config: dict, configs: Mapping[str, dict]) -> list[str]:
    problems = []
    inputs = _tensors(config, "input")
    known = {t: _full_shape(config, d) for t, (_, d) in inputs.items()}
    used = set()
    scheduling = _one(config, "ensemble_scheduling", {})
    for step in scheduling.get("step", []):
        model = _one(step, "model_name")
        if model not in configs:
            problems.append(f"{name}: step model {model!r} is not in the repository")
            continue
        target = configs[model]
        if _one(target, "max_batch_size", 0) < _one(config, "max_batch_size", 0):
            problems.append(f"{name}: max_batch_size is over that of its step {model}")
        model_inputs = _tensors(target, "input")
        mapped = {_one(e, "key"): _one(e, "value") for e in step.get("input_map", [])}
        if set(mapped) != set(model_inputs):
            problems.append(f"{name}: step {model} maps inputs {sorted(mapped)}, the model has {sorted(model_inputs)}")
        for key, value in mapped.items():
            if value not in known:
                problems.append(f"{name}: step {model} reads {value!r} before any step produces it")
            elif key in model_inputs and not _compatible(known[value], _full_shape(target, model_inputs[key][1])):
                problems.append(f"{name}: {value} has shape {known[value]}, step {model} input {key} takes "
                                f"{_full_shape(target, model_inputs[key][1])}")
            used.add(value)
        outputs = _tensors(target, "output")
        for entry in step.get("output_map", []):
            key, value = _one(entry, "key"), _one(entry, "value")
            if key not in outputs:
                problems.append(f"{name}: step {model} has no output {key!r}")
                continue
            known[value] = _full_shape(target, outputs[key][1])
    for tensor in _tensors(config, "output"):
        if tensor not in known:
            problems.append(f"{name}: output {tensor} is produced by no step")
    unused = sorted(set(inputs) - used)
    if unused:
        problems.append(f"{name}: inputs {unused} are read by no step")
    return problems


def run_ensemble(repo: str | Path, feeds: Mapping[str, np.ndarray],
                 ensemble: str = "btnet_embed") -> dict[str, np.ndarray]:
    """The ensemble's outputs for ``feeds``, each step run by ONNX Runtime in the configured order."""
    from ..backends.ort import OrtBackend

    repo = Path(repo)
    configs = read_configs(repo)
    config = configs[ensemble]
    tensors = dict(feeds)
    for step in _one(config, "ensemble_scheduling", {}).get("step", []):
        model = _one(step, "model_name")
        if _one(configs[model], "platform") != "onnxruntime_onnx":
            raise ConfigError(f"{model} is a {_one(configs[model], 'platform')} model: "
                              "it runs only on a Triton GPU server")
        mapped = {_one(e, "key"): tensors[_one(e, "value")] for e in step.get("input_map", [])}
        with OrtBackend(repo / model / "1" / "model.onnx") as graph:
            produced = graph.infer(mapped)
        for entry in step.get("output_map", []):
            tensors[_one(entry, "value")] = produced[_one(entry, "key")]
    return {t: tensors[t] for t in _tensors(config, "output")}
