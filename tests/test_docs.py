"""Every fenced shell and Python block of README.md and docs/*.md runs against the fixtures, or is marked and checked.

How (docs/docs-test.md says the same for writers of docs):

- Each shell block runs line by line (``bash -o pipefail -c LINE``) in a fresh folder under
  the test's temp folder, never in the repository; Python blocks of one file run in order in
  one interpreter (a later block may use a name an earlier one made, as a reader would).
- The placeholder paths the docs use are made there as links to what the test built once:
  ``PLACEHOLDERS`` below (``packages/mfn``, ``photos/obama/``, ``frame.jpg``, ``clip.mp4``,
  ``people.db``, ...). A placeholder a line writes (the value of ``--out``, ``--json``, or
  ``enroll --gallery``) is not made: the block makes it. ``../shared/fixtures`` becomes the
  fixtures folder and ``/tmp/`` a ``tmp/`` folder of the block's own.
- ``btnet-edge`` is the real CLI, behind a shim that runs each distinct ``export`` once per test
  session (same options, same inputs: export is deterministic) and copies that package for
  later identical lines: the README's main job exports an r50 once, and every block that
  uses ``packages/r50`` gets that package.
- A block marked ``<!-- docs-test: needs WORD, ... -->`` (or a line ``# [needs: WORD]``, or a
  ``synopsis`` block) is not run: it is checked for syntax, and every ``btnet-edge``
  subcommand, script and flag it names must exist (tests/docs_blocks.py). ``long`` lines
  run when ``BTNET_DOCS_LONG=1``. ``pip install`` lines are checked, not run.
- A doc line that fails fails the test, naming the file and line.

To extend: a new placeholder is one entry of ``PLACEHOLDERS`` (a fixture path, or a builder
taking the session); a new need is one entry of ``tests.docs_blocks.NEEDS`` and a line in
docs/docs-test.md.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import FIXTURES
from tests.docs_blocks import (
    NEEDS,
    OUTPUT_DESTS,
    ROOT,
    all_blocks,
    check_block,
    commands,
    extras,
    inventory,
    markdown,
)

LONG = os.environ.get("BTNET_DOCS_LONG") == "1"
BLOCKS = all_blocks()
RUN = [b for b in BLOCKS if b.kind == "shell" and b.runnable_lines(LONG)]
PEOPLE = FIXTURES / "images" / "people"
SCENES = FIXTURES / "images" / "scenes"
pytestmark = pytest.mark.skipif(not PEOPLE.is_dir(), reason=f"fixtures absent: {PEOPLE} (set BTNET_FIXTURES)")


def _mfn_export(session: DocsSession, out: Path) -> None:
    session.cli("export", "--arch", "mobilefacenet", "--trunk", str(FIXTURES / "models" / "mobilefacenet.pt"),
                "--out", str(out), "--fused")  # the README's line: the shim keeps it for that line too


def _r50_export(session: DocsSession, out: Path) -> None:
    session.cli("export", "--arch", "r50", "--out", str(out), "--force")  # the README's main job


def _people_db(session: DocsSession, out: Path) -> None:
    session.cli("enroll", str(session.get("packages/mfn")), "--gallery", str(out), "--people", str(PEOPLE),
                "--quiet")


def _clip(session: DocsSession, out: Path) -> None:
    """16 frames (8 fps) panning across two fixture photos: faces to detect, track and name."""
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), 8, (640, 360))
    for name in ("two_people.jpg", "obama_and_biden.jpg"):
        image = cv2.imread(str(SCENES / name))
        scale = 640 / image.shape[1] * 1.2
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        for i in range(8):
            x = int((image.shape[1] - 640) * i / 7)
            y = max(0, (image.shape[0] - 360) // 2)
            frame = np.zeros((360, 640, 3), np.uint8)
            crop = image[y:y + 360, x:x + 640]
            frame[:crop.shape[0], :crop.shape[1]] = crop
            writer.write(frame)
    writer.release()


def _frames(session: DocsSession, out: Path) -> None:
    out.mkdir()
    for name in ("t1.jpg", "obama_and_biden.jpg"):
        (out / name).symlink_to(SCENES / name)


def _split_people(which: int):
    """gallery/ (the first photo of three people) or probes/ (their other photos, mated, and every photo of the
    others, unmated), for eval-ident's open-set figures."""

    def build(session: DocsSession, out: Path) -> None:
        people = sorted(p for p in PEOPLE.iterdir() if p.is_dir())
        for rank, person in enumerate(people):
            photos = sorted(person.iterdir())
            chosen = (photos[:1] if rank < 3 else []) if which == 0 else (photos[1:] if rank < 3 else photos)
            for photo in chosen:
                (out / person.name).mkdir(parents=True, exist_ok=True)
                (out / person.name / photo.name).symlink_to(photo)

    return build


# placeholder the docs use -> a fixture path, or a builder(session, out) run once per session
PLACEHOLDERS = {
    "packages/mfn": _mfn_export,
    "packages/r50": _r50_export,
    "tmp/r50": _r50_export,
    "people.db": _people_db,
    "clip.mp4": _clip,
    "frames": _frames,
    "gallery": _split_people(0),
    "probes": _split_people(1),
    "photos": PEOPLE,
    "people": PEOPLE,
    "scenes": SCENES,
    "unlabeled_faces": FIXTURES / "images" / "unlabeled",
    "frame.jpg": SCENES / "t1.jpg",
    "t1.jpg": SCENES / "t1.jpg",
    "mobilefacenet.pt": FIXTURES / "models" / "mobilefacenet.pt",
    "mobilefacenet.onnx": FIXTURES / "models" / "mobilefacenet.onnx",
    "scrfd_500m_kps.onnx": FIXTURES / "models" / "scrfd_500m_kps.onnx",
    "tools": ROOT / "tools",
}

SHIM = '''#!{python}
"""btnet-edge for the docs test: the real CLI; each distinct export runs once per session, then is copied."""
import hashlib, json, os, shutil, sys
from pathlib import Path
sys.path.insert(0, {root!r})
from btnet_edge.cli.main import main

argv = sys.argv[1:]
cache = os.environ.get("BTNET_DOCS_EXPORT_CACHE")
if cache and argv[:1] == ["export"] and "--out" in argv:
    out = Path(argv[argv.index("--out") + 1])
    force = "--force" in argv
    key_words = []
    skip = False
    for i, word in enumerate(argv):
        if skip:
            skip = False
            continue
        if word == "--out":
            skip = True
            continue
        if word in ("--force", "--quiet"):
            continue
        path = Path(word.split("=", 1)[-1])
        key_words.append(os.path.realpath(path) if os.path.exists(path) else word)
    key = hashlib.sha256(json.dumps(key_words).encode()).hexdigest()[:16]
    kept = Path(cache) / key
    if kept.is_dir() and (force or not out.exists()):
        if out.exists():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(kept, out)
        print(f"docs test: {{' '.join(argv)}}: the package this export made earlier in the session", file=sys.stderr)
        sys.exit(0)
    code = main(argv)
    if code == 0 and out.is_dir() and not kept.exists():
        shutil.copytree(out, Path(cache) / (key + ".tmp"))
        os.replace(Path(cache) / (key + ".tmp"), kept)
    sys.exit(code)
sys.exit(main(argv))
'''


class DocsSession:
    """The placeholders' artefacts (built on first use) and the environment every block runs in."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.made: dict[str, Path] = {}
        self.bin = base / "bin"
        self.bin.mkdir()
        shim = self.bin / "btnet-edge"
        shim.write_text(SHIM.format(python=sys.executable, root=str(ROOT)))
        shim.chmod(0o755)
        for name in ("python", "python3"):
            (self.bin / name).symlink_to(sys.executable)
        (base / "exports").mkdir()
        (base / "made").mkdir()
        self.env = {**os.environ, "PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(ROOT),
                    "BTNET_DOCS_EXPORT_CACHE": str(base / "exports"), "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
        self.count = 0
        self.folders: dict[str, Path] = {}  # block -> the folder it ran in (for a block that continues it)

    def cli(self, *argv: str) -> None:
        done = subprocess.run([str(self.bin / "btnet-edge"), *argv], env=self.env, capture_output=True, text=True,
                              timeout=900)
        assert done.returncode == 0, f"building a placeholder: btnet-edge {' '.join(argv)}\n{done.stderr[-3000:]}"

    def get(self, name: str) -> Path:
        if name not in self.made:
            source = PLACEHOLDERS[name]
            if isinstance(source, Path):
                self.made[name] = source
            else:
                out = self.base / "made" / name.replace("/", "_")
                source(self, out)
                self.made[name] = out
        return self.made[name]

    def workspace(self, text: str, produced: set[str]) -> Path:
        """A fresh folder holding the placeholders ``text`` mentions (links), except those it makes itself."""
        self.count += 1
        folder = self.base / f"block{self.count}"
        (folder / "tmp").mkdir(parents=True)
        for name in PLACEHOLDERS:
            if name in produced or not mentions(text, name):
                continue
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                target.symlink_to(self.get(name))
        return folder


def mentions(text: str, name: str) -> bool:
    """Whether ``name`` appears as a path (or the start of one) in ``text``."""
    return re.search(rf"(?<![\w./-]){re.escape(name)}(?![\w.-])", text) is not None


# the docs' PostgreSQL gallery: a database of its own on the session's real server (tests/conftest.py)
EXAMPLE_POSTGRES = "postgresql://btnet@db.example.org/faces"


def substitute(text: str, postgres_url: str | None = None) -> str:
    text = text.replace("../shared/fixtures", str(FIXTURES)).replace("/tmp/", "tmp/")
    return text.replace(EXAMPLE_POSTGRES, postgres_url) if postgres_url else text


def docs_postgres_url(request) -> str:
    """The docs' one PostgreSQL database (made on first use; its lines build on each other)."""
    import psycopg

    server = request.getfixturevalue("postgres_server")
    url = server.url.rsplit("/", 1)[0] + "/docs_faces"
    with psycopg.connect(server.url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = 'docs_faces'").fetchone() is None:
            conn.execute("CREATE DATABASE docs_faces")
    return url


def produced_by(line: str) -> set[str]:
    """Placeholders a line writes: the values of output options, and ``enroll --gallery``."""
    from btnet_edge.cli.main import build_parser

    subs = next(a for a in build_parser()._actions if hasattr(a, "choices") and isinstance(a.choices, dict)).choices
    made = set()
    for argv in commands(line):
        if Path(argv[0]).name != "btnet-edge" or len(argv) < 2 or argv[1] not in subs:
            continue
        actions = subs[argv[1]]._option_string_actions
        for i, word in enumerate(argv[:-1]):
            action = actions.get(word)
            if action is not None and action.nargs != 0 and (action.dest in OUTPUT_DESTS or (
                    argv[1] == "enroll" and action.dest == "gallery")):
                made.add(argv[i + 1].rstrip("/"))
    return {name for name in PLACEHOLDERS for m in made if m == name or m.startswith(name + "/")}


@pytest.fixture(scope="session")
def docs(tmp_path_factory) -> DocsSession:
    return DocsSession(tmp_path_factory.mktemp("docs"))


def run_shell_block(block, docs, request) -> Path:
    """Run ``block`` line by line; a ``continues`` block runs in its predecessor's folder (run first if need be)."""
    if block.where in docs.folders:
        return docs.folders[block.where]
    lines = block.runnable_lines(LONG)
    postgres = docs_postgres_url(request) if any(EXAMPLE_POSTGRES in ln.text for ln in lines) else None
    text = "\n".join(substitute(ln.text, postgres) for ln in lines)
    if block.continues:
        earlier = [b for b in RUN if b.path == block.path and b.line < block.line]
        assert earlier, f"{block.where}: marked 'continues' but no shell block runs before it in {block.path}"
        folder = run_shell_block(earlier[-1], docs, request)
    else:
        produced = set().union(*(produced_by(substitute(ln.text, postgres)) for ln in lines))
        folder = docs.workspace(text, produced)
    for line in lines:
        done = subprocess.run(["bash", "-o", "pipefail", "-c", substitute(line.text, postgres)], cwd=folder,
                              env=docs.env, capture_output=True, text=True, timeout=1200)
        assert done.returncode == 0, (f"{block.path}:{line.number} failed (exit {done.returncode}):\n  {line.text}\n"
                                      f"{done.stderr[-4000:]}")
    docs.folders[block.where] = folder
    return folder


@pytest.mark.parametrize("block", RUN, ids=[b.where for b in RUN])
def test_shell_block_runs(block, docs, request):
    run_shell_block(block, docs, request)


PY_FILES = sorted({b.path for b in BLOCKS if b.kind == "python" and b.runnable_lines(LONG)})


@pytest.mark.parametrize("path", PY_FILES)
def test_python_blocks_run(path, docs):
    blocks = [b for b in BLOCKS if b.path == path and b.kind == "python" and b.runnable_lines(LONG)]
    folder = docs.workspace("\n".join(substitute(b.text) for b in blocks), set())
    program = textwrap.dedent("""
        import json, sys, traceback
        namespace = {"__name__": "__docs__"}
        for where, code in json.load(sys.stdin):
            try:
                exec(compile(code, where, "exec"), namespace)
            except BaseException:
                print(f"{where} failed:", file=sys.stderr)
                traceback.print_exc()
                sys.exit(1)
    """)
    payload = json.dumps([[b.where, substitute(b.text)] for b in blocks])
    done = subprocess.run([sys.executable, "-c", program], input=payload, cwd=folder, env=docs.env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.kind != "other"], ids=lambda b: b.where)
def test_every_block_is_well_formed(block):
    """Syntax, subcommands, scripts and flags, of run and marked blocks alike."""
    assert check_block(block) == []


def test_the_readme_test_command_is_what_ci_runs():
    tests = next(b for b in BLOCKS if b.path == "README.md" and "pytest" in b.text)
    assert "ci" in tests.needs
    assert tests.text.strip() in (ROOT / ".ci" / "run").read_text()


def test_the_readme_main_job_installs_only_what_it_needs():
    first = next(b for b in BLOCKS if b.path == "README.md" and b.kind == "shell")
    extra = re.search(r'pip install -e "\.\[([\w-]+)\]"', first.text).group(1)
    needs = extras()[extra]
    assert any(r.replace(" ", "").startswith("torch==") for r in needs), "torch pinned (an unpinned torch is CUDA)"
    heavy = {"ray", "tritonclient", "pytest", "tensorrt-rtx-cu12", "cuda-python"}
    assert not {re.split(r"[<>=\[; ]", r)[0] for r in needs} & heavy
    assert first.runnable_lines() and "btnet-edge bench" in first.text


def test_needs_and_placeholders_are_documented():
    guide = (ROOT / "docs" / "docs-test.md").read_text()
    assert [w for w in NEEDS if f"`{w}`" not in guide] == []
    assert [p for p in PLACEHOLDERS if f"`{p}" not in guide] == []
    assert f"`{EXAMPLE_POSTGRES}`" in guide


def test_the_docs_test_figures_are_current():
    """docs/docs-test.md quotes the per-file table; `python tools/doc_figures.py` rewrites it."""
    guide = (ROOT / "docs" / "docs-test.md").read_text()
    assert markdown(inventory(BLOCKS)) in guide, "stale table: run python tools/doc_figures.py docs/docs-test.md"


def test_every_figures_region_names_a_real_command():
    """`<!-- figures: COMMAND -->` regions: the command's script, subcommand and flags exist."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("doc_figures", ROOT / "tools" / "doc_figures.py")
    figures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(figures)
    from tests.docs_blocks import check_command

    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for match in figures.regions(path.read_text()):
            argv = shlex.split(match.group("command"))
            found.append(argv)
            if argv[:2] != ["python", "-m"]:
                assert check_command(argv) == [], match.group("command")
    assert ["python", "tools/bad_inputs.py", "--markdown"] in found
