"""The fenced shell and Python blocks of README.md and docs/*.md: parsed, marked, and checked against the real parser.

Used by tests/test_docs.py (which runs them) and as a figures command:

    python -m tests.docs_blocks --markdown      # blocks run / checked / marked, per file

Markers (documented in docs/docs-test.md; an unknown word is an error, so a typo fails):

- before a block, an HTML comment naming what the whole block needs::

      <!-- docs-test: needs gpu, tensorrt -->

  or ``<!-- docs-test: synopsis -->`` for a usage synopsis (``[--flag A|B]``, ``PKG``);
- on one line of a shell block, a trailing comment holding ``[needs: WORD, ...]``::

      btnet-edge run packages/mfn 0 --max-frames 300      # camera 0 [needs: camera]

A marked line is not run; it is checked: shell syntax (``bash -n``), and every
``btnet-edge`` subcommand, tool script and flag it names must exist in the real
parser (or, for the C++ app, in its source). ``pip install`` lines are checked, not run
(they would change the test's environment): the extras they name must exist.
"""

from __future__ import annotations

import argparse
import ast
import re
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = ("README.md", "docs/*.md")
SHELL = {"bash", "sh", "shell", "console"}
PYTHON = {"python", "py", "python3"}

# What a block or line may say it needs (what CI lacks, or what must not run inside a test).
NEEDS = {
    "gpu": "an NVIDIA GPU",
    "tensorrt": "TensorRT itself (JetPack or NVIDIA's index; not installable from PyPI)",
    "jetson": "a Jetson board with JetPack",
    "wider-face": "the WIDER FACE dataset (a download)",
    "ray-cluster": "several machines running Ray",
    "docker": "Docker and NVIDIA's Triton image",
    "root": "root, to install system packages (tools/setup_dev.sh does it in CI)",
    "network": "the internet (PyPI, apt, npm)",
    "camera": "a camera",
    "server": "a server that runs until stopped (tests/test_serve.py starts one)",
    "insightface-models": "insightface's model packs (buffalo_l, antelopev2)",
    "peer": "insightface itself (the peer extra; docs/detection.md says how it installs here)",
    "authors-checkpoints": "the BTNet authors' checkpoints (or an insightface backbone.pth)",
    "cpp-build": "the C++ build, from the repository root (tests/test_cpp.py builds and runs it)",
    "ci": "is the test run itself (.ci/run runs it)",
    "long": "minutes of CPU, over the docs test's budget (runs with BTNET_DOCS_LONG=1)",
    "ms1mv3": "insightface's MS1MV3 (ms1m-retinaface-t1: train.rec/.idx, lfw.bin, cfp_fp.bin, agedb_30.bin)",
}
_PIP_PREFIX = re.compile(r"^\s*(?:python3? -m )?pip install [^&|;]*&&\s*")
_BLOCK_MARKER = re.compile(r"<!--\s*docs-test:\s*(.*?)\s*-->")
_LINE_MARKER = re.compile(r"\[needs:\s*([^\]]*)\]")
_FENCE = re.compile(r"^```([\w+-]*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
# dests of options whose value is a file or folder the command writes (a placeholder there is made, not given)
OUTPUT_DESTS = {"out", "json", "plot", "draw", "jsonl", "save_clip", "save", "write_config", "db", "checkpoints"}


@dataclass
class Line:
    """One command line of a shell block (continuations joined), or a whole Python block."""

    text: str
    number: int  # line in the markdown file
    needs: tuple[str, ...] = ()

    @property
    def marked(self) -> bool:
        return bool(self.needs)


@dataclass
class Block:
    path: str  # relative to the repository root
    line: int  # the opening fence's line
    lang: str
    text: str
    needs: tuple[str, ...] = ()
    synopsis: bool = False
    continues: bool = False  # runs in the folder of the file's previous shell block (its files are this one's input)
    lines: list[Line] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return "shell" if self.lang in SHELL else "python" if self.lang in PYTHON else "other"

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"

    def runnable_lines(self, long: bool = False) -> list[Line]:
        """The lines run in CI: not marked (or only ``long``, when ``long`` runs), with a leading
        ``pip install ... &&`` dropped (checked, not run); a line that is only a pip install is not run."""
        if self.synopsis or self.kind == "other" or not _runs(self.needs, long):
            return []
        if self.kind == "python":
            return self.lines
        out = []
        for line in self.lines:
            rest = _PIP_PREFIX.sub("", line.text, count=1)
            if _runs(line.needs, long) and rest.strip() and not _is_pip_install(rest):
                out.append(Line(rest, line.number, line.needs))
        return out


def _runs(needs: tuple[str, ...], long: bool) -> bool:
    return not needs or (long and set(needs) == {"long"})


def _words(text: str, where: str) -> tuple[str, ...]:
    words = tuple(w.strip() for w in text.split(",") if w.strip())
    unknown = [w for w in words if w not in NEEDS]
    if unknown:
        raise ValueError(f"{where}: unknown docs-test need {unknown}; known: {', '.join(NEEDS)}")
    return words


def parse_blocks(path: Path) -> list[Block]:
    """Every fenced block of one markdown file, with its markers."""
    text = path.read_text()
    rel = str(path.relative_to(ROOT))
    blocks = []
    for match in _FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        before = text[:match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        block = Block(rel, line, match.group(1).lower(), match.group(2))
        marker = _BLOCK_MARKER.search(before)
        if marker:
            body = marker.group(1)
            if body == "synopsis":
                block.synopsis = True
            elif body == "continues":
                block.continues = True
            elif body.startswith("needs "):
                block.needs = _words(body[len("needs "):], block.where)
            else:
                raise ValueError(f"{block.where}: docs-test marker should be 'needs WORD, ...', 'synopsis' or "
                                 f"'continues', "
                                 f"found {body!r}")
        block.lines = _split_lines(block) if block.kind == "shell" else [Line(block.text, line + 1)]
        blocks.append(block)
    return blocks


def _split_lines(block: Block) -> list[Line]:
    lines, pending, start = [], "", 0
    for offset, raw in enumerate(block.text.splitlines(), start=1):
        if not pending:
            start = block.line + offset
        pending += raw
        if raw.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        if pending.strip() and not pending.strip().startswith("#"):
            marker = _LINE_MARKER.search(pending.split("#", 1)[1]) if "#" in pending else None
            needs = _words(marker.group(1), f"{block.path}:{start}") if marker else ()
            lines.append(Line(pending, start, needs))
        pending = ""
    return lines


def all_blocks(root: Path = ROOT) -> list[Block]:
    files = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    return [b for f in files for b in parse_blocks(f)]


# ---------------------------------------------------------------------------------------------------- checks


def _is_pip_install(text: str) -> bool:
    return bool(re.match(r"\s*(python3? -m )?pip install\b", text))


def commands(text: str) -> list[list[str]]:
    """The simple commands of a shell line (split at &&, ||, ;, |), comments dropped, as argv lists."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    out, current = [], []
    for token in lexer:
        if token and set(token) <= set(";&|"):
            if current:
                out.append(current)
            current = []
        else:
            current.append(token)
    if current:
        out.append(current)
    return out


def _synopsis_words(argv: list[str]) -> list[str]:
    words = []
    for token in argv:
        for part in token.replace("[", " ").replace("]", " ").replace("|", " ").split():
            words.append(part)
    return words


def _parser():
    from btnet_edge.cli.main import build_parser

    return build_parser()


def _subparsers(parser) -> dict:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def _check_flags(flags: list[str], known: set[str], what: str) -> list[str]:
    problems = []
    for flag in flags:
        name = flag.split("=", 1)[0]
        if name not in known:
            problems.append(f"{what} has no option {name}")
    return problems


def _tool_subcommand(script: Path) -> str | None:
    """The btnet-edge subcommand a tools/ wrapper calls (``main(["build", *sys.argv[1:]])``), if it is one."""
    match = re.search(r'main\(\["([\w-]+)",\s*\*sys\.argv\[1:\]\]\)', script.read_text())
    return match.group(1) if match else None


def check_command(argv: list[str], synopsis: bool = False, made: frozenset[str] = frozenset()) -> list[str]:
    """What is wrong with one command's subcommand and flags (empty when they all exist). ``made``: folders an
    earlier line of the block wrote (a script inside one comes from there, not from the repository)."""
    if not argv:
        return []
    words = _synopsis_words(argv) if synopsis else argv
    flags = [w for w in words if w.startswith("-") and w not in ("-", "--") and not re.match(r"-\d", w)]
    program = Path(words[0]).name
    if program == "btnet-edge":
        subs = _subparsers(_parser())
        if len(words) < 2 or words[1] not in subs:
            return [f"btnet-edge has no subcommand {words[1] if len(words) > 1 else '(none)'}"]
        sub, name = subs[words[1]], f"btnet-edge {words[1]}"
        nested = _subparsers(sub) if any(isinstance(a, argparse._SubParsersAction) for a in sub._actions) else {}
        if nested:  # `keys new ...`: the nested subcommand's flags
            if len(words) < 3 or words[2] not in nested:
                return [f"{name} has no subcommand {words[2] if len(words) > 2 else '(none)'}"]
            sub, name = nested[words[2]], f"{name} {words[2]}"
        known = set(sub._option_string_actions) | {"-h", "--help", "-v", "--verbose", "--version"}
        return _check_flags([f for f in flags if f != words[1]], known, name)
    if program in ("python", "python3") and len(words) > 1 and words[1].endswith(".py"):
        script = ROOT / words[1]
        if Path(words[1]).parts[0] in made:
            return []
        if not script.is_file():
            return [f"no script {words[1]} in the repository"]
        sub = _tool_subcommand(script)
        if sub is not None:
            return check_command(["btnet-edge", sub, *words[2:]], synopsis)
        if "argparse" not in script.read_text():  # no parser to ask: "-h" could be taken as an argument
            return []
        with tempfile.TemporaryDirectory(prefix="btnet-docs-help-") as scratch:  # -h never writes in the repo
            help_text = subprocess.run([sys.executable, str(script), "-h"], capture_output=True, text=True,
                                       timeout=120, cwd=scratch).stdout
        return [f"{words[1]} has no option {f}" for f in flags if f.split("=", 1)[0] not in help_text]
    if program == "btnet-edge-run":
        source = (ROOT / "cpp" / "apps" / "btnet_edge_run.cpp").read_text()
        return [f"btnet-edge-run has no option {f}" for f in flags if f'"{f.split("=", 1)[0]}"' not in source]
    if program == "pip" or words[:3] == ["python3", "-m", "pip"] or words[:3] == ["python", "-m", "pip"]:
        return _check_pip(words)
    return []


def extras() -> dict[str, list[str]]:
    """The optional dependencies pyproject.toml declares."""
    text = (ROOT / "pyproject.toml").read_text()
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            section = text.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
            return {name: [] for name in re.findall(r"^([\w-]+)\s*=", section, re.M)}
    return tomllib.loads(text)["project"].get("optional-dependencies", {})


def _check_pip(words: list[str]) -> list[str]:
    """``pip install -e ".[a,b]"`` / ``"btnet-edge[a]"``: the extras must exist in pyproject.toml."""
    problems = []
    for word in words:
        match = re.fullmatch(r"(?:\.|btnet-edge|btnet_edge)\[([\w,-]+)\]", word)
        if match:
            problems += [f"pyproject.toml has no extra {e!r}" for e in match.group(1).split(",") if e not in extras()]
    return problems


def check_python(block: Block) -> list[str]:
    """Syntax, and every ``btnet_edge`` name the block imports exists."""
    try:
        tree = ast.parse(block.text)
    except SyntaxError as exc:
        return [f"{block.where}: Python syntax error: {exc}"]
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "btnet_edge":
            import importlib

            try:
                module = importlib.import_module(node.module)
            except ImportError as exc:
                problems.append(f"{block.where}: cannot import {node.module}: {exc}")
                continue
            problems += [f"{block.where}: {node.module} has no {a.name}" for a in node.names
                         if not hasattr(module, a.name)]
    return problems


def check_shell(block: Block) -> list[str]:
    """bash -n of the whole block, and the subcommands and flags of every line."""
    syntax = subprocess.run(["bash", "-n"], input=block.text, capture_output=True, text=True)
    problems = [f"{block.where}: shell syntax: {syntax.stderr.strip()}"] if syntax.returncode else []
    made: set[str] = set()
    for line in block.lines:
        try:
            argvs = commands(line.text)
        except ValueError as exc:
            problems.append(f"{block.path}:{line.number}: cannot split {line.text!r}: {exc}")
            continue
        for argv in argvs:
            problems += [f"{block.path}:{line.number}: {p}"
                         for p in check_command(argv, block.synopsis, frozenset(made))]
            made.update(Path(argv[i + 1]).parts[0] for i, w in enumerate(argv[:-1]) if w == "--out")
    return problems


def check_block(block: Block) -> list[str]:
    if block.kind == "python":
        return check_python(block)
    if block.kind == "shell":
        return check_shell(block)
    return []


# ---------------------------------------------------------------------------------------------------- figures


def inventory(blocks: list[Block], long: bool = False) -> dict[str, dict[str, int]]:
    """Per file: shell and Python blocks, how many run (at least one line), how many only checked, how many
    carry a marker; and the lines run and checked."""
    table: dict[str, dict[str, int]] = {}
    for block in blocks:
        if block.kind == "other":
            continue
        row = table.setdefault(block.path, {"blocks": 0, "run": 0, "checked": 0, "marked": 0, "lines run": 0,
                                            "lines checked": 0})
        runnable = block.runnable_lines(long)
        row["blocks"] += 1
        row["run" if runnable else "checked"] += 1
        row["marked"] += bool(block.needs or block.synopsis or any(ln.marked for ln in block.lines))
        row["lines run"] += len(runnable)
        row["lines checked"] += len(block.lines) - len(runnable)
    return table


def markdown(table: dict[str, dict[str, int]]) -> str:
    keys = ["blocks", "run", "checked", "marked", "lines run", "lines checked"]
    out = ["| file | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for path, row in table.items():
        out.append(f"| {path} | " + " | ".join(str(row[k]) for k in keys) + " |")
    totals = {k: sum(r[k] for r in table.values()) for k in keys}
    out.append("| **all** | " + " | ".join(str(totals[k]) for k in keys) + " |")
    return "\n".join(out)


if __name__ == "__main__":
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--markdown", action="store_true", help="the per-file table as markdown")
    args = cli.parse_args()
    print(markdown(inventory(all_blocks())))
