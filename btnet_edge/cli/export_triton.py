"""btnet-edge export-triton: a Triton model repository (branches, trunk, ensemble) from a model package."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from ..serve.triton_repo import DEFAULT_MAX_BATCH, DEFAULT_QUEUE_DELAY_US

    p = subparsers.add_parser("export-triton", help="write a Triton model repository (dynamic batching, ensemble)",
                              description="Branches with dynamic batching, the merged trunk and an ensemble, as "
                                          "onnxruntime_onnx or (with --engines) tensorrt_plan models, plus a client "
                                          "example. The repository is checked here after writing.")
    p.add_argument("package", type=Path, help="model package folder")
    p.add_argument("--out", type=Path, required=True, help="repository folder to write")
    p.add_argument("--engines", type=Path, help="folder of `btnet-edge build` engines: branches become tensorrt_plan")
    p.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH, help="max faces per branch run")
    p.add_argument("--queue-delay-us", type=int, default=DEFAULT_QUEUE_DELAY_US,
                   help="how long Triton waits to fill a branch batch")
    p.add_argument("--kind", choices=("gpu", "cpu"), default="gpu", help="instance kind of every model")
    p.add_argument("--force", action="store_true", help="replace a repository this command wrote before")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..serve.triton_check import check_repository
    from ..serve.triton_repo import export_triton

    report = export_triton(args.package, args.out, engines=args.engines, max_batch=args.max_batch,
                           queue_delay_us=args.queue_delay_us, kind=args.kind, force=args.force)
    problems = check_repository(args.out)
    if problems:
        raise ConfigError(f"the repository written to {args.out} fails its own checks: {'; '.join(problems)}")
    print(json.dumps({"repository": str(args.out), **report, "checked": "configs parsed, graphs and ensemble wiring "
                      "match; load it on a Triton server to finish the check"}, indent=2))
    return 0
