"""insightface verification sets (``lfw.bin``, ``cfp_fp.bin``, ``agedb_30.bin``) read without running their code.

A ``.bin`` is a pickle of ``(images, issame)``: ``images`` a list of 2N encoded aligned
112x112 faces (JPEG bytes), ``issame`` N flags for the pairs (images[2i], images[2i+1]).
A pickle can name any callable (``__reduce__``): loading one with ``pickle.load`` runs
whatever it names. :class:`RestrictedUnpickler` resolves no name at all except the few
that rebuild plain data (``_codecs.encode``, which Python 3 writes for bytes at protocol
2, and numpy's array reconstruction, admitted only for a boolean ``issame``); the result
is then checked to be exactly bytes and bools. Anything else is refused before it runs.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

from ..errors import InputImageError

# (module, name) a .bin may refer to; everything else is refused when the pickle names it
_SAFE_GLOBALS = {
    ("_codecs", "encode"),  # bytes written by Python 3 at protocol 2: _codecs.encode(str, "latin1")
    ("numpy.core.multiarray", "_reconstruct"),  # a numpy issame array, checked to be boolean afterwards
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}
_MAX_BIN_BYTES = 4 << 30


class UnsafeBinError(InputImageError):
    """A .bin names code other than plain data, or holds something other than image bytes and flags."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the names in ``_SAFE_GLOBALS`` and no persistent ids."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _SAFE_GLOBALS:
            raise UnsafeBinError(f"the file names {module}.{name}: a .bin holds only image bytes and same/different "
                                 "flags, so it was refused without running it (is it really an insightface .bin?)")
        if module == "_codecs":
            import codecs

            def encode(text, encoding="utf-8", errors="strict"):
                if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
                    raise UnsafeBinError(f"_codecs.encode called with {type(text).__name__}, {encoding!r}")
                return codecs.encode(text, encoding, errors)

            return encode
        return super().find_class(module, name)

    def persistent_load(self, pid):
        raise UnsafeBinError("the file uses persistent ids: not an insightface .bin; refused")


def _flags(issame, path: Path) -> list[bool]:
    if isinstance(issame, np.ndarray):
        if issame.dtype != np.bool_ or issame.ndim != 1:
            raise UnsafeBinError(f"{path}: issame is a {issame.dtype} array of shape {issame.shape}; expected bools")
        return issame.tolist()
    if not isinstance(issame, (list, tuple)):
        raise UnsafeBinError(f"{path}: issame should be a list of bools, found {type(issame).__name__}")
    if not all(isinstance(v, (bool, np.bool_)) for v in issame):
        kinds = sorted({type(v).__name__ for v in issame})
        raise UnsafeBinError(f"{path}: issame should be a list of bools, found {kinds}")
    return [bool(v) for v in issame]


def read_bin(path: str | Path) -> tuple[list[bytes], list[bool]]:
    """(encoded images, issame) of an insightface .bin, checked: 2 images per flag, bytes only."""
    path = Path(path)
    if not path.is_file():
        raise InputImageError(f"verification file not found: {path} (insightface ships lfw.bin, cfp_fp.bin, "
                              "agedb_30.bin inside its training dataset folders)")
    if path.stat().st_size > _MAX_BIN_BYTES:
        raise InputImageError(f"{path} is {path.stat().st_size >> 20} MiB: larger than any insightface .bin")
    data = path.read_bytes()
    try:
        loaded = RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except UnsafeBinError as exc:
        raise UnsafeBinError(f"{path}: {exc}") from None
    except Exception as exc:  # damaged or not a pickle
        raise InputImageError(f"{path} is not a readable insightface .bin ({type(exc).__name__}: {exc})") from None
    if not isinstance(loaded, (tuple, list)) or len(loaded) != 2:
        raise UnsafeBinError(f"{path}: expected a pair (images, issame), found {type(loaded).__name__}")
    images, issame = loaded
    if not isinstance(images, (list, tuple)) or not all(isinstance(v, (bytes, bytearray)) for v in images):
        raise UnsafeBinError(f"{path}: images should be a list of encoded image bytes")
    flags = _flags(issame, path)
    if len(images) != 2 * len(flags) or not flags:
        raise InputImageError(f"{path}: {len(images)} images for {len(flags)} pairs; expected 2 per pair")
    return [bytes(v) for v in images], flags


def decode_faces(images: list[bytes], path: Path) -> np.ndarray:
    """The encoded faces as (2N, 112, 112, 3) BGR uint8 (crops of another size resized)."""
    import cv2

    from ..training.data import to_112

    faces = []
    for i, data in enumerate(images):
        face = to_112(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))
        if face is None:
            raise InputImageError(f"{path}: image {i} (pair {i // 2}) cannot be decoded as an image")
        faces.append(face)
    return np.stack(faces)
