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
import secrets
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from .errors import OutputError

log = logging.getLogger(__name__)


_FILE_MODE = 0o666  # the mode asked of open(); the umask takes its part, as for any file a tool creates
_FOLDER_MODE = 0o777
_DESCRIPTOR_ALIASES = ("/dev/stdin", "/dev/stdout", "/dev/stderr", "/dev/fd/", "/proc/")


def _temp_beside(path: Path, suffix: str = "") -> Path:
    """A fresh hidden temp file in the target's folder (same filesystem, so the rename is atomic).

    Created as open() creates files (0666 less the umask), not 0600 as mkstemp does, so
    an exported package or a JSON file is as readable as anything else the user makes;
    a file being replaced keeps its own mode.
    """
    mode = _FILE_MODE
    with suppress(OSError):
        mode = stat.S_IMODE(path.stat().st_mode)
    for _ in range(100):
        candidate = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp{suffix}"
        try:
            handle = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
        except FileExistsError:
            continue
        os.close(handle)
        if mode != _FILE_MODE:
            os.chmod(candidate, mode)
        return candidate
    raise FileExistsError(f"no free temp name beside {path}")


def staging_folder(target: str | Path) -> Path:
    """A fresh hidden folder beside ``target`` to build it in, with the mode the umask gives (not mkdtemp's 0700)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        candidate = target.parent / f".{target.name}.{secrets.token_hex(4)}.staging"
        try:
            candidate.mkdir(_FOLDER_MODE)
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"no free staging name beside {target}")


def is_stream(path: str | Path) -> bool:
    """A terminal, pipe, socket or device, or an alias of an open descriptor (``/dev/stdout``, ``/dev/fd/3``):
    written in place, never replaced by a rename (which would swap the file under the descriptor)."""
    if _through_descriptor(path):
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISBLK(mode)


def _through_descriptor(path: str | Path) -> bool:
    """Whether ``path``, or a link on the way to its target, names an open descriptor (``/dev/stdout``,
    ``/proc/self/fd/1``): then the "file" is whatever the descriptor is, a pipe or a shell's redirect."""
    current = os.path.abspath(path)
    for _ in range(40):  # the kernel's own limit on link hops
        if current.startswith(_DESCRIPTOR_ALIASES):
            return True
        if not os.path.islink(current):
            return False
        current = os.path.normpath(os.path.join(os.path.dirname(current), os.readlink(current)))
    return False


def resolve_target(path: str | Path) -> Path:
    """Where writing ``path`` really goes: a symlink is followed to its target, which is what gets replaced."""
    path = Path(path)
    if path.is_symlink():
        target = Path(os.path.realpath(path))
        log.debug("%s is a link: writing its target %s", path, target)
        return target
    return path


def check_file_target(path: str | Path, what: str = "output", force: bool = True) -> Path:
    """Refuse a target that is a folder, or (without ``force``) an existing file; returns the file to replace."""
    path = Path(path)
    if is_stream(path):  # /dev/stdout, a pipe: written in place, never "exists"
        return path
    if path.is_dir():
        raise OutputError(f"{what} {path} is a folder; give a file name inside it, e.g. {path / 'results.json'}")
    if path.exists() and not force:
        raise OutputError(f"{what} {path} exists; choose another name or pass --force to replace it")
    return resolve_target(path)


@contextmanager
def atomic_path(path: str | Path, what: str = "output", suffix: str | None = None) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success it is renamed to ``path``, on any failure removed.

    ``suffix`` keeps the temp name's extension for writers that pick a format from it
    (cv2.imwrite); by default the target's own suffix is kept. A symlink is written
    through (its target is replaced, the link stays); a stream such as ``/dev/stdout``
    cannot be renamed over and is refused here (use :func:`atomic_write_bytes`, which
    writes streams in place).
    """
    if is_stream(path):
        raise OutputError(f"{what} {path} is a device or pipe, not a file; give a file name")
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


def _write_stream(path: str | Path, data: bytes, what: str) -> Path:
    """Write to a device or pipe in place: appended (no truncation of what is already there), no rename."""
    try:
        handle = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(handle, view):]
        finally:
            os.close(handle)
    except OSError as exc:
        raise OutputError(f"cannot write {what} to {path}: {exc.strerror or exc}") from None
    return Path(path)


def atomic_write_bytes(path: str | Path, data: bytes, what: str = "output") -> Path:
    """Write ``data`` to ``path`` through a temp file and fsync: the old file survives any failure.

    Devices and pipes (``/dev/stdout``) are written in place, as a stream.
    """
    if is_stream(path):
        return _write_stream(path, data, what)
    with atomic_path(path, what) as temp, open(temp, "wb") as handle:
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
