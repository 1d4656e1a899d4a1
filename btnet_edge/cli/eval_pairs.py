"""btnet-edge eval-pairs: verification accuracy at chosen resolutions, branch vs upsample (BTNet's protocol)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import add_eval_runtime_options, parse_resolutions, recognizer_from_args, write_json


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from ..evaluation.pairs import CROP_MAX_SIDE

    p = subparsers.add_parser(
        "eval-pairs", help="verification accuracy on pairs at low resolutions",
        description="Align each face at 112, degrade it to r px (area interpolation, the paper's protocol), and embed "
                    "it with the r px branch or by upsampling back to 112 for the trunk (the baseline). Reports, per "
                    "resolution pair (112&r, r&r) and method: 10-fold accuracy, AUC and TAR at FAR 1e-2 and 1e-3.")
    p.add_argument("package", type=Path, help="model package folder")
    p.add_argument("--pairs", type=Path, required=True,
                   help="PAIRS.csv with columns img1,img2,same (paths relative to the CSV, same = 1 or 0)")
    p.add_argument("--resolutions", default="112,28,14,7", help="resolutions to test (default 112,28,14,7)")
    p.add_argument("--method", choices=("branch", "upsample", "both", "default", "all"), default="both",
                   help="branch (BTNet), upsample (baseline), both (default), default (the route the Recognizer "
                        "takes under --branches: upsample where a branch is untrained) or all (branch, upsample "
                        "and default rows)")
    p.add_argument("--branches", choices=("trained", "all", "none"), default="trained",
                   help="branch policy the 'default' method follows (default: trained)")
    p.add_argument("--inputs", choices=("auto", "photo", "crop"), default="auto",
                   help=f"photo: detect and align the largest confident face; crop: already aligned, resized to 112; "
                        f"auto (default): square images of at most {CROP_MAX_SIDE} px are crops")
    p.add_argument("--folds", type=int, default=10, help="folds of the best-threshold accuracy (default 10, as LFW)")
    p.add_argument("--json", type=Path, help="write the results as JSON here ('-' for stdout)")
    p.add_argument("--plot", type=Path, help="write the ROC plot here (PNG; needs matplotlib)")
    add_eval_runtime_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..evaluation.pairs import environment, evaluate_pairs, read_pairs

    if args.plot is not None:  # fail before the long part when matplotlib is missing
        from .._deps import require

        require("matplotlib", extra="plot")
    pairs = read_pairs(args.pairs)
    methods = {"both": ("branch", "upsample"),
               "all": ("branch", "upsample", "default")}.get(args.method, (args.method,))
    with recognizer_from_args(args) as recognizer:
        result = evaluate_pairs(recognizer, pairs, parse_resolutions(args.resolutions), methods, args.inputs,
                                folds=args.folds, progress=not args.quiet)
        env = environment(recognizer, pairs_file=str(args.pairs), faces=result["faces"],
                          skipped_images=result["skipped_images"], folds=args.folds, input_kind=args.inputs)
    if args.plot is not None:
        from ..evaluation.plots import plot_roc

        plot_roc(result["curves"], args.plot, title=f"{env['package_name']} on {args.pairs.name}")
    print(f"{'pair':>9} {'method':>9} {'acc':>7} {'auc':>7} {'tar@1e-2':>9} {'tar@1e-3':>9}")
    for row in result["rows"]:
        tar = row["tar_at_far"]
        print(f"{row['res_a']:>4}&{row['res_b']:<4} {row['method']:>9} {row['accuracy']:7.4f} {row['auc']:7.4f} "
              f"{tar['1e-2']:9.4f} {tar['1e-3']:9.4f}")
    write_json({"rows": result["rows"], "env": env}, args.json)
    return 0
