"""Options and positionals in any order, for every subcommand (a new subcommand is covered automatically).

The command lines are made from the real parser: every positional, every required
option, one option taking a value, one flag and one option taking several values, each
with a value its type accepts. The same words typed options first, options last and with
the options between the positionals must parse to the same namespace.
"""

from __future__ import annotations

import argparse
import logging

import pytest

from btnet_edge.cli.main import SUBCOMMANDS, build_parser, main

PARSER = build_parser()
CANDIDATES = ("1", "7,14", "0.5", "x.jpg", "14=x.pt", "127.5,127.5,127.5")


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def _subparser(name: str) -> argparse.ArgumentParser:
    """The parser of ``name``: a subcommand (``info``) or a nested one (``keys new``)."""
    parser = PARSER
    for word in name.split():
        parser = _subcommands(parser)[word]
    return parser


def command_names() -> list[str]:
    """Every subcommand, nested ones expanded (``keys`` -> ``keys list``, ``keys new``, ``keys revoke``)."""
    names = []
    for name in sorted(SUBCOMMANDS):
        parser = _subparser(name)
        if any(isinstance(a, argparse._SubParsersAction) for a in parser._actions):
            names.extend(f"{name} {nested}" for nested in sorted(_subcommands(parser)))
        else:
            names.append(name)
    return names


def _value(action: argparse.Action) -> str:
    if action.choices:
        return str(next(iter(action.choices)))
    for text in CANDIDATES:
        try:
            if action.type is None or action.type(text) is not None:
                return text
        except Exception:
            continue
    raise AssertionError(f"no candidate value fits {action.option_strings or action.dest}")


def _words(action: argparse.Action, tag: str) -> list[str]:
    count = {None: 1, "?": 1, "+": 2, "*": 2}.get(action.nargs, action.nargs)
    value = _value(action)
    if not action.option_strings and value == "x.jpg":
        return [f"{tag}{i}.jpg" for i in range(count)]
    return [value] * count


def command_parts(name: str) -> tuple[list[list[str]], list[list[str]], list[list[str]]]:
    """(positionals, single-valued options and flags, options taking several values) for subcommand ``name``."""
    parser = _subparser(name)
    excluded: set[argparse.Action] = set()
    positionals, singles, lists = [], [], []
    picked = {"value": False, "flag": False, "list": False}
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or action.dest == "verbose":
            continue
        if not action.option_strings:
            positionals.append(_words(action, action.dest))
            continue
        if action in excluded:
            continue
        kind = "flag" if action.nargs == 0 else "list" if action.nargs in ("+", "*") else "value"
        if not action.required and (picked[kind] or action.nargs == "?"):
            continue
        picked[kind] = True
        for group in parser._mutually_exclusive_groups:
            if action in group._group_actions:
                excluded.update(group._group_actions)
        flag = action.option_strings[-1]
        if kind == "flag":
            singles.append([flag])
        elif kind == "list":
            lists.append([flag, *_words(action, flag.strip("-"))])
        else:
            singles.append([flag, *_words(action, flag.strip("-"))])
    return positionals, singles, lists


def _flat(parts: list[list[str]]) -> list[str]:
    return [word for part in parts for word in part]


@pytest.mark.parametrize("name", command_names())
def test_options_first_last_and_between_parse_the_same(name):
    positionals, singles, lists = command_parts(name)
    assert singles or lists, f"{name}: no option to move"
    # an option taking several values takes every value up to the next option: end it with one, or with --
    first = [*_flat(lists), *_flat(singles), *(["--"] if lists and not singles else []), *_flat(positionals)]
    last = [*_flat(positionals), *_flat(singles), *_flat(lists)]
    between = [*_flat(positionals[:1]), *_flat(singles), *_flat(lists), *_flat(positionals[1:])]
    parsed = [PARSER.parse_args([*name.split(), *words]) for words in (first, last, between)]
    assert parsed[0] == parsed[1] == parsed[2], (first, last, between)
    actions = [a for a in _subparser(name)._actions if not a.option_strings]
    for action, typed in zip(actions, positionals):
        got = getattr(parsed[0], action.dest)
        assert ([str(v) for v in got] if isinstance(got, list) else [str(got)]) == typed


def test_every_subcommand_has_positionals_to_move_or_says_why():
    """A subcommand with no positional cannot show the trap; the others all have one."""
    without = sorted(name for name in command_names() if not command_parts(name)[0])
    assert without == ["bench-gallery", "eval-detect", "export", "keys list"]


def test_the_readme_enroll_line_parses():
    args = PARSER.parse_args(["enroll", "packages/mfn", "--gallery", "people.db", "--name", "obama", "photos/obama/"])
    assert (str(args.package), str(args.gallery), args.name, args.images) == (
        "packages/mfn", "people.db", "obama", ["photos/obama/"])


def test_a_list_option_before_the_positionals_gets_a_hint(capsys):
    with pytest.raises(SystemExit) as exc:
        PARSER.parse_args(["bench", "--frames", "a.jpg", "b.jpg", "packages/mfn"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "btnet-edge bench: error: the following arguments are required: package" in err
    assert "--frames takes every value up to the next option" in err
    args = PARSER.parse_args(["bench", "--frames", "a.jpg", "b.jpg", "--", "packages/mfn"])
    assert (args.frames, str(args.package)) == (["a.jpg", "b.jpg"], "packages/mfn")


def test_unknown_option_is_refused_by_the_subcommand(capsys):
    with pytest.raises(SystemExit):
        PARSER.parse_args(["info", "packages/mfn", "--bogus"])
    assert "btnet-edge info: error: unrecognized arguments: --bogus" in capsys.readouterr().err


@pytest.mark.parametrize("words", [["-v", "info", "p"], ["info", "p", "-v"], ["info", "--verbose", "p"],
                                   ["keys", "new", "cam", "--file", "k.json", "-v"],
                                   ["-v", "keys", "list", "--file", "k"]])
def test_verbose_before_or_after_the_subcommand(words):
    assert PARSER.parse_args(words).verbose is True
    assert PARSER.parse_args(["info", "p"]).verbose is False
    assert PARSER.parse_args(["keys", "list", "--file", "k"]).verbose is False


def test_verbose_after_the_subcommand_shows_the_traceback(tmp_path, caplog, capsys):
    with caplog.at_level(logging.DEBUG, logger="btnet_edge"):
        assert main(["info", str(tmp_path / "nothere"), "--verbose"]) != 0
    assert any(r.exc_info for r in caplog.records), "no traceback logged"
    assert "btnet-edge info: error:" in capsys.readouterr().err


def test_every_gallery_option_takes_a_postgresql_url():
    """`--gallery postgresql://...` is kept as typed wherever a gallery is named (a Path would fold '//')."""
    url = "postgresql://btnet@db.example.org/faces"
    named = [name for name in command_names() if "--gallery" in _subparser(name)._option_string_actions]
    assert {"enroll", "run", "serve", "bench-serve"} <= set(named)
    for name in named:
        positionals, singles, lists = command_parts(name)
        singles = [part for part in singles if part[0] != "--gallery"]
        args = PARSER.parse_args([*name.split(), *_flat(positionals), *_flat(singles), *_flat(lists), "--gallery", url])
        assert args.gallery == url, name
