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
    p.add_argument("--pairs", type=Path,
                   help="PAIRS.csv with columns img1,img2,same (paths relative to the CSV, same = 1 or 0)")
    p.add_argument("--bin", type=Path, action="append", default=[],
                   help="insightface verification set (lfw.bin, cfp_fp.bin, agedb_30.bin: aligned 112 crops, read "
                        "with a restricted unpickler that runs no code); repeatable")
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
    from ..errors import ConfigError
    from ..evaluation.pairs import environment, evaluate_bin, evaluate_pairs, read_pairs

    if (args.pairs is None) == (not args.bin):
        raise ConfigError("give either --pairs PAIRS.csv or --bin FILE.bin (repeatable), not both and not neither")
    if args.plot is not None:  # fail before the long part when matplotlib is missing
        from .._deps import require

        require("matplotlib", extra="plot")
    pairs = read_pairs(args.pairs) if args.pairs is not None else None
    if args.bin:
        from ..evaluation.bin_pairs import read_bin

        for path in args.bin:  # every file checked (and refused if unsafe) before any model loads
            read_bin(path)
    methods = {"both": ("branch", "upsample"),
               "all": ("branch", "upsample", "default")}.get(args.method, (args.method,))
    resolutions = parse_resolutions(args.resolutions)
    results = []  # (name, result)
    with recognizer_from_args(args) as recognizer:
        if pairs is not None:
            results.append((args.pairs.name, evaluate_pairs(recognizer, pairs, resolutions, methods, args.inputs,
                                                            folds=args.folds, progress=not args.quiet)))
        for path in args.bin:
            results.append((path.name, evaluate_bin(recognizer, path, resolutions, methods, folds=args.folds)))
        sources = {"pairs_file": str(args.pairs)} if pairs is not None else {"bin_files": [str(p) for p in args.bin]}
        env = environment(recognizer, **sources, faces=sum(r["faces"] for _, r in results),
                          skipped_images=[s for _, r in results for s in r["skipped_images"]], folds=args.folds,
                          input_kind=args.inputs if pairs is not None else "crop")
    if args.plot is not None:
        from ..evaluation.plots import plot_roc

        for name, result in results:
            out = args.plot if len(results) == 1 else args.plot.with_name(f"{args.plot.stem}-{Path(name).stem}"
                                                                          f"{args.plot.suffix or '.png'}")
            plot_roc(result["curves"], out, title=f"{env['package_name']} on {name}")
    print(f"{'set':>10} {'pair':>9} {'method':>9} {'acc':>7} {'auc':>7} {'tar@1e-2':>9} {'tar@1e-3':>9}")
    for name, result in results:
        for row in result["rows"]:
            tar = row["tar_at_far"]
            print(f"{Path(name).stem[:10]:>10} {row['res_a']:>4}&{row['res_b']:<4} {row['method']:>9} "
                  f"{row['accuracy']:7.4f} {row['auc']:7.4f} {tar['1e-2']:9.4f} {tar['1e-3']:9.4f}")
    write_json({"rows": [row for _, r in results for row in r["rows"]], "env": env}, args.json)
    return 0
