"""What a gallery holds and answers, and the checks every backend applies to names, thresholds and vectors.

One set of rules for SQLite and PostgreSQL: a name is stored in one canonical form
(Unicode NFC, whitespace trimmed and collapsed), so "Ada Lovelace " and a decomposed
"Ada Lovelace" are the same person; a threshold is a finite cosine in [-1, 1]; a
stored vector must be finite and of unit norm, because a damaged row (one flipped
exponent bit) would otherwise outscore every real match.
"""

from __future__ import annotations

import math
import numbers
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import GalleryError

VECTOR_DTYPE = np.dtype("<f4")
DEFAULT_THRESHOLD = 0.3  # a starting point only: calibrate per model and resolution
THRESHOLD_KEY = "threshold"  # default; per resolution: "threshold.<resolution>"
NORM_TOLERANCE = 1e-4  # stored rows are float32 unit vectors: |norm - 1| is about 1e-7 when intact
DUPLICATE_COSINE = 0.999  # two embeddings this close are one photo enrolled twice (or re-encoded)
_MIN_NORM = 1e-12
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Match:
    """One gallery identity matched by a probe; ``score`` is a cosine in [-1, 1]."""

    name: str
    score: float
    identity_id: int


@dataclass(frozen=True)
class IdentityInfo:
    """An enrolled identity: how many embeddings it has, from which branch resolutions."""

    name: str
    identity_id: int
    count: int
    resolutions: tuple[int, ...]


@dataclass(frozen=True)
class DamagedRow:
    """A stored embedding that failed its check on load; it is left out of every search."""

    row_id: int
    identity_id: int
    reason: str


def is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def normalise_name(name: object) -> str:
    """The canonical form of an identity name (NFC, trimmed, inner whitespace collapsed)."""
    if not isinstance(name, str):
        raise GalleryError(f"identity name must be a non-empty str, got {name!r}")
    canonical = _SPACES.sub(" ", unicodedata.normalize("NFC", name)).strip()
    if not canonical:
        raise GalleryError(f"identity name must be a non-empty str, got {name!r}")
    if any(unicodedata.category(c) == "Cc" for c in canonical):
        raise GalleryError(f"identity name {name!r} holds control characters; type the name as it should print")
    return canonical


def name_key(name: str) -> str:
    """What two names share when they differ only in case: used to warn of near-duplicates."""
    return normalise_name(name).casefold()


def check_resolution(resolution: object) -> int:
    if not (is_int(resolution) and resolution > 0):  # type: ignore[operator]
        raise GalleryError(f"a resolution must be a positive int (e.g. 112, 28, 14, 7), got {resolution!r}")
    return int(resolution)  # type: ignore[call-overload]


def check_threshold(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not -1.0 <= float(value) <= 1.0:
        raise GalleryError(f"a threshold is a cosine in [-1, 1], got {value!r}")
    return float(value)


def stored_thresholds(meta: dict[str, str], where: str) -> tuple[float, dict[int, float]]:
    """(default, per resolution) from meta rows; an edited or damaged value is an error naming the fix."""
    default, per = DEFAULT_THRESHOLD, {}
    for key, text in meta.items():
        if key != THRESHOLD_KEY and not key.startswith(THRESHOLD_KEY + "."):
            continue
        resolution = key[len(THRESHOLD_KEY) + 1:]
        fix = f"`btnet-edge gallery {where} --threshold 0.3" + (f" --resolution {resolution}`" if resolution else "`")
        try:
            value = float(text)
        except (TypeError, ValueError):
            value = math.nan
        if not (math.isfinite(value) and -1.0 <= value <= 1.0):
            raise GalleryError(f"{where}: the stored {key} is {text!r}, not a cosine in [-1, 1]; the gallery was "
                               f"edited by hand or damaged: set it again with {fix}")
        if resolution:
            if not resolution.isdigit() or int(resolution) < 1:
                raise GalleryError(f"{where}: meta key {key!r} names no resolution; remove it or set thresholds again")
            per[int(resolution)] = value
        else:
            default = value
    return default, per


def unit_rows(embeddings: object, dim: int, what: str) -> np.ndarray:
    """(N, D) float32 unit rows, or GalleryError before anything is written or searched."""
    arr = np.asarray(embeddings)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] != dim or not np.issubdtype(arr.dtype, np.number):
        raise GalleryError(f"{what}s must be a numeric array of shape (N, {dim}) or ({dim},), "
                           f"got {arr.dtype} {arr.shape}; is it from the gallery's model?")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        bad = np.flatnonzero(~np.isfinite(arr).all(axis=1)).tolist()
        raise GalleryError(f"{what} rows {bad} contain NaN or inf; check the recognizer output")
    norms = np.linalg.norm(arr, axis=1)
    if (norms < _MIN_NORM).any():
        raise GalleryError(f"{what} rows {np.flatnonzero(norms < _MIN_NORM).tolist()} are zero vectors; "
                           "check the recognizer output")
    return (arr / norms[:, None]).astype(VECTOR_DTYPE)


def row_problems(vectors: np.ndarray) -> list[str | None]:
    """Per stored row: None when intact, else why it cannot be trusted (not finite, not of unit norm)."""
    with np.errstate(all="ignore"):
        finite = np.isfinite(vectors).all(axis=1)
        norms = np.sqrt(np.einsum("ij,ij->i", vectors.astype(np.float64), vectors.astype(np.float64)))
    out: list[str | None] = []
    for ok, norm in zip(finite, norms):
        if not ok:
            out.append("holds NaN or inf")
        elif abs(norm - 1.0) > NORM_TOLERANCE:
            out.append(f"has norm {norm:.6g}, not 1 (a stored vector was changed)")
        else:
            out.append(None)
    return out


def new_rows(existing: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Mask of ``vectors`` that are not near-copies of ``existing`` rows or of earlier kept ``vectors``."""
    keep = np.ones(len(vectors), bool)
    if len(existing):
        keep &= (vectors @ existing.T.astype(vectors.dtype)).max(axis=1) < DUPLICATE_COSINE
    if len(vectors) > 1:
        close = (vectors @ vectors.T) >= DUPLICATE_COSINE
        for i in range(1, len(vectors)):
            if keep[i] and (close[i, :i] & keep[:i]).any():
                keep[i] = False
    return keep


def per_row(value: object, n: int, what: str, check) -> list:
    """One value for all ``n`` rows, or ``n`` values, each passing ``check``."""
    if value is None or isinstance(value, (str, numbers.Number)):
        values: Sequence = [value] * n
    elif isinstance(value, Iterable):
        values = list(value)
    else:
        raise GalleryError(f"{what} must be one value or {n} of them, got {value!r}")
    if len(values) != n or not all(check(v) for v in values):
        raise GalleryError(f"{what} must be one value or {n} of them, got {value!r}")
    return list(values)
