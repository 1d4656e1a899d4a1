"""Open a model package folder: parse and validate the manifest, check every file's sha256."""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ManifestError, PackageError
from .manifest import MANIFEST_NAME, Manifest, manifest_from_json

log = logging.getLogger(__name__)


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelPackage:
    """A verified package: its folder and manifest; ``path(name)`` gives a file's location."""

    folder: Path
    manifest: Manifest

    def path(self, name: str) -> Path:
        return self.folder / name

    def read_verified(self, name: str) -> bytes:
        """The bytes of file ``name``, checked against its sha256 in the manifest.

        Backends build their sessions from these very bytes, so a file swapped after
        :func:`load_package` checked it is refused, never run.
        """
        expected = self.manifest.files.get(name)
        if expected is None:
            raise PackageError(f"package {self.folder}: {name} has no sha256 in the manifest; export the package again")
        try:
            data = self.path(name).read_bytes()
        except OSError as exc:
            raise PackageError(f"package {self.folder}: cannot read {name} ({exc.strerror or exc}); copy the whole "
                               "folder again") from None
        _check_digest(self.path(name), hashlib.sha256(data).hexdigest(), expected)
        return data

    @property
    def trunk_path(self) -> Path:
        return self.path(self.manifest.trunk.file)

    def branch_path(self, resolution: int) -> Path:
        return self.path(self.manifest.branch(resolution).file)


def read_manifest(folder: str | Path) -> Manifest:
    """Parse and validate ``folder/manifest.json`` without touching the graphs."""
    folder = Path(folder)
    path = folder / MANIFEST_NAME
    if not folder.is_dir():
        raise PackageError(f"{folder} is not a model package folder; create one with `btnet-edge export`")
    if not path.is_file():
        raise PackageError(f"{folder} has no {MANIFEST_NAME}: not a model package "
                           "(create one with `btnet-edge export`)")
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path} is not valid JSON ({exc}); the package is corrupt, export it again") from None
    return manifest_from_json(data)


def _check_digest(path: Path, actual: str, expected: str) -> None:
    if actual != expected:
        raise PackageError(f"{path} does not match its sha256 in the manifest (expected {expected[:12]}..., "
                           f"found {actual[:12]}...): the file was changed or damaged. Re-export or re-copy "
                           "the package; do not edit its files by hand")


def _hash_and_check_graph(path: Path, name: str, manifest: Manifest) -> str:
    """sha256 of a graph file, with its inputs, outputs and external data checked against the manifest (one read)."""
    from .graph_check import check_external_data, check_io, graph_tensors, read_summary

    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size == 0:
            return hashlib.sha256(b"").hexdigest()
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            digest = hashlib.sha256(data).hexdigest()
            if digest != manifest.files[name]:
                return digest  # reported as a mismatch by the caller; not parsed
            view = memoryview(data)
            try:
                summary = read_summary(name, view)
            finally:
                view.release()
    check_external_data(name, summary, manifest.files)
    inputs, outputs = graph_tensors(manifest)[name]
    check_io(name, summary, inputs, outputs)
    return digest


def load_package(folder: str | Path, verify: bool = True) -> ModelPackage:
    """Open a package; with ``verify`` every file must exist and match its recorded sha256, and every graph its
    manifest entry (input and output names and shapes, external data only from hashed package files)."""
    from .graph_check import graph_tensors

    folder = Path(folder)
    manifest = read_manifest(folder)
    graphs = graph_tensors(manifest)
    unlisted = sorted(n for n in graphs if n not in manifest.files)
    if unlisted:
        raise ManifestError(f"manifest field files lacks a sha256 for {unlisted}; "
                            "the package is incomplete, export it again")
    for name, expected in manifest.files.items():
        path = folder / name
        if Path(name).name != name:
            raise ManifestError(f"manifest field files names {name!r}, which is not a plain file name")
        if not path.is_file():
            raise PackageError(f"package {folder} lacks {name}, listed in its manifest; copy the whole folder again")
        if verify:
            actual = _hash_and_check_graph(path, name, manifest) if name in graphs else sha256_of(path)
            _check_digest(path, actual, expected)
    log.debug("package %s verified (%d files)", folder, len(manifest.files))
    return ModelPackage(folder, manifest)
