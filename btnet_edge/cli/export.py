"""btnet-edge export: PyTorch weights (or a seeded random init) -> model package folder."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from ..pipeline.dispatch import INDICATORS, ROUNDINGS
from .options import parse_branch_file, parse_resolutions, parse_triple

log = logging.getLogger(__name__)

ARCH_CHOICES = ("r18", "r34", "r50", "r100", "mobilefacenet", "test_btnet")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export", help="export a model package (ONNX graphs + manifest)",
                              description="Export BTNet (trunk + branches) to a model package folder. Without "
                                          "--trunk the weights are a seeded random initialization (fine for latency).")
    p.add_argument("--arch", choices=ARCH_CHOICES, help="trunk architecture (read from the graph when --trunk is ONNX)")
    p.add_argument("--trunk", type=Path, help="trunk weights: insightface backbone.pth, the authors' 112 px model.pt, "
                                              "MobileFaceNet's state dict, or an ONNX recogniser "
                                              "(IResNet, MobileFaceNet)")
    p.add_argument("--branch", type=parse_branch_file, action="append", default=[], metavar="R=FILE",
                   help="branch weights for R px in the authors' format (a full network); repeatable")
    p.add_argument("--resolutions", default="7,14,28", help="branch resolutions (default 7,14,28)")
    p.add_argument("--out", type=Path, required=True, help="package folder to write")
    p.add_argument("--name", help="package name (default ARCH.random or ARCH.custom)")
    p.add_argument("--fused", action="store_true",
                   help="also write fused_<r>.onnx (branch + trunk tail) per resolution")
    p.add_argument("--no-parity", action="store_true", help="skip the ONNX Runtime vs PyTorch parity check")
    p.add_argument("--seed", type=int, default=0, help="seed of the random initialization (default 0)")
    p.add_argument("--color-order", choices=("RGB", "BGR"), help="override the architecture's input colour order")
    p.add_argument("--mean", type=parse_triple, help="override input mean, pixel units, e.g. 127.5,127.5,127.5")
    p.add_argument("--std", type=parse_triple, help="override input std, pixel units")
    p.add_argument("--flip-tta", choices=("on", "off"), help="override flip test-time augmentation")
    p.add_argument("--indicator", choices=INDICATORS, default="max", help="default dispatch size indicator")
    p.add_argument("--rounding", choices=ROUNDINGS, default="ceil", help="default dispatch rounding")
    p.add_argument("--force", action="store_true",
                   help="replace an existing package at --out (never a folder without manifest.json)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from .._deps import require

    require("torch", extra="export")
    require("onnx", extra="export")
    from dataclasses import replace

    from ..errors import ConfigError
    from ..export.onnx_import import is_onnx_file, onnx_trunk_btnet
    from ..export.package_writer import ExportOptions, build_btnet, check_export_options, export_package
    from ..package.manifest import DispatchPolicy

    resolutions = parse_resolutions(args.resolutions)
    branches = dict(args.branch)
    from_onnx = is_onnx_file(args.trunk)
    if not from_onnx and args.arch is None:
        raise ConfigError("--arch is required unless --trunk is an ONNX file "
                          "(whose architecture is read from the graph)")
    options = ExportOptions(
        out=args.out, fused=args.fused, parity=not args.no_parity, seed=args.seed, name=args.name,
        color_order=args.color_order, mean=args.mean, std=args.std,
        flip_tta=None if args.flip_tta is None else args.flip_tta == "on",
        dispatch=DispatchPolicy(args.indicator, args.rounding), force=args.force, progress=not args.quiet,
        inputs=tuple(Path(p) for p in (args.trunk, *branches.values()) if p is not None),
    )
    check_export_options(options)  # before the (slow) model build, and before anything is written
    untrained = [r for r in resolutions if r not in branches]
    if args.trunk is not None and untrained:
        log.warning("branches %s px have no trained weights (initialised from the trunk only): the Recognizer will "
                    "upsample faces of those sizes for the trunk instead. Train them: btnet-edge train-branches %s "
                    "--images PHOTOS --out TRAINED (docs/accuracy.md says how much data that needs)",
                    untrained, args.out)
    if from_onnx:  # preprocessing as the source declares it (graph, flags or convention: the report says which)
        net, weights, report = onnx_trunk_btnet(args, resolutions, branches)
        color_order, mean, std = (report["trunk"]["preprocess"][k] for k in ("color_order", "mean", "std"))
        options = replace(options, color_order=color_order, mean=mean, std=std,
                          name=args.name or f"{net.arch}.{args.trunk.stem}")  # arch.tag: iresnet50.w600k_r50
    else:
        net, weights, report = build_btnet(args.arch, resolutions, args.trunk, branches, seed=args.seed)
    manifest = export_package(net, options, weights, report)
    summary = {"package": str(args.out), "name": manifest.name, "weights": manifest.weights,
               "files": sorted(manifest.files), "parity": manifest.extra.get("parity", {})}
    if "parity_vs_source" in report.get("trunk", {}):
        summary["parity_vs_source"] = report["trunk"]["parity_vs_source"]
        summary["preprocess_from"] = report["trunk"]["preprocess"]["mean_std_from"]
    if weights == "random":
        summary["note"] = "random weights (seeded): right for latency and plumbing, not for recognition"
    print(json.dumps(summary, indent=2))
    return 0
