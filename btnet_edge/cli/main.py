"""``btnet-edge`` command line: one module per subcommand, errors become one line and an exit code."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

from ..errors import BtnetError

# subcommand -> module in btnet_edge.cli; each module has add_parser(subparsers) and run(args) -> int.
SUBCOMMANDS = {
    "export": "export",
    "info": "info",
    "enroll": "enroll",
    "run": "run",
    "gallery": "gallery",
    "build": "build",
    "check": "check",
    "eval-pairs": "eval_pairs",
    "eval-ident": "eval_ident",
    "eval-detect": "eval_detect",
    "eval-track": "eval_track",
    "train-branches": "train_branches",
    "bench": "bench",
    "serve": "serve",
    "bench-serve": "bench_serve",
    "export-triton": "export_triton",
    "bench-gallery": "bench_gallery",
    "bench-cpp": "bench_cpp",
    "keys": "keys",
    "bench-shared-gallery": "bench_shared_gallery",
}

log = logging.getLogger("btnet_edge")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="btnet-edge", description="Multi-resolution face recognition (BTNet) for the edge.")
    parser.add_argument("--version", action="version", version=f"btnet-edge {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in SUBCOMMANDS.items():
        module = importlib.import_module(f".{module_name}", __package__)
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not args.command:
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except BtnetError as exc:
        if args.verbose:
            log.exception("failed")
        print(f"btnet-edge {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # output piped into `head` and closed: not an error of ours
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"btnet-edge {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a file the user named: missing, unreadable, full disk
        if args.verbose:
            log.exception("failed")
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"btnet-edge {args.command}: error: {exc.strerror or exc}{where}; check the path, its permissions "
              "and the free space", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug of ours: one line, the traceback with --verbose
        if args.verbose:
            log.exception("failed")
        print(f"btnet-edge {args.command}: internal error: {type(exc).__name__}: {exc}; rerun with --verbose for "
              "the traceback and report it", file=sys.stderr)
        return 70


if __name__ == "__main__":  # python -m btnet_edge.cli.main
    sys.exit(main())
