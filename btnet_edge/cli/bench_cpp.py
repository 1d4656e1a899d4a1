"""btnet-edge bench-cpp: the C++ runtime (build/cpp/btnet-edge-run) against the Python one, per frame and per face."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench-cpp", help="C++ vs Python runtime latency per frame and per face",
        description="Run the same frames through the Python Recognizer and the C++ app on the same package, "
                    "detector file and threads, one runtime after the other in one run; print the table.")
    p.add_argument("package", type=Path, help="model package folder")
    p.add_argument("frames", nargs="+", help="image files or folders")
    p.add_argument("--app", type=Path, default=Path("build/cpp/btnet-edge-run"), help="the built C++ app")
    p.add_argument("--detector", type=Path, help="detector ONNX for both runtimes (default: the bundled RetinaFace)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per frame after one untimed run (default 5)")
    p.add_argument("--rounds", type=int, default=3,
                   help="Python and C++ alternate this many times; medians are reported (default 3)")
    p.add_argument("--threads", type=int, help="intra-op threads for both (default: physical cores)")
    p.add_argument("--json", type=Path, help="write the report as JSON here")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..bench.cpp import bench_cpp_vs_python, format_cpp_report
    from ..bench.env import physical_cores
    from ..bench.report import write_json
    from ..pipeline.sources import expand_inputs

    threads = args.threads or physical_cores()
    report = bench_cpp_vs_python(args.package, expand_inputs(args.frames), args.app, args.detector, args.repeats,
                                 threads, args.rounds)
    print(format_cpp_report(report))
    if args.json:
        write_json(report, args.json)
    return 0
