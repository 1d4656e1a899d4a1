"""btnet-edge compare: whole frames through TensorRT engines and through ONNX Runtime, face by face."""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import add_detector_options, add_dispatch_options, write_json


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 1280x720, found {text!r}") from None
    if width < 16 or height < 16:
        raise argparse.ArgumentTypeError(f"{text}: frames need at least 16 px a side")
    return width, height


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("compare", help="TensorRT engines vs ONNX Runtime on frames: faces and cosines",
                              description="Runs each frame through a Recognizer on the engines (detector engine, "
                                          "device-resident runner) and one on ONNX Runtime; prints per frame the "
                                          "faces found by each, those matched (IoU >= 0.5), the worst cosine of "
                                          "matched embeddings and the copies and syncs of the TensorRT side. "
                                          "Exit 1 when faces differ or a cosine is below --min-cosine.")
    p.add_argument("package", type=Path, help="model package folder")
    p.add_argument("frames", nargs="+", type=Path, help="image files")
    p.add_argument("--engines", type=Path, required=True, help="engine folder written by btnet-edge build")
    p.add_argument("--sizes", type=lambda t: [_size(v) for v in t.split(",")],
                   help="also resize every frame to these WIDTHxHEIGHT sizes (comma-separated)")
    p.add_argument("--min-cosine", type=float, default=0.98, help="worst acceptable cosine (default 0.98)")
    p.add_argument("--json", help="write the rows as JSON here ('-' for stdout)")
    add_detector_options(p)
    add_dispatch_options(p)
    p.set_defaults(run=run, backend="tensorrt", device="cpu", threads=0, fp16=False)


def run(args: argparse.Namespace) -> int:
    import cv2

    from ..bench.engine_compare import compare_frames
    from ..pipeline.image import read_image
    from .options import recognizer_config_from_args, refresh_engines

    refresh_engines(args)
    config = recognizer_config_from_args(args)

    def frames():
        for path in args.frames:
            image = read_image(path)
            yield path.name, image
            for width, height in args.sizes or []:
                yield f"{path.name}@{width}x{height}", cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)

    rows = compare_frames(config, str(args.engines), frames())
    failed = [r for r in rows if r["faces_onnxruntime"] != r["faces_tensorrt"] or r["matched"] != r["faces_tensorrt"]
              or (r["worst_cosine"] is not None and r["worst_cosine"] < args.min_cosine)]
    print(f"{'frame':<32} {'size':>10} {'ORT':>4} {'TRT':>4} {'match':>5} {'worst cos':>9} {'htod':>5} {'dtoh':>5} "
          f"{'syncs':>5}")
    for r in rows:
        cosine = "-" if r["worst_cosine"] is None else f"{r['worst_cosine']:.6f}"
        print(f"{r['frame'][:32]:<32} {r['size']:>10} {r['faces_onnxruntime']:>4} {r['faces_tensorrt']:>4} "
              f"{r['matched']:>5} {cosine:>9} {r['htod']:>5} {r['dtoh']:>5} {r['syncs']:>5}")
    print(f"{len(rows)} frames, {len(failed)} with different faces or a cosine under {args.min_cosine}")
    write_json({"engines": str(args.engines), "min_cosine": args.min_cosine, "rows": rows}, args.json)
    return 1 if failed else 0
