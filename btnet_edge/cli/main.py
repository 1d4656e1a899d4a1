"""``btnet-edge`` command line: one module per subcommand, errors become one line and an exit code."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

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
    "compare": "compare",
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

VERBOSE_FLAGS = ("-v", "--verbose")
VERBOSE_HELP = "debug logging and full tracebacks on errors"


class SubcommandParser(argparse.ArgumentParser):
    """A subcommand's parser: options and positionals in any order, and errors that say how to fix the order.

    Positionals typed after options (``enroll PKG --gallery G --name N photos/``) are
    collected by argparse's intermixed parsing (:class:`IntermixedSubparsers`). What no
    parser shape can change: an option taking several values (``--frames A B``) takes
    every value up to the next option, so positionals typed right after it are its values.
    """

    typed: Sequence[str] = ()

    def error(self, message: str):  # type: ignore[override]  # argparse: prints usage and exits 2
        greedy = [flag for action in self._actions if action.option_strings and action.nargs in ("+", "*", "?")
                  for flag in action.option_strings if flag in self.typed]
        if greedy and "arguments are required" in message:
            message += (f" ({greedy[0]} takes every value up to the next option: type the positionals before "
                        f"{greedy[0]}, or end its values with --)")
        super().error(message)

    def add_subparsers(self, **kwargs):  # type: ignore[override]
        """Nested subcommands (``keys new``) get the same any-order parsing as the top level."""
        kwargs.setdefault("action", IntermixedSubparsers)
        kwargs.setdefault("parser_class", SubcommandParser)
        return super().add_subparsers(**kwargs)


class IntermixedSubparsers(argparse._SubParsersAction):
    """Subcommands parsed with ``parse_known_intermixed_args``: positionals may follow options.

    ``ArgumentParser.parse_intermixed_args`` refuses a parser with subcommands (TypeError,
    Python 3.9 to 3.14), and argparse parses a subcommand with plain ``parse_known_args``,
    where an ``nargs="*"`` positional gets nothing once an option follows the first
    positional. So each subcommand's own parser runs intermixed (tests/test_cli_order.py).
    """

    def __call__(self, parser, namespace, values, option_string=None):
        name, arg_strings = values[0], list(values[1:])
        sub = self._name_parser_map[name]  # argparse has already refused an unknown name
        setattr(namespace, self.dest, name)
        sub.typed = arg_strings
        # argparse refuses intermixed parsing of a parser with its own subcommands (``keys new``): that
        # parser parses plainly, and its nested subcommand's parser runs intermixed through this action
        nested = any(isinstance(action, argparse._SubParsersAction) for action in sub._actions)
        parse = sub.parse_known_args if nested else sub.parse_known_intermixed_args
        subnamespace, unknown = parse(arg_strings, None)
        for key, value in vars(subnamespace).items():
            setattr(namespace, key, value)
        if unknown:
            sub.error(f"unrecognized arguments: {' '.join(unknown)}")


def _parser_and_nested(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """A subcommand's parser and the parsers of its own subcommands (``keys`` -> ``keys new``, ...)."""
    nested = [sub for action in parser._actions if isinstance(action, argparse._SubParsersAction)
              for sub in dict.fromkeys(action.choices.values())]
    return [parser, *nested]


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="btnet-edge",
                                     description="Multi-resolution face recognition (BTNet) for the edge.")
    parser.add_argument("--version", action="version", version=f"btnet-edge {__version__}")
    parser.add_argument(*VERBOSE_FLAGS, action="store_true", help=VERBOSE_HELP)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", action=IntermixedSubparsers,
                                       parser_class=SubcommandParser)
    for name, module_name in SUBCOMMANDS.items():
        module = importlib.import_module(f".{module_name}", __package__)
        module.add_parser(subparsers)
        # --verbose after the subcommand (and after a nested one: `keys new`) too; SUPPRESS keeps one typed before
        for sub in _parser_and_nested(subparsers.choices[name]):
            sub.add_argument(*VERBOSE_FLAGS, action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
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
