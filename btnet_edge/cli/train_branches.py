"""btnet-edge train-branches: distill each branch from the package's frozen trunk, write a new package."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .options import non_negative_int, parse_resolutions, positive_float, positive_int


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train-branches", help="train branches by distillation from the frozen trunk",
        description="Read aligned faces from an insightface RecordIO dataset (--rec), folders of aligned crops "
                    "(--crops) or photos (--images: detected and aligned at 112); labels are not needed. Train each "
                    "branch so "
                    "that, on the face degraded to its resolution, it reproduces the trunk's feature map at the "
                    "implant point and the trunk's embedding (MSE + MSE, weights 1 and 1 as the authors). The trunk "
                    "is frozen entirely, BN statistics included. Writes a new package whose manifest records the run.")
    p.add_argument("package", type=Path,
                   help="source model package (trunk and branch weights are read from its ONNX files)")
    p.add_argument("--images", type=Path, action="append", default=[],
                   help="folder of photos (searched recursively; faces detected and aligned); repeatable")
    p.add_argument("--crops", type=Path, action="append", default=[],
                   help="folder of aligned face crops (112x112, insightface layout); repeatable")
    p.add_argument("--rec", type=Path,
                   help="insightface RecordIO dataset: train.rec with train.idx beside it (MS1MV2/MS1MV3, Glint360K, "
                        "WebFace); read without mxnet")
    p.add_argument("--workers", type=positive_int, default=2,
                   help="decoding and augmentation threads per process (default 2)")
    p.add_argument("--out", type=Path, required=True, help="package folder to write")
    p.add_argument("--resolutions", help="branches to train (default: all of the package's)")
    p.add_argument("--epochs", type=positive_int, default=None, help="passes over the faces (default 100)")
    p.add_argument("--steps", type=positive_int, help="total optimizer steps instead of --epochs")
    p.add_argument("--batch-size", type=positive_int, default=32,
                   help="faces per step and process (default 32); under torchrun the global batch is N x this")
    p.add_argument("--lr", type=positive_float, default=3e-3, help="peak learning rate (default 3e-3)")
    p.add_argument("--optimizer", choices=("adamw", "sgd"), default="adamw")
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--feature-weight", type=float, default=1.0, help="weight of the implant-point MSE (default 1)")
    p.add_argument("--embedding-weight", type=float, default=1.0, help="weight of the embedding MSE (default 1)")
    p.add_argument("--mixup", type=float, default=0.0,
                   help="share of training faces blended with another face (more distinct inputs for the teacher "
                        "when faces are few; default 0)")
    p.add_argument("--interpolations", default="area,bilinear,bicubic",
                   help="kernels drawn per face to make the r px view (default area,bilinear,bicubic; "
                        "also nearest)")
    p.add_argument("--degrade-blur", type=float, default=0.0,
                   help="share of r px views blurred (Gaussian, sigma 0.5-1.5 at 112) before the resize (default 0)")
    p.add_argument("--degrade-jpeg", type=float, default=0.0,
                   help="share of r px views JPEG-compressed (quality 40-90) after the resize (default 0)")
    p.add_argument("--min-face-px", type=float, default=48.0,
                   help="faces smaller than this (long side) are not used as 112 px teachers (default 48)")
    p.add_argument("--init", choices=("trunk", "package"), default="trunk",
                   help="start each branch from the trunk's weights (default, as the authors) or fine-tune the "
                        "package's branches")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    p.add_argument("--threads", type=non_negative_int, default=0, help="CPU threads for PyTorch (0: its default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-share", type=float, default=0.1,
                   help="share of the faces held out to measure distillation on unseen faces (default 0.1)")
    p.add_argument("--checkpoints", type=Path, help="checkpoint folder (default: OUT.ckpt next to --out)")
    p.add_argument("--save-every", type=positive_int, default=50, help="checkpoint every N steps (default 50)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint folder's last.npz")
    p.add_argument("--stop-after", type=positive_int,
                   help="stop after this many steps of this session with a checkpoint and no package (time-limited "
                        "jobs: run again with --resume)")
    p.add_argument("--name", help="name of the new package (default: SOURCE.distilled)")
    p.add_argument("--fused", action="store_true", help="also write fused graphs (default: as the source package)")
    p.add_argument("--force", action="store_true",
                   help="replace an existing package at --out (never a folder without manifest.json)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from .._deps import require

    require("torch", extra="train")
    require("onnx", extra="train")
    from ..errors import ConfigError
    from ..training.data import Augmentation, Degradation
    from ..training.distill import TrainOptions, train_and_export

    for name, share in (("--degrade-blur", args.degrade_blur), ("--degrade-jpeg", args.degrade_jpeg)):
        if not 0.0 <= share <= 1.0:
            raise ConfigError(f"{name} should be a share in [0, 1], found {share}")
    try:
        degradation = Degradation(tuple(k.strip() for k in args.interpolations.split(",") if k.strip()),
                                  blur_p=args.degrade_blur, jpeg_p=args.degrade_jpeg)
    except ValueError as exc:
        raise ConfigError(f"--interpolations: {exc}") from None

    options = TrainOptions(
        resolutions=parse_resolutions(args.resolutions) if args.resolutions else None,
        epochs=args.epochs, steps=args.steps, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
        weight_decay=args.weight_decay, feature_weight=args.feature_weight, embedding_weight=args.embedding_weight,
        init=args.init, device=args.device, amp=not args.no_amp, threads=args.threads, seed=args.seed,
        val_share=args.val_share, augmentation=Augmentation(mixup_p=args.mixup), degradation=degradation,
        workers=args.workers, stop_after=args.stop_after,
        checkpoints=args.checkpoints or args.out.resolve().with_name(args.out.resolve().name + ".ckpt"),
        save_every=args.save_every,
        resume=args.resume, progress=not args.quiet,
    )
    summary = train_and_export(args.package, args.images, args.out, options, min_face_px=args.min_face_px,
                               name=args.name, fused=True if args.fused else None, force=args.force,
                               rec=args.rec, crops=args.crops)
    import os

    if os.environ.get("RANK", "0") == "0":  # one summary under torchrun
        print(json.dumps(summary, indent=2))
    return 0
