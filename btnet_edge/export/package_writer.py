"""PyTorch BTNet -> model package folder (manifest, branch, trunk and fused ONNX graphs).

The folder is written beside the target and moved into place at the end, so a
failed export leaves any existing package untouched.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__
from .._deps import require
from ..errors import ConfigError
from ..package.branch_status import RECORD_KEY, export_records
from ..package.loader import sha256_of
from ..package.manifest import (
    MANIFEST_NAME,
    SCHEMA_VERSION,
    BranchInfo,
    DispatchPolicy,
    FusedInfo,
    Manifest,
    Preprocess,
    TensorInfo,
    TrunkInfo,
    manifest_from_json,
    write_manifest,
)
from ..pipeline.dispatch import dispatch_ranges
from ..safe_io import check_replaceable_folder, replace_folder, staging_folder
from .graphs import EMBEDDING_NAME, BranchGraph, FusedGraph, MergedTrunkGraph, image_input_name, implant_name
from .onnx_io import OPSET, onnx_from_torch
from .package_weights import FOLDED_BATCHNORM, btnet_from_graphs, save_folded_batchnorm, weight_difference
from .parity import measure_parity

log = logging.getLogger(__name__)


@dataclass
class ExportOptions:
    """What ``btnet-edge export`` decides; defaults come from the architecture's config."""

    out: Path
    fused: bool = False  # fused graphs store the trunk weights again: opt in
    parity: bool = True
    seed: int = 0
    name: str | None = None
    color_order: str | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    flip_tta: bool | None = None
    dispatch: DispatchPolicy = field(default_factory=DispatchPolicy)
    force: bool = False
    progress: bool = True
    inputs: tuple[Path, ...] = ()  # weight files read: --out may not hold them
    previous_branches: tuple = ()  # BranchStatus of the source package (train-branches keeps untrained ones' records)


def check_export_options(options: ExportOptions) -> None:
    """Refuse options that would write a useless package or replace what is not ours, before any work."""
    if options.color_order is not None and options.color_order not in ("RGB", "BGR"):
        raise ConfigError(f"--color-order should be RGB or BGR, found {options.color_order!r}")
    for flag, values in (("--mean", options.mean), ("--std", options.std)):
        if values is None:
            continue
        if len(values) != 3 or not all(math.isfinite(v) for v in values):
            raise ConfigError(f"{flag} should be three finite numbers like 127.5,127.5,127.5; found {values}")
    if options.std is not None and any(v <= 0 for v in options.std):
        raise ConfigError(f"--std should be positive (pixel units, e.g. 127.5,127.5,127.5); found {options.std}: "
                          "a zero std divides by zero")
    check_replaceable_folder(options.out, options.force, MANIFEST_NAME, "--out", options.inputs)


def _parity_cases(net, resolution: int | None, seed: int) -> list[dict[str, np.ndarray]]:
    """Random faces for a branch or fused graph; mixed batches, empty inputs included, for the trunk."""
    torch = require("torch", extra="export")
    generator = torch.Generator().manual_seed(seed)

    def faces(n: int, r: int) -> torch.Tensor:
        return torch.randn(n, 3, r, r, generator=generator)

    if resolution is not None:
        return [{image_input_name(resolution): faces(n, resolution).numpy()} for n in (1, 3)]
    cases = []
    # (n at 112, n per branch): all filled, one empty branch, only branches, only the 112 image.
    k = len(net.resolutions)
    for n112, per_branch in ((2, [1 + i % 2 for i in range(k)]), (1, [0] + [2] * (k - 1)), (0, [1] * k), (3, [0] * k)):
        feeds = {image_input_name(112): faces(n112, 112).numpy()}
        with torch.no_grad():
            for r, n in zip(net.resolutions, per_branch):
                feeds[implant_name(r)] = net.run_branch(r, faces(n, r)).numpy()
        cases.append(feeds)
    return cases


def export_package(net, options: ExportOptions, weights: str, import_report: Mapping | None = None) -> Manifest:
    """Write ``net`` (a :class:`~btnet_edge.models.btnet.BTNet`) as a package at ``options.out``."""
    torch = require("torch", extra="export")
    from tqdm.auto import tqdm

    out = Path(options.out)
    check_export_options(options)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_folder(out)
    net.eval()
    config = net.config
    steps = len(net.resolutions) * (2 if options.fused else 1) + 1
    bar = tqdm(total=steps, desc="export", unit="graph", disable=not options.progress)
    try:
        branches, fused, parity = [], [], {}
        for r in net.resolutions:
            shape = net.implant_shape(r)
            file = f"branch_{r}.onnx"
            bar.set_postfix_str(file)
            graph = BranchGraph(net, r)
            onnx_from_torch(graph, [torch.zeros(1, 3, r, r)], [image_input_name(r)], [implant_name(r)], staging / file)
            unit = net.trunk.units[net.implant_index(r)].name
            resume = net.trunk.units[net.implant_index(r) + 1].name
            branches.append(BranchInfo(r, file, TensorInfo(image_input_name(r), (3, r, r)),
                                       TensorInfo(implant_name(r), shape), unit, resume))
            if options.parity:
                parity[file] = measure_parity(staging / file, graph, _parity_cases(net, r, options.seed),
                                              [image_input_name(r)])
            bar.update()
        trunk_graph = MergedTrunkGraph(net)
        names = trunk_graph.entry_names()
        examples = [torch.zeros(1, 3, 112, 112)] + [torch.zeros(1, *b.output.shape) for b in branches]
        bar.set_postfix_str("trunk.onnx")
        onnx_from_torch(trunk_graph, examples, names, [EMBEDDING_NAME], staging / "trunk.onnx")
        trunk_inputs = (TensorInfo(names[0], (3, 112, 112)), *(b.output for b in branches))
        trunk = TrunkInfo("trunk.onnx", trunk_inputs, (112, *net.resolutions),
                          TensorInfo(EMBEDDING_NAME, (config.embedding_size,)))
        if options.parity:
            parity["trunk.onnx"] = measure_parity(staging / "trunk.onnx", trunk_graph,
                                                  _parity_cases(net, None, options.seed), names)
        bar.update()
        if options.fused:
            for r in net.resolutions:
                file = f"fused_{r}.onnx"
                bar.set_postfix_str(file)
                graph = FusedGraph(net, r)
                onnx_from_torch(graph, [torch.zeros(1, 3, r, r)], [image_input_name(r)], [EMBEDDING_NAME],
                                staging / file)
                fused.append(FusedInfo(r, file, TensorInfo(image_input_name(r), (3, r, r)),
                                       TensorInfo(EMBEDDING_NAME, (config.embedding_size,))))
                if options.parity:
                    parity[file] = measure_parity(staging / file, graph, _parity_cases(net, r, options.seed),
                                                  [image_input_name(r)])
                bar.update()
        bar.close()
        folded = save_folded_batchnorm(net, staging, trunk, branches)  # the graphs hold every other weight
        rebuilt = btnet_from_graphs(net.arch, staging, trunk, branches, staging / FOLDED_BATCHNORM)
        counts = net.parameter_counts()
        percent = {r: round(100.0 * n / counts["trunk"], 2) for r, n in counts["branches"].items()}
        files = {p.name: sha256_of(p) for p in sorted(staging.glob("*.onnx"))}
        files[FOLDED_BATCHNORM] = sha256_of(staging / FOLDED_BATCHNORM)
        preprocess = Preprocess(
            options.color_order or config.color_order,
            tuple(options.mean or config.mean),  # type: ignore[arg-type]
            tuple(options.std or config.std),  # type: ignore[arg-type]
            config.flip_tta if options.flip_tta is None else options.flip_tta,
        )
        extra = {
            "created_by": f"btnet-edge {__version__}",
            "torch_version": torch.__version__,
            "seed": options.seed if weights == "random" else None,
            "parameters": counts,
            "branch_param_percent": percent,
            "dispatch_ranges": {rule: dispatch_ranges([112, *net.resolutions], rule)
                                for rule in ("floor", "near", "ceil")},
            "parity": parity,
            "weights_from_graphs": {"folded_batchnorm": folded, "max_abs_diff": weight_difference(net, rebuilt)},
            "import_report": dict(import_report or {}),
            RECORD_KEY: export_records(net.resolutions, weights, import_report, options.previous_branches),
            "alignment": "arcface 5-point template scaled to the branch resolution",
        }
        manifest = Manifest(
            schema_version=SCHEMA_VERSION,
            name=options.name or f"{net.arch}.{'random' if weights == 'random' else 'custom'}",
            architecture=net.arch,
            family=config.family,
            embedding_size=config.embedding_size,
            weights=weights,
            preprocess=preprocess,
            trunk=trunk,
            branches=tuple(branches),
            dispatch=options.dispatch,
            files=files,
            fused=tuple(fused),
            opset=OPSET,
            extra=extra,
        )
        # the validator every load runs: never write a package that cannot load
        manifest_from_json(json.loads(json.dumps(manifest.to_json())))
        write_manifest(manifest, staging)
        replace_folder(staging, out)
    except BaseException:
        bar.close()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def build_btnet(arch: str, resolutions: Sequence[int], trunk: str | Path | None,
                branches: Mapping[int, str | Path], seed: int = 0):
    """The BTNet to export: seeded random weights, or imported checkpoints (with the import report)."""
    from ..models.btnet import BTNet, random_btnet
    from .checkpoints import import_checkpoints

    if trunk is None:
        if branches:
            raise ConfigError("--branch files need their --trunk: a branch is only meaningful with its trunk")
        return random_btnet(arch, resolutions, seed), "random", {}
    torch = require("torch", extra="export")
    torch.manual_seed(seed)
    net = BTNet(arch, resolutions)
    report = import_checkpoints(net, trunk, branches)
    return net.eval(), "pretrained", report
