"""Option groups and parsers shared between subcommands."""

from __future__ import annotations

import argparse
from pathlib import Path

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


def _whole_number(text: str, minimum: int, example: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number like {example}, found {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least {minimum}, found {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (batch sizes, strides, frame counts)."""
    return _whole_number(text, 1, "1 or 16")


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0 (thread counts, where 0 means "the backend decides")."""
    return _whole_number(text, 0, "0 or 4")


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0 (learning rates, seconds)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number like 0.003, found {text!r}") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number above 0, found {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0 (sizes where 0 turns a pass off)."""
    if text.strip() in ("0", "0.0"):
        return 0.0
    return positive_float(text)


def add_runtime_options(parser: argparse.ArgumentParser) -> None:
    """Backend, detector and dispatch options shared by run and enroll."""
    add_backend_options(parser)
    add_detector_options(parser)
    add_dispatch_options(parser)


def add_backend_options(parser: argparse.ArgumentParser) -> None:
    from ..pipeline.config import BACKENDS

    group = parser.add_argument_group("backend")
    group.add_argument("--backend", choices=BACKENDS, default="auto", help="auto = ONNX Runtime (default)")
    group.add_argument("--device", default="cpu", help="cpu or cuda (ONNX Runtime CUDA provider, PyTorch CUDA)")
    group.add_argument("--threads", type=non_negative_int, default=0, help="intra-op threads (0: the backend decides)")
    group.add_argument("--engines", help="folder of TensorRT engines (backend tensorrt)")
    group.add_argument("--fp16", action="store_true", help="FP16 weights and activations (backend torch on CUDA)")


def add_detector_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("detector")
    group.add_argument("--detector", help="detector ONNX (SCRFD or YuNet); default: the bundled RetinaFace")
    group.add_argument("--detector-kind", choices=("retinaface", "scrfd", "yunet"),
                       help="family of --detector when its file name does not say")
    group.add_argument("--det-threshold", type=float, help="detection score threshold")
    group.add_argument("--det-size", type=positive_int,
                       help="long side of the coarse pass for large faces (px, default 640, as insightface's det_size)")
    group.add_argument("--min-face", type=non_negative_float, metavar="PX",
                       help="smallest face to look for (px, default 10); 0 skips the enlarged small-face pass, "
                            "which is most of the detection time (docs/detection.md)")
    group.add_argument("--det-upscale", type=positive_float,
                       help="factor of the enlarged pass (default: from --min-face)")
    group.add_argument("--det-tile", type=non_negative_int,
                       help="tile side of the enlarged pass (px, default 1920; 0: no tiles)")
    group.add_argument("--max-side", type=positive_int,
                       help="no detection pass on an image longer than this (px, default 4800): bounds the cost on 4K "
                            "frames")
    group.add_argument("--det-budget", type=positive_float, metavar="PASSES",
                       help="video and camera frames: the enlarged pass's work per frame, in coarse passes (default "
                            "1.0: 720p at <= 2.5x the --min-face 0 cost); its tiles are spread over frames to fit")
    group.add_argument("--no-second-look", action="store_true",
                       help="keep boxes only the enlarged pass found without looking again at larger sizes")
    group.add_argument("--no-face-cues", action="store_true",
                       help="keep boxes only the enlarged pass found without the landmark-layout and contrast checks")


def add_eval_runtime_options(parser: argparse.ArgumentParser) -> None:
    """Backend and detector options for evaluation (no dispatch: evaluation picks the resolution itself)."""
    add_backend_options(parser)
    add_detector_options(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def add_dispatch_options(parser: argparse.ArgumentParser) -> None:
    from ..pipeline.dispatch import INDICATORS, ROUNDINGS

    group = parser.add_argument_group("dispatch and alignment")
    group.add_argument("--indicator", choices=INDICATORS, help="face-size indicator (default: the package's)")
    group.add_argument("--rounding", choices=ROUNDINGS, help="branch rounding rule (default: the package's)")
    group.add_argument("--align", choices=("landmarks", "box"), default="landmarks",
                       help="5-point alignment, or a box crop for unreliable landmarks")
    group.add_argument("--branches", choices=("trained", "all", "none"), default="trained",
                       help="trained (default): faces whose branch is untrained are upsampled for the trunk; "
                            "all: use every branch (to test them); none: always upsample")


def det_plan_from_args(args: argparse.Namespace):
    """The DetectPlan the detector options ask for, or None for the default plan."""
    from ..pipeline.detect_plan import DetectPlan

    fields = {"det_size": args.det_size, "upscale": args.det_upscale, "max_side": args.max_side}
    fields = {k: v for k, v in fields.items() if v is not None}
    if args.min_face is not None:  # 0 means: no enlarged pass
        fields["min_face_px"] = args.min_face if args.min_face > 0 else None
    if args.det_tile is not None:
        fields["tile"] = args.det_tile or None
    if getattr(args, "det_budget", None) is not None:
        fields["stream_budget"] = args.det_budget
    if getattr(args, "no_second_look", False):
        fields["second_look"] = False
    if getattr(args, "no_face_cues", False):
        fields["face_cues"] = False
    return DetectPlan(**fields) if fields else None


def detector_from_args(args: argparse.Namespace):
    """The face detector the backend and detector options name (on TensorRT: the engine folder's detector engine)."""
    from ..pipeline.config import detector_for

    if args.backend == "tensorrt" and args.engines is None:
        raise ConfigError("--backend tensorrt needs --engines DIR, a folder written by `btnet-edge build`")
    engines = refresh_engines(args)
    return detector_for(args.detector, args.detector_kind, backend=args.backend, engines=engines, device=args.device,
                        threads=args.threads, score_threshold=args.det_threshold, plan=det_plan_from_args(args))


def recognizer_config_from_args(args: argparse.Namespace):
    """The RecognizerConfig of the shared backend, detector and (optional) dispatch options."""
    from ..pipeline.config import RecognizerConfig

    return RecognizerConfig(
        package=str(args.package), backend=args.backend, device=args.device, threads=args.threads,
        fp16=getattr(args, "fp16", False), engines=str(args.engines) if args.engines is not None else None,
        detector=args.detector, detector_kind=args.detector_kind, det_threshold=args.det_threshold,
        det_plan=det_plan_from_args(args), indicator=getattr(args, "indicator", None),
        rounding=getattr(args, "rounding", None), align=getattr(args, "align", "landmarks"),
        branches=getattr(args, "branches", "trained"))


def refresh_engines(args: argparse.Namespace):
    """On ``--backend tensorrt``: rebuild the folder's stale engines (a TensorRT upgrade, another GPU) first.

    Returns the engine folder (None off TensorRT). Only the CLI rebuilds on its own; the
    library refuses a stale engine and names the build command.
    """
    if args.backend != "tensorrt" or args.engines is None:
        return args.engines
    from ..trt_build.builder import refresh_stale_engines

    refresh_stale_engines(args.engines)
    return args.engines


def recognizer_from_args(args: argparse.Namespace, gallery=None):
    """A Recognizer configured by the shared options (dispatch options are optional)."""
    from ..pipeline.recognizer import Recognizer

    config = recognizer_config_from_args(args)
    refresh_engines(args)
    return Recognizer.from_config(config, gallery=gallery)


def write_json(document: dict, target) -> None:
    """JSON to the path ``target`` (temp name, then rename: an old file survives a failed write), or to
    stdout for '-'; nothing for None."""
    import json

    from ..safe_io import atomic_write_text

    if target is None:
        return
    text = json.dumps(document, indent=2)
    if str(target) == "-":
        print(text)
        return
    atomic_write_text(target, text + "\n", "JSON output")


def gallery_model_id(manifest) -> str:
    """Galleries are tied to the trunk: embeddings of another trunk are not comparable."""
    from ..package.manifest import model_id

    return model_id(manifest)


def gallery_target(text: str):
    """argparse type of --gallery: a SQLite file (a Path) or a PostgreSQL URL (kept as typed: Path would fold '//')."""
    from ..gallery.gallery import is_server_url

    if not text.strip():
        raise argparse.ArgumentTypeError("expected a gallery file (people.db) or postgresql://user@host/db, found ''")
    return text if is_server_url(text) else Path(text)


def gallery_setting(target) -> str | None:
    """A --gallery value as a server setting: an absolute file path (replicas run elsewhere) or the URL as typed."""
    if target is None:
        return None
    return str(target.resolve()) if isinstance(target, Path) else target
