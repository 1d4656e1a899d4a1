"""Option groups and parsers shared between subcommands."""

from __future__ import annotations

import argparse

from ..errors import ConfigError


def parse_resolutions(text: str) -> list[int]:
    """'7,14,28' -> [7, 14, 28] with a clear error."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"resolutions should be comma-separated integers like 7,14,28, found {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise ConfigError(f"resolutions should be positive integers, found {text!r}")
    return values


def parse_branch_file(text: str) -> tuple[int, str]:
    """'14=branch14.pt' -> (14, 'branch14.pt')."""
    resolution, sep, path = text.partition("=")
    if not sep or not resolution.strip().isdigit() or not path:
        raise argparse.ArgumentTypeError(f"--branch takes R=FILE, like 14=branch_14.pt; found {text!r}")
    return int(resolution), path


def parse_triple(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three numbers like 127.5,127.5,127.5; found {text!r}") from None
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected three numbers like 127.5,127.5,127.5; found {text!r}")
    return values  # type: ignore[return-value]


def add_runtime_options(parser: argparse.ArgumentParser) -> None:
    """Backend, detector and dispatch options shared by run, enroll and bench."""
    from ..pipeline.dispatch import INDICATORS, ROUNDINGS
    from ..pipeline.runner import BACKENDS

    group = parser.add_argument_group("runtime")
    group.add_argument("--backend", choices=BACKENDS, default="auto", help="auto = ONNX Runtime (default)")
    group.add_argument("--device", default="cpu", help="cpu or cuda (ONNX Runtime CUDA provider, PyTorch CUDA)")
    group.add_argument("--threads", type=int, default=0, help="intra-op threads (0: the backend decides)")
    group.add_argument("--engines", help="folder of TensorRT engines (backend tensorrt)")
    group.add_argument("--detector", help="detector ONNX (SCRFD or YuNet); default: the bundled RetinaFace")
    group.add_argument("--detector-kind", choices=("retinaface", "scrfd", "yunet"),
                       help="family of --detector when its file name does not say")
    group.add_argument("--det-threshold", type=float, help="detection score threshold")
    group.add_argument("--max-side", type=int, help="cap on the long side of a frame for detection (px)")
    group.add_argument("--indicator", choices=INDICATORS, help="face-size indicator (default: the package's)")
    group.add_argument("--rounding", choices=ROUNDINGS, help="branch rounding rule (default: the package's)")
    group.add_argument("--align", choices=("landmarks", "box"), default="landmarks",
                       help="5-point alignment, or a box crop for unreliable landmarks")


def recognizer_from_args(args: argparse.Namespace, gallery=None):
    """A Recognizer configured by the shared runtime options."""
    from ..pipeline.detect import create_detector
    from ..pipeline.recognizer import Recognizer

    detector_options = {k: v for k, v in (("score_threshold", args.det_threshold), ("max_side", args.max_side))
                        if v is not None}
    detector = create_detector(args.detector, kind=args.detector_kind, device=args.device, threads=args.threads,
                               **detector_options)
    return Recognizer(args.package, backend=args.backend, detector=detector, indicator=args.indicator,
                      rounding=args.rounding, align=args.align, device=args.device, threads=args.threads,
                      engines=args.engines, gallery=gallery)


def gallery_model_id(manifest) -> str:
    """Galleries are tied to the trunk: embeddings of another trunk are not comparable."""
    return f"{manifest.architecture}:trunk-sha256:{manifest.files[manifest.trunk.file][:16]}"
