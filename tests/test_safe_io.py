"""Safe outputs: temp name + rename, write errors are errors, --force only replaces what is ours."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from btnet_edge.errors import OutputError
from btnet_edge.safe_io import (
    atomic_path,
    atomic_write_text,
    check_file_target,
    check_replaceable_folder,
    replace_folder,
    unique_path,
)

ROOT = Path(__file__).resolve().parents[1]


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out" / "results.json"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["results.json"]


def test_a_failure_mid_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "results.json"
    target.write_text("previous results")
    with pytest.raises(RuntimeError), atomic_path(target) as temp:
        temp.write_text("half")
        raise RuntimeError("crash while writing")
    assert target.read_text() == "previous results"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_a_full_disk_is_an_error_and_keeps_the_old_file(tmp_path):
    """A real write failure: the file size limit (RLIMIT_FSIZE) makes write() fail as a full disk does."""
    target = tmp_path / "results.json"
    target.write_text("previous results\n")
    script = textwrap.dedent(f"""
        import resource, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        from btnet_edge.errors import OutputError
        from btnet_edge.safe_io import atomic_write_text
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))
        try:
            atomic_write_text({str(target)!r}, "x" * 100000)
        except OutputError as exc:
            print(exc)
            sys.exit(3)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 3, result.stderr
    assert "cannot write" in result.stdout and "previous file there is unchanged" in result.stdout
    assert target.read_text() == "previous results\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_file_targets(tmp_path):
    with pytest.raises(OutputError, match="is a folder; give a file name"):
        check_file_target(tmp_path, "--json")
    existing = tmp_path / "a.png"
    existing.write_bytes(b"mine")
    with pytest.raises(OutputError, match="exists; choose another name or pass --force"):
        check_file_target(existing, "drawn image", force=False)
    assert check_file_target(existing, force=True) == existing


def test_force_replaces_only_our_folders_or_empty_ones(tmp_path, monkeypatch):
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "chapter1.tex").write_text("years of work")
    with pytest.raises(OutputError, match="not empty; choose another folder or pass --force"):
        check_replaceable_folder(thesis, False, "manifest.json", "--out")
    with pytest.raises(OutputError, match="was not made by btnet-edge, so --force will not replace it"):
        check_replaceable_folder(thesis, True, "manifest.json", "--out")
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "manifest.json").write_text("{}")
    check_replaceable_folder(package, True, "manifest.json", "--out")
    (tmp_path / "empty").mkdir()
    check_replaceable_folder(tmp_path / "empty", False, "manifest.json", "--out")
    monkeypatch.chdir(package)
    for folder in (package, tmp_path):  # the current folder and its parents, even if they look like ours
        with pytest.raises(OutputError, match="current folder or one of its parents"):
            check_replaceable_folder(folder, True, "manifest.json", "--out")
    weights = thesis / "model.pt"
    weights.write_bytes(b"w")
    monkeypatch.chdir(tmp_path / "empty")
    with pytest.raises(OutputError, match="holds the input"):
        check_replaceable_folder(thesis, True, "chapter1.tex", "--out", inputs=[weights])
    with pytest.raises(OutputError, match="is a file"):
        check_replaceable_folder(weights, True, "manifest.json", "--out")
    assert (thesis / "chapter1.tex").read_text() == "years of work"


def test_replace_folder_keeps_the_old_one_until_the_new_is_in_place(tmp_path):
    old, new = tmp_path / "pkg", tmp_path / ".staging"
    old.mkdir()
    (old / "manifest.json").write_text("old")
    new.mkdir()
    (new / "manifest.json").write_text("new")
    replace_folder(new, old)
    assert (old / "manifest.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]


def test_unique_paths():
    taken: set[Path] = set()
    names = [unique_path(Path("d") / "a.jpg", taken) for _ in range(3)]
    assert [p.name for p in names] == ["a.jpg", "a-2.jpg", "a-3.jpg"]


def test_build_dry_run_writes_nothing_without_out(tiny_package, tmp_path, monkeypatch, capsys):
    from btnet_edge.cli.main import main

    monkeypatch.chdir(tmp_path)
    assert main(["build", str(tiny_package), "--target", "desktop-fp16", "--dry-run", "--trt-version", "8.6"]) == 0
    assert "no file kept" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []
    out = tmp_path / "engines"
    assert main(["build", str(tiny_package), "--target", "desktop-fp16", "--dry-run", "--trt-version", "8.6",
                 "--out", str(out)]) == 0
    assert sorted(p.suffix for p in out.iterdir()) and all(p.suffix == ".onnx" for p in out.iterdir())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_symlink_is_written_through_to_its_target(tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "results.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    atomic_write_text(link, "new")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == "new"
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["results.json"]
    dangling = tmp_path / "dangling.json"
    dangling.symlink_to(tmp_path / "real" / "later.json")
    atomic_write_text(dangling, "created")
    assert dangling.is_symlink() and (tmp_path / "real" / "later.json").read_text() == "created"


def test_files_get_the_mode_the_umask_gives(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.json", "x")
        os.umask(0o077)
        atomic_write_text(tmp_path / "b.json", "x")
        (tmp_path / "c.json").write_text("x")
        os.chmod(tmp_path / "c.json", 0o640)
        atomic_write_text(tmp_path / "c.json", "replaced")
        from btnet_edge.safe_io import staging_folder

        os.umask(0o022)
        folder = staging_folder(tmp_path / "pkg")
    finally:
        os.umask(old)
    modes = {name: (tmp_path / name).stat().st_mode & 0o777 for name in ("a.json", "b.json", "c.json")}
    assert modes == {"a.json": 0o644, "b.json": 0o600, "c.json": 0o640}
    assert folder.stat().st_mode & 0o777 == 0o755 and folder.name.startswith(".pkg.")


def test_an_exported_package_is_readable_as_the_umask_says(tiny_package):
    expected = 0o666 & ~_umask()
    assert {p.name: p.stat().st_mode & 0o777 for p in tiny_package.iterdir()} == {
        p.name: expected for p in tiny_package.iterdir()}
    assert tiny_package.stat().st_mode & 0o777 == 0o777 & ~_umask()


def test_dev_stdout_and_pipes_stay_streams(tmp_path):
    """As root, renaming over /dev/stdout would replace the device link for the whole machine; it is written in
    place instead. Written here through links of our own to /dev/stdout and /dev/null (the same code path: a
    regression then replaces only those links, never the machine's)."""
    from btnet_edge.safe_io import is_stream

    assert is_stream("/dev/stdout") and is_stream("/dev/null") and is_stream("/dev/fd/1")
    assert not is_stream(tmp_path / "plain.json")
    (tmp_path / "stdout.json").symlink_to("/dev/stdout")
    (tmp_path / "null.json").symlink_to("/dev/null")
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from btnet_edge.safe_io import atomic_write_text
        print("printed first", flush=True)
        atomic_write_text({str(tmp_path / "stdout.json")!r}, "written to /dev/stdout\\n")
        atomic_write_text({str(tmp_path / "null.json")!r}, "nothing")
    """)
    piped = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == "printed first\nwritten to /dev/stdout\n"
    with open(tmp_path / "redirected.txt", "w") as out:  # stdout redirected to a file: appended, not replaced
        assert subprocess.run([sys.executable, "-c", script], stdout=out, timeout=60).returncode == 0
    assert (tmp_path / "redirected.txt").read_text() == "printed first\nwritten to /dev/stdout\n"
    assert (tmp_path / "stdout.json").is_symlink() and (tmp_path / "null.json").is_symlink()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE, text=True)
    atomic_write_text(fifo, "through a pipe")
    assert reader.communicate(timeout=30)[0] == "through a pipe"
    assert fifo.exists() and not fifo.is_file()


def test_cli_json_through_a_symlink(tiny_package, tmp_path, capsys):
    import cv2
    import numpy as np

    from btnet_edge.cli.main import main

    cv2.imwrite(str(tmp_path / "p.jpg"), np.full((48, 64, 3), 90, np.uint8))
    (tmp_path / "keep").mkdir()
    real = tmp_path / "keep" / "results.json"
    real.write_text("{}")
    (tmp_path / "link.json").symlink_to(real)
    assert main(["run", str(tiny_package), str(tmp_path / "p.jpg"), "--json", str(tmp_path / "link.json"),
                 "--quiet"]) == 0
    assert (tmp_path / "link.json").is_symlink()
    assert '"images"' in real.read_text()
