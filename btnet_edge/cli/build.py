"""btnet-edge build: TensorRT engines for a model package, from a build target.

``--dry-run`` needs no GPU and no TensorRT: it prints (or saves with ``--json``)
the full plan, and writes the ONNX files the build would parse only when ``--out``
is given (otherwise they are made in a temp folder and removed).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

DEFAULT_DRY_RUN_TRT = "10.3"  # JetPack 6's TensorRT, assumed by --dry-run when none is installed or named
DEFAULT_DRY_RUN_RTX = "1.7"  # TensorRT for RTX, for desktop-rtx dry runs without tensorrt-rtx-cu12
DEFAULT_OUT = Path("engines") / "built"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("build", help="build TensorRT engines for a package (or plan them with --dry-run)",
                              description="Build one engine per branch, the trunk (as segment engines) and the "
                                          "default detector with TensorRT, rebuilding only stale engines.")
    p.add_argument("package", type=Path, help="model package folder")
    p.add_argument("--target", required=True, metavar="NAME_OR_FILE",
                   help="build target: a shipped name (desktop-fp16, jetson-orin-fp16, desktop-rtx) or a .toml file")
    p.add_argument("--out", type=Path, help=f"engine folder (default {DEFAULT_OUT}/PACKAGE_NAME/TARGET)")
    p.add_argument("--dry-run", action="store_true", help="plan only: no TensorRT, no GPU needed")
    p.add_argument("--json", metavar="OUT", help="write the plan (and build report) as JSON to OUT ('-': stdout)")
    p.add_argument("--trt-version", metavar="X.Y",
                   help="with --dry-run: plan for this TensorRT release, e.g. 8.6, 10.3 or 11.4 "
                        f"(default: the installed one, else {DEFAULT_DRY_RUN_TRT})")
    p.add_argument("--force", action="store_true", help="rebuild every engine, stale or not")
    p.set_defaults(run=run)


def _out_dir(args: argparse.Namespace, package_name: str, target_name: str) -> Path:
    return args.out or DEFAULT_OUT / package_name / target_name


def _features(args: argparse.Namespace, runtime: str = "tensorrt") -> tuple[Any, bool]:
    """Features of the target's TensorRT module (``tensorrt`` or ``tensorrt_rtx``) and whether they are simulated."""
    from .._deps import available
    from ..errors import ConfigError
    from ..trt_build.features import features_of, simulated_features
    from ..trt_runtime.compat import RTX_MODULE, standin_enabled, trt_module

    if not args.dry_run:
        if args.trt_version:
            raise ConfigError("--trt-version simulates a TensorRT release for --dry-run; a real build uses the "
                              "installed TensorRT")
        return features_of(trt_module(runtime)), False
    if args.trt_version:
        return simulated_features(args.trt_version, runtime), True
    if available(runtime) or (runtime == "tensorrt" and standin_enabled()):
        return features_of(trt_module(runtime)), False
    return simulated_features(DEFAULT_DRY_RUN_RTX if runtime == RTX_MODULE else DEFAULT_DRY_RUN_TRT, runtime), True


def _emit(destination: str | None, data: dict[str, Any]) -> None:
    if not destination:
        return
    text = json.dumps(data, indent=2) + "\n"
    if destination == "-":
        sys.stdout.write(text)
    else:
        from ..safe_io import atomic_write_text

        atomic_write_text(destination, text, "--json")


def run(args: argparse.Namespace) -> int:
    import tempfile

    if args.dry_run and args.out is None:  # a plan writes nothing the user did not ask for
        with tempfile.TemporaryDirectory(prefix="btnet-dry-run-") as scratch:
            return _run(args, Path(scratch), kept=False)
    return _run(args, None, kept=True)


def _run(args: argparse.Namespace, scratch: Path | None, kept: bool) -> int:
    from ..errors import OutputError
    from ..package.loader import read_manifest
    from ..safe_io import check_file_target
    from ..trt_build.plan import plan_engines
    from ..trt_build.targets import load_target

    if args.json not in (None, "-"):
        check_file_target(args.json, "--json")
        if (args.package / Path(args.json).name).resolve() == Path(args.json).resolve():
            raise OutputError(f"--json {args.json} is inside the package {args.package}; write the plan elsewhere "
                              "(a package's files are checked by hash)")
    target = load_target(args.target)
    features, simulated = _features(args, target.runtime)  # a real build fails here, before any work, without TensorRT
    out = scratch or _out_dir(args, read_manifest(args.package).name, target.name)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file; give a folder for the engines (it is created)")
    plan = plan_engines(args.package, target, features, out, simulated=simulated)
    quiet_stdout = args.json == "-"
    say = (lambda line: print(line, file=sys.stderr, flush=True)) if quiet_stdout else \
        (lambda line: print(line, flush=True))
    trunk = plan["trunk"]
    say(f"{plan['package_name']} -> {out}  (target {target.name}, TensorRT {features.version}"
        f"{' simulated' if simulated else ''}, {plan['precision_path']}, trunk as {trunk['form']})")
    for entry in plan["engines"]:
        shapes = "; ".join(f"{name} {s['min'][0]}/{s['opt'][0]}/{s['max'][0]}"
                           for profile in entry["profiles"] for name, s in profile.items())
        say(f"  {entry['name']:<22} {Path(entry['onnx']).name:<30} batch min/opt/max {shapes}")
    if args.dry_run:
        _emit(args.json, plan)
        say("dry run: nothing built" + ("" if kept else " and no file kept (pass --out to keep the ONNX inputs)")
            + (f"; plan written to {args.json}" if args.json not in (None, "-") else ""))
        return 0
    from ..trt_build.builder import build_all

    report = build_all(plan, out, force=args.force, progress=say)
    _emit(args.json, {**plan, "build": report})
    say(f"built {len(report['built'])}, up to date {len(report['fresh'])}; engines manifest "
        f"{report['engines_manifest']}")
    return 0
