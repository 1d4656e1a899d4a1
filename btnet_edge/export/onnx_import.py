"""ONNX recogniser -> BTNet: recover the trunk's weights from the graph, keep its preprocessing.

``btnet-edge export --trunk model.onnx`` lands here. The architecture is read off the
graph's structure (IResNet: PReLU and four stages, blocks per stage give the depth;
MobileFaceNet: ReLU6 inverted residuals), or checked against ``--arch``. The
preprocessing comes from the graph when it normalizes its own input, else from the
flags, else from the architecture's declared convention, and the manifest says which.
Parity is measured against the original ONNX before anything is written.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._deps import require
from ..errors import CheckpointError, ConfigError
from ..package.loader import sha256_of
from .onnx_graph import InputNormalization, Layer, OnnxGraph
from .onnx_match import layer_template, match_layers

log = logging.getLogger(__name__)

SOURCE_PARITY_MIN_COSINE = 0.9999
PARITY_FACES = 8


def is_onnx_file(path: str | Path | None) -> bool:
    return path is not None and Path(path).suffix.lower() == ".onnx"


def _blocks_per_stage(layers: list[Layer]) -> list[int]:
    """IResNet: a stage starts with the block whose shortcut holds a (downsampling) conv."""
    stages: list[int] = []
    inside = None
    for layer in layers:
        if layer.kind == "block":
            inside = "main"
        elif layer.kind == "shortcut":
            inside = "shortcut"
            has_conv = False
        elif layer.kind == "conv" and inside == "shortcut":
            has_conv = True
        elif layer.kind == "add" and inside == "shortcut":
            if has_conv or not stages:
                stages.append(0)
            stages[-1] += 1
            inside = None
    return stages


def detect_architecture(graph: OnnxGraph, layers: list[Layer]) -> str:
    """Our architecture whose structure the graph has; the error names what was found."""
    from ..models.registry import arch_config, list_models

    kinds = {layer.kind for layer in layers}
    unsupported = sorted(k for k in kinds if k.startswith("unsupported"))
    if unsupported:
        raise CheckpointError(f"{graph.path.name} holds ops that no supported recogniser has: "
                              f"{', '.join(u.split()[1] for u in unsupported)}")
    depths = _blocks_per_stage(layers)
    if "prelu" in kinds:
        for name in list_models():
            config = arch_config(name)
            if config.family == "iresnet" and list(config.build_kwargs.get("layers", ())) == depths:
                return name
        raise CheckpointError(f"{graph.path.name} looks like an IResNet (PReLU) with blocks per stage {depths}; "
                              "supported: [2,2,2,2] r18, [3,4,6,3] r34, [3,4,14,3] r50, [3,13,30,3] r100")
    if "relu6" in kinds:
        return "mobilefacenet"
    activations = sorted(kinds & {"relu", "relu6", "prelu"}) or ["none"]
    raise CheckpointError(f"{graph.path.name} is neither an IResNet (PReLU, 4 stages) nor a MobileFaceNet (ReLU6 "
                          f"inverted residuals): activations {activations}, {sum(depths)} residual blocks")


def resolve_preprocess(norm: InputNormalization, config, color_order: str | None,
                       mean: Sequence[float] | None, std: Sequence[float] | None, source: str) -> dict[str, Any]:
    """Pixel-unit mean/std and colour order of the package, and where each came from."""
    if norm.present:
        if mean is not None or std is not None:
            raise ConfigError(f"{source} normalizes its own input ({', '.join(norm.ops)} by constants), so its "
                              "mean and std are read from the graph; drop --mean/--std")
        scale = np.broadcast_to(norm.scale, (3,)).astype(float)
        if (scale <= 0).any():
            raise CheckpointError(f"{source}: the input normalization scales by {scale.tolist()}; expected positive")
        mean_px = tuple(float(v) for v in -np.broadcast_to(norm.offset, (3,)) / scale)
        std_px = tuple(float(v) for v in 1.0 / scale)
        origin = f"graph ({', '.join(norm.ops)} at the input; pixel values 0..255 in, as insightface feeds them)"
    elif mean is not None and std is not None:
        mean_px, std_px, origin = tuple(mean), tuple(std), "--mean/--std"
    elif mean is not None or std is not None:
        raise ConfigError("pass --mean and --std together (pixel units)")
    else:
        mean_px, std_px = config.mean, config.std
        origin = f"declared by architecture {config.name} ({config.description}); override with --mean/--std"
        log.warning("%s does not normalize its input: using %s mean %s std %s as %s declares; pass --mean/--std if "
                    "the model was trained otherwise", source, config.name, mean_px, std_px, config.name)
    color = color_order or config.color_order
    color_origin = "--color-order" if color_order else f"declared by architecture {config.name}"
    return {"color_order": color, "mean": [round(v, 6) for v in mean_px], "std": [round(v, 6) for v in std_px],
            "mean_std_from": origin, "color_order_from": color_origin}


def _source_inputs(graph: OnnxGraph) -> tuple[str, str]:
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise CheckpointError(f"{graph.path.name} has inputs {graph.inputs} and outputs {graph.outputs}; a "
                              "recogniser has one image input and one embedding output")
    return graph.inputs[0], graph.outputs[0]


def source_parity(path: Path, net, preprocess: dict[str, Any], in_graph: bool, seed: int = 0) -> dict[str, float]:
    """Original ONNX vs our trunk's 112 path on random pixel images, each fed as its preprocessing says."""
    torch = require("torch", extra="export")
    from ..backends.ort import OrtBackend
    from .parity import compare_outputs

    rng = np.random.default_rng(seed)
    pixels = rng.uniform(0, 255, size=(PARITY_FACES, 3, 112, 112)).astype(np.float32)
    mean = np.asarray(preprocess["mean"], np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(preprocess["std"], np.float32).reshape(1, 3, 1, 1)
    ours_in = (pixels - mean) / std
    theirs_in = pixels if in_graph else ours_in
    with OrtBackend(path) as backend:
        name = backend.inputs[0].name
        out_name = backend.outputs[0].name
        theirs = np.concatenate([backend.infer({name: x[None]})[out_name].reshape(1, -1) for x in theirs_in])
    with torch.no_grad():
        ours = net.embed(torch.from_numpy(ours_in)).numpy()
    figures = compare_outputs(theirs, ours)
    figures["faces"] = PARITY_FACES
    return figures


def btnet_from_onnx(path: str | Path, arch: str | None, resolutions: Sequence[int], options, seed: int = 0):
    """BTNet whose trunk holds the ONNX's weights (branches start from them); the import report; preprocessing."""
    torch = require("torch", extra="export")
    from ..models.btnet import BTNet
    from ..models.registry import arch_config, resolve_name

    path = Path(path)
    graph = OnnxGraph(path)
    image, _ = _source_inputs(graph)
    norm, layers = graph.walk(image)
    found = detect_architecture(graph, layers)
    if arch is not None and resolve_name(arch) != found:
        raise CheckpointError(f"{path.name} has the structure of {found}, not {resolve_name(arch)}: "
                              f"pass --arch {found} (or leave --arch out)")
    torch.manual_seed(seed)
    net = BTNet(found, resolutions).eval()
    config = arch_config(found)
    matched = match_layers(graph, layers, layer_template(net.trunk, config.family), found)
    own = net.trunk.state_dict()
    net.trunk.load_state_dict({k: torch.from_numpy(np.array(v)).to(own[k].dtype) for k, v in matched.state.items()},
                              strict=True)
    net.init_branches_from_trunk()
    preprocess = resolve_preprocess(norm, config, options.color_order, options.mean, options.std, path.name)
    parity = source_parity(path, net, preprocess, norm.present, seed)
    if parity["min_cosine"] < SOURCE_PARITY_MIN_COSINE:
        raise CheckpointError(f"{path.name}: the rebuilt {found} differs from the original ONNX (min cosine "
                              f"{parity['min_cosine']:.6f} < {SOURCE_PARITY_MIN_COSINE}); please report this graph")
    report = {
        "trunk": {"file": path.name, "sha256": sha256_of(path), "format": "onnx",
                  "architecture_from": "graph structure",
                  "folded_batchnorm": len(matched.folded), "preprocess": preprocess,
                  "parity_vs_source": parity},
    }
    log.info("%s: %s, %d BatchNorms folded in the graph, parity vs the original: min cosine %.7f", path.name, found,
             len(matched.folded), parity["min_cosine"])
    return net, report, preprocess


def onnx_trunk_btnet(args, resolutions: Sequence[int], branches) -> tuple[Any, str, dict[str, Any]]:
    """``btnet-edge export --trunk model.onnx``: the BTNet, its weights label and the import report."""
    if branches:
        raise ConfigError("--branch files (the authors' PyTorch format) need a PyTorch --trunk; with an ONNX trunk "
                          "the branches start from its weights: train them with `btnet-edge train-branches`")
    net, report, _ = btnet_from_onnx(args.trunk, args.arch, resolutions, args, seed=args.seed)
    return net, "pretrained", report
