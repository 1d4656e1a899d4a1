"""Enrollment: the face the user meant, from each photo, into the gallery, one identity at a time.

A photo with several faces of similar size is ambiguous: enrolling its largest face
silently can store the wrong person under the name (a group photo of two politicians
enrolled as one of them). So such a photo is refused, naming how many faces and their
sizes, unless the caller picks one (``pick="largest"``). Faces much smaller than the
largest (``SUBJECT_SIZE_SHARE``) are bystanders, not a doubt about who the photo shows.
Every identity is written in one gallery transaction: all its photos or none. The same
photo enrolled again adds nothing (the gallery skips near-copies), and a photo whose face
is already enrolled under another name is reported: both are warnings, never silent.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import BtnetError, ConfigError, InputImageError
from ..pipeline.face import Face
from ..pipeline.image import read_image
from ..pipeline.recognizer import CONFIDENT_SHARE
from ..pipeline.sources import IMAGE_SUFFIXES
from .records import DUPLICATE_COSINE

log = logging.getLogger(__name__)

PICKS = ("largest",)
SUBJECT_SIZE_SHARE = 0.5  # confident faces at least this share of the largest one's size could be the subject


def subject_candidates(faces: Sequence[Face]) -> list[Face]:
    """Faces that could be the photo's subject: confident and not much smaller than the largest, largest first."""
    if not faces:
        return []
    best = max(f.det_score for f in faces)
    confident = [f for f in faces if f.det_score >= CONFIDENT_SHARE * best]
    largest = max(f.face_size for f in confident)
    return sorted((f for f in confident if f.face_size >= SUBJECT_SIZE_SHARE * largest), key=lambda f: -f.face_size)


def pick_face(faces: Sequence[Face], pick: str | None = None, source: str = "the photo") -> Face:
    """The one face to enroll; refuses ambiguous photos unless ``pick`` says which."""
    if pick is not None and pick not in PICKS:
        raise ConfigError(f"pick={pick!r}: use one of {PICKS} or None (refuse photos with several faces)")
    candidates = subject_candidates(faces)
    if not candidates:
        raise InputImageError(f"no face found in {source}")
    if len(candidates) > 1 and pick is None:
        sizes = ", ".join(f"{f.face_size:.0f}" for f in candidates)
        raise InputImageError(f"{source} shows {len(candidates)} faces of similar size ({sizes} px): which one is "
                              "the person? Crop the photo to them, or pass --pick largest (API: pick='largest')")
    return candidates[0]


@dataclass
class EnrollResult:
    """What enrolling one identity did: embeddings added, photos used, photos skipped and why."""

    name: str
    added: int = 0
    used: list[str] = field(default_factory=list)
    resolutions: list[int] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    already_enrolled: int = 0  # near-copies of stored embeddings (the same photo again): not stored twice
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    embeddings: list[np.ndarray] = field(default_factory=list, repr=False)

    def to_json(self) -> dict:
        return {"name": self.name, "added": self.added, "used": self.used, "resolutions": self.resolutions,
                "skipped": self.skipped, "already_enrolled": self.already_enrolled, "warnings": self.warnings,
                "error": self.error}


def collect_identity(recognizer, name: str, images: Sequence[str | Path], pick: str | None = None,
                     skip_bad: bool = False) -> EnrollResult:
    """One embedding per photo of ``name``; raises on the first bad photo unless ``skip_bad``, or when none is
    usable."""
    result = EnrollResult(name)
    for path in map(str, images):
        try:
            face = pick_face(recognizer.get(read_image(path)), pick, source=path)
            embedding = face.normed_embedding
            if embedding is None:
                raise InputImageError(f"{path}: the face found there has no embedding; use another photo")
        except InputImageError as exc:
            if not skip_bad:
                raise InputImageError(f"{exc}; nothing was enrolled for {name!r}") from None
            result.skipped[path] = str(exc)
            continue
        result.embeddings.append(embedding)
        result.resolutions.append(face.resolution)
        result.used.append(path)
    if not result.embeddings:
        raise InputImageError(f"no usable face for {name!r} in {len(result.skipped)} photo(s); nothing was enrolled")
    return result


def write_identity(gallery, result: EnrollResult) -> EnrollResult:
    """All of the identity's embeddings in one gallery transaction; photos of someone else enrolled are reported."""
    from .records import normalise_name

    vectors = np.stack(result.embeddings)
    name = normalise_name(result.name)
    for source, matches in zip(result.used, gallery.identify(vectors, top_k=1, threshold=DUPLICATE_COSINE)):
        if matches and matches[0].name != name:
            note = (f"{source}: this face is already enrolled as {matches[0].name!r} (cosine "
                    f"{matches[0].score:.4f}): the same photo under two names?")
            log.warning("%s", note)
            result.warnings.append(note)
    result.added = gallery.enroll(name, vectors, resolutions=result.resolutions, sources=result.used)
    result.already_enrolled = len(vectors) - result.added
    if result.already_enrolled:
        result.warnings.append(f"{result.already_enrolled} of {len(vectors)} photos were already enrolled for {name!r}"
                               " and were not stored twice")
    result.name = name
    return result


def enroll_identity(recognizer, gallery, name: str, images: Sequence[str | Path], pick: str | None = None,
                    skip_bad: bool = False) -> EnrollResult:
    """Enroll ``name`` from ``images``, all or nothing (see :func:`collect_identity`)."""
    return write_identity(gallery, collect_identity(recognizer, name, images, pick, skip_bad))


def people_folders(root: str | Path) -> dict[str, list[Path]]:
    """``root/<name>/*.jpg`` -> {name: photos}, sorted; names are the folder names."""
    root = Path(root)
    if not root.is_dir():
        raise InputImageError(f"{root} is not a folder; expected people/<name>/<photos>")
    found = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if photos:
            found[folder.name] = photos
    if not found:
        raise InputImageError(f"{root} holds no <name>/ folders with photos ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return found


def enroll_people(recognizer, gallery, root: str | Path, pick: str | None = None, skip_bad: bool = False,
                  progress: bool = True) -> list[EnrollResult]:
    """Enroll every ``root/<name>/`` folder; each identity all-or-nothing, a failed one does not stop the rest.

    ``gallery`` is a Gallery, or a function that opens one: it is then called only when the
    first person is ready to be written (and closed here), so a run that enrolls nobody
    creates no empty gallery.
    """
    from tqdm.auto import tqdm

    opens = callable(gallery) and not hasattr(gallery, "enroll")
    target = None if opens else gallery
    results = []
    try:
        for name, photos in tqdm(people_folders(root).items(), desc="enroll", unit="person", disable=not progress):
            try:
                result = collect_identity(recognizer, name, photos, pick, skip_bad)
                if target is None:
                    target = gallery()
                results.append(write_identity(target, result))
            except BtnetError as exc:
                log.warning("%s not enrolled: %s", name, exc)
                results.append(EnrollResult(name, error=str(exc)))
    finally:
        if opens and target is not None:
            target.close()
    return results
