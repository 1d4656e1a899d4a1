"""Writing outputs without destroying anything: temp name beside the target, rename on success.

Every file btnet-edge writes for a user (JSON, drawings, packages, engines, gallery
exports) goes through here, so a full disk, a crash or Ctrl-C leaves either the old
file or the new one, never half of either, and a write error is an error, not a
silent exit 0. Folder rules: ``--force`` replaces only a folder we made (one that
holds a marker file such as a package manifest) or an empty one, and never the
current folder, a parent of it, or a folder that holds an input.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from .errors import OutputError

log = logging.getLogger(__name__)


def _temp_beside(path: Path, suffix: str = "") -> Path:
    """A fresh hidden temp file in the target's folder (same filesystem, so the rename is atomic)."""
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(handle)
    return Path(name)


def check_file_target(path: str | Path, what: str = "output", force: bool = True) -> Path:
    """Refuse a target that is a folder, or (without ``force``) an existing file."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{what} {path} is a folder; give a file name inside it, e.g. {path / 'results.json'}")
    if path.exists() and not force:
        raise OutputError(f"{what} {path} exists; choose another name or pass --force to replace it")
    return path


@contextmanager
def atomic_path(path: str | Path, what: str = "output", suffix: str | None = None) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success it is renamed to ``path``, on any failure removed.

    ``suffix`` keeps the temp name's extension for writers that pick a format from it
    (cv2.imwrite); by default the target's own suffix is kept.
    """
    path = check_file_target(path, what)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = _temp_beside(path, path.suffix if suffix is None else suffix)
    except OSError as exc:
        raise OutputError(f"cannot write {what} {path}: {exc.strerror or exc}; choose a writable folder") from None
    try:
        yield temp
        os.replace(temp, path)
    except OSError as exc:
        raise OutputError(f"cannot write {what} {path}: {exc.strerror or exc}; free some space or choose another "
                          "path (any previous file there is unchanged)") from None
    finally:
        if temp.exists():
            temp.unlink()


def atomic_write_bytes(path: str | Path, data: bytes, what: str = "output") -> Path:
    """Write ``data`` to ``path`` through a temp file and fsync: the old file survives any failure."""
    with atomic_path(path, what) as temp:
        with open(temp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    return Path(path)


def atomic_write_text(path: str | Path, text: str, what: str = "output") -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), what)


def refuse_inputs_as_target(path: str | Path, inputs: Iterable[str | Path], what: str) -> None:
    """An output file must not be one of the inputs, nor inside an input folder we must not change."""
    target = Path(path).resolve()
    for item in inputs:
        source = Path(item).resolve()
        if target == source:
            raise OutputError(f"{what} {path} is one of the inputs; write the output to another file")


def _is_within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def refuse_folder_of_inputs(folder: str | Path, inputs: Iterable[str | Path], what: str) -> None:
    """``folder`` must not be, or contain, the current folder or any input (files or folders)."""
    target = Path(folder).resolve()
    if _is_within(Path.cwd().resolve(), target):
        raise OutputError(f"{what} {folder} is the current folder or one of its parents; choose a new folder")
    for item in inputs:
        source = Path(item).resolve()
        if _is_within(source, target):
            raise OutputError(f"{what} {folder} holds the input {item}; choose a folder that holds no input, so "
                              "nothing of yours is overwritten")


def check_replaceable_folder(folder: str | Path, force: bool, marker: str, what: str,
                             inputs: Iterable[str | Path] = ()) -> None:
    """May ``folder`` be written (absent), or replaced: with ``force``, only when empty or holding ``marker``."""
    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{what} {path} is a file; give a folder name (it is created)")
    refuse_folder_of_inputs(path, inputs, what)
    if not path.exists() or not any(path.iterdir()):
        return
    if not force:
        raise OutputError(f"{what} {path} exists and is not empty; choose another folder or pass --force to "
                          "replace it")
    if not (path / marker).is_file():
        raise OutputError(f"{what} {path} is not empty and has no {marker}: it was not made by btnet-edge, so "
                          "--force will not replace it; choose another folder")


def replace_folder(staging: Path, target: Path) -> None:
    """Move a finished ``staging`` folder to ``target``; an old ``target`` is kept until the new one is in place."""
    backup = None
    if target.exists():
        backup = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
        backup.rmdir()
        os.replace(target, backup)
    try:
        os.replace(staging, target)
    except OSError:
        if backup is not None:
            os.replace(backup, target)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)
        log.debug("replaced %s", target)


def unique_path(path: Path, taken: set[Path]) -> Path:
    """``path``, or ``stem-2.suffix``, ``stem-3.suffix``... : the first not in ``taken`` (which is updated)."""
    candidate, n = path, 1
    while candidate in taken:
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    taken.add(candidate)
    return candidate
