"""btnet-edge check: TensorRT engines against the FP32 ONNX Runtime reference, by cosine similarity."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from ..trt_build.check import DEFAULT_MIN_MEAN_COSINE
from .options import positive_int

log = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("check", help="compare TensorRT engines with the FP32 ONNX Runtime reference",
                              description="Embeddings of the engines vs the package's FP32 graphs on ONNX Runtime, "
                                          "on random inputs and on photos: mean and min cosine per resolution. "
                                          "Fails (exit 1) when a mean is below the threshold.")
    p.add_argument("package", type=Path, help="model package folder")
    p.add_argument("--engines", type=Path, required=True, help="engine folder written by btnet-edge build")
    p.add_argument("--faces", type=Path, help="folder of face photos (centre crops are used), searched recursively")
    p.add_argument("--samples", type=positive_int, default=16, help="random inputs per resolution (default 16)")
    p.add_argument("--threshold", type=float, default=DEFAULT_MIN_MEAN_COSINE,
                   help=f"minimum mean cosine per resolution (default {DEFAULT_MIN_MEAN_COSINE})")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..package.loader import load_package
    from ..trt_build.builder import refresh_stale_engines
    from ..trt_build.check import close_all, compare, face_inputs, ort_reference, plan_embedder, random_inputs
    from ..trt_runtime.compat import trt_module
    from ..trt_runtime.engine_backend import TrtBackend
    from ..trt_runtime.engine_folder import ENGINES_MANIFEST, read_engine_folder

    module = read_engine_folder(args.engines).tensorrt_module if (args.engines / ENGINES_MANIFEST).is_file() \
        else "tensorrt"
    trt_module(module)  # tensorrt or tensorrt_rtx (or the stand-in): exit 2 with the install hint before any work
    folder = read_engine_folder(args.engines)
    package = load_package(args.package)
    if folder.package_name != package.manifest.name:
        log.warning("engines in %s were planned for package %r, checking against %r", args.engines,
                    folder.package_name, package.manifest.name)
    refresh_stale_engines(args.engines)
    reference, ref_backends = ort_reference(package)
    if folder.uint8:  # what the Recognizer runs: the device-resident runner
        from ..trt_build.check import resident_embedder
        from ..trt_runtime.resident import open_resident

        resident = open_resident(folder, "tensorrt")
        candidate, trt_backends = resident_embedder(resident), [resident]
    else:
        candidate, trt_backends = plan_embedder(package.manifest, folder,
                                                lambda e: TrtBackend(folder.engine_path(e)))
    try:
        rows = compare(reference, candidate, random_inputs(package.manifest, args.samples, args.seed), "random",
                       args.threshold)
        if args.faces:
            faces = face_inputs(package.manifest, args.faces)
            if not faces:
                log.warning("no readable photos in %s; checked random inputs only", args.faces)
            rows += compare(reference, candidate, faces, "faces", args.threshold) if faces else []
    finally:
        close_all([*ref_backends, *trt_backends])
    if args.json:
        print(json.dumps({"engines": str(args.engines), "threshold": args.threshold, "rows": rows}, indent=2))
    else:
        print(f"{'resolution':>10} {'source':>7} {'samples':>7} {'mean cos':>9} {'min cos':>9}  result")
        for row in rows:
            print(f"{row['resolution']:>10} {row['source']:>7} {row['samples']:>7} {row['mean_cosine']:>9.6f} "
                  f"{row['min_cosine']:>9.6f}  {'ok' if row['passed'] else 'FAIL'}")
    return 0 if all(row["passed"] for row in rows) else 1
