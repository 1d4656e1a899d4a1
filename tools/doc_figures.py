#!/usr/bin/env python3
"""Rewrite the figures the docs quote from the commands that print them.

A figures region in README.md or docs/*.md names its command; the lines between the two
comments are that command's output (run from the repository root), never typed by hand:

    <!-- figures: python tools/bad_inputs.py --markdown -->
    | bad inputs tried | handled cleanly | files lost |
    ...
    <!-- /figures -->

    python tools/doc_figures.py                      # every region of every doc
    python tools/doc_figures.py docs/reliability.md  # the regions of one file
    python tools/doc_figures.py --check              # list stale regions, write nothing (exit 1 if any)
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REGION = re.compile(r"^(<!-- figures: (?P<command>[^\n]+?) -->\n)(?P<body>.*?)(^<!-- /figures -->)", re.S | re.M)


def regions(text: str) -> list[re.Match]:
    return list(REGION.finditer(text))


def render(command: str) -> str:
    done = subprocess.run(command, shell=True, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"figures command failed ({done.returncode}): {command}\n{done.stderr[-2000:]}")
    return done.stdout.rstrip("\n") + "\n"


def refresh(path: Path, check: bool) -> list[str]:
    """The commands of ``path`` whose region was stale (rewritten unless ``check``)."""
    text = path.read_text()
    stale, out, last = [], [], 0
    for match in regions(text):
        body = render(match.group("command"))
        if body != match.group("body"):
            stale.append(match.group("command"))
        out += [text[last:match.start("body")], body]
        last = match.end("body")
    out.append(text[last:])
    if stale and not check:
        path.write_text("".join(out))
    return stale


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, help="markdown files (default: README.md and docs/*.md)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a region is stale")
    args = parser.parse_args(argv)
    files = args.files or [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    stale = {str(f): refresh(f, args.check) for f in files}
    for name, commands in stale.items():
        for command in commands:
            print(f"{name}: {'stale' if args.check else 'rewrote'}: {command}")
    return 1 if args.check and any(stale.values()) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
