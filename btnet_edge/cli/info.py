"""btnet-edge info: what a package holds, as text or JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..package.branch_status import branch_statuses
from ..package.loader import load_package, read_manifest


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("info", help="summarize a model package", description="Summarize a model package.")
    p.add_argument("package", type=Path, help="package folder")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--no-verify", action="store_true", help="skip the sha256 check of the files")
    p.set_defaults(run=run)


def package_summary(folder: Path, verify: bool = True) -> dict[str, Any]:
    manifest = load_package(folder, verify=verify).manifest if verify else read_manifest(folder)
    extra = manifest.extra
    return {
        "name": manifest.name,
        "architecture": manifest.architecture,
        "weights": manifest.weights,
        "embedding_size": manifest.embedding_size,
        "resolutions": manifest.resolutions,
        "implants": {str(b.resolution): {"after": b.implant_after, "resume_at": b.resume_at,
                                         "shape": list(b.output.shape)}
                     for b in manifest.branches},
        "preprocess": {"color_order": manifest.preprocess.color_order, "mean": list(manifest.preprocess.mean),
                       "std": list(manifest.preprocess.std), "flip_tta": manifest.preprocess.flip_tta},
        "dispatch": {"indicator": manifest.dispatch.indicator, "rounding": manifest.dispatch.rounding,
                     "ranges": extra.get("dispatch_ranges", {}).get(manifest.dispatch.rounding)},
        "parameters": extra.get("parameters"),
        "branch_param_percent": extra.get("branch_param_percent"),
        "parity": extra.get("parity"),
        "import_report": extra.get("import_report"),
        "branches": [status.to_json() for status in branch_statuses(manifest)],
        "files": dict(manifest.files),
        "file_bytes": {name: (Path(folder) / name).stat().st_size for name in manifest.files},
        "verified": verify,
    }


def run(args: argparse.Namespace) -> int:
    summary = package_summary(args.package, verify=not args.no_verify)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{summary['name']}  ({summary['architecture']}, weights: {summary['weights']}, "
          f"embedding {summary['embedding_size']})")
    params = summary["parameters"] or {}
    print(f"trunk parameters: {params.get('trunk')}")
    for r in summary["resolutions"][1:]:
        implant = summary["implants"][str(r)]
        print(f"  branch {r:>3} px: {params.get('branches', {}).get(str(r))} parameters "
              f"({summary['branch_param_percent'][str(r)]}% of the trunk), implant {implant['shape']} after "
              f"{implant['after']}")
    for status in branch_statuses(read_manifest(args.package)):
        print(f"  branch {status.resolution:>3} px: {status.describe()}")
    sizes = summary["file_bytes"]
    print(f"files: {sum(sizes.values()) / 1e6:.1f} MB ("
          + ", ".join(f"{n} {b / 1e6:.1f}" for n, b in sorted(sizes.items())) + ")")
    d = summary["dispatch"]
    print(f"dispatch: {d['indicator']} + {d['rounding']}: {d['ranges']}")
    for name, figures in (summary["parity"] or {}).items():
        print(f"  parity {name}: max |err| {figures['max_abs_err']:.2e}, min cosine {figures['min_cosine']:.6f}")
    return 0
