"""Training faces: sources (photos, aligned crops, insightface RecordIO), degradation, global batches.

Distillation needs no labels, so every face is a sample. The teacher sees the augmented
112 px face and the branch of resolution r sees that same face degraded to r px
(:class:`Degradation`). Batches are defined globally: step s of a run with seed k always
holds the same faces with the same random changes (each face's generator is seeded by
(k, s, its place in the global batch)), and rank i of N takes its contiguous share. So 1
process with batch 8 and 2 processes with batch 4 see the same faces, and a resumed run
continues with the batch it would have had, from the step count alone.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from ..errors import InputImageError
from ..package.manifest import Preprocess
from ..pipeline.align import align_face, degrade
from ..pipeline.image import read_image
from ..pipeline.preprocess import preprocess
from ..pipeline.sources import IMAGE_SUFFIXES

log = logging.getLogger(__name__)

FACE_SIZE = 112


@dataclass(frozen=True)
class FaceSet:
    """Aligned faces (N, 112, 112, 3) BGR uint8 and the image each came from."""

    faces: np.ndarray
    sources: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.faces)


def image_files(folders: Sequence[str | Path]) -> list[Path]:
    """Image files under the folders, recursively, sorted."""
    files: list[Path] = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise InputImageError(f"--images {folder} is not a folder")
        files += sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputImageError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {', '.join(map(str, folders))}")
    return files


def load_faces(folders: Sequence[str | Path], detector=None, min_face_px: float = 48.0,
               progress: bool = False) -> FaceSet:
    """Every detected face of at least ``min_face_px`` (long side), aligned at 112.

    Smaller faces are left out: aligned at 112 they are upsampled, a poor teacher.
    ``detector``: a FaceDetector, or None for the default (bundled RetinaFace).
    """
    from tqdm.auto import tqdm

    from ..pipeline.detect import create_detector

    own = detector is None
    detector = create_detector() if own else detector
    faces, sources, small = [], [], 0
    try:
        for path in tqdm(image_files(folders), desc="faces", unit="img", disable=not progress):
            image = read_image(path)
            for det in detector.detect(image):
                if max(det.width, det.height) < min_face_px:
                    small += 1
                    continue
                faces.append(align_face(image, det.kps, FACE_SIZE))
                sources.append(str(path))
    finally:
        if own:
            detector.close()
    if not faces:
        raise InputImageError(f"no face of at least {min_face_px:g} px found under {', '.join(map(str, folders))}")
    log.info("%d training faces from %d images (%d smaller than %g px left out)", len(faces), len(set(sources)), small,
             min_face_px)
    return FaceSet(np.stack(faces), tuple(sources))


@dataclass(frozen=True)
class Augmentation:
    """Per-face random changes; probabilities and ranges small enough to keep the identity."""

    flip_p: float = 0.5
    shift_px: float = 4.0
    scale: tuple[float, float] = (0.93, 1.07)
    rotate_deg: float = 6.0
    brightness: float = 0.2  # multiplicative, +-
    contrast: float = 0.2
    saturation: float = 0.2
    blur_p: float = 0.25
    blur_sigma: tuple[float, float] = (0.4, 1.4)
    jpeg_p: float = 0.25
    jpeg_quality: tuple[int, int] = (35, 90)
    mixup_p: float = 0.0  # share of faces blended with another (own weight >= 0.5): more inputs for the teacher

    def describe(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def apply(self, face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One augmented copy of a 112 px aligned BGR uint8 face."""
        out = face[:, ::-1] if rng.random() < self.flip_p else face
        angle = rng.uniform(-self.rotate_deg, self.rotate_deg)
        scale = rng.uniform(*self.scale)
        matrix = cv2.getRotationMatrix2D((FACE_SIZE / 2, FACE_SIZE / 2), angle, scale)
        matrix[:, 2] += rng.uniform(-self.shift_px, self.shift_px, size=2)
        out = cv2.warpAffine(np.ascontiguousarray(out), matrix, (FACE_SIZE, FACE_SIZE), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REFLECT101)
        pixels = out.astype(np.float32)
        pixels *= 1.0 + rng.uniform(-self.brightness, self.brightness)
        mean = pixels.mean()
        pixels = (pixels - mean) * (1.0 + rng.uniform(-self.contrast, self.contrast)) + mean
        grey = pixels.mean(axis=2, keepdims=True)
        pixels = grey + (pixels - grey) * (1.0 + rng.uniform(-self.saturation, self.saturation))
        out = np.clip(pixels, 0, 255).astype(np.uint8)
        if rng.random() < self.blur_p:
            out = cv2.GaussianBlur(out, (0, 0), rng.uniform(*self.blur_sigma))
        if rng.random() < self.jpeg_p:
            quality = int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1))
            ok, data = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if ok:
                out = cv2.imdecode(data, cv2.IMREAD_COLOR)
        return out



class FaceSource(Protocol):
    """Faces by index: ``get(i)`` is a 112x112 BGR uint8 face or None for a bad record."""

    def __len__(self) -> int: ...

    def get(self, index: int) -> np.ndarray | None: ...


class ArrayFaces:
    """Faces held in memory (the photo folders' detected faces)."""

    def __init__(self, faces: FaceSet | np.ndarray) -> None:
        self.faces = faces.faces if isinstance(faces, FaceSet) else faces
        self.description = f"{len(self.faces)} faces in memory"

    def __len__(self) -> int:
        return len(self.faces)

    def get(self, index: int) -> np.ndarray:
        return self.faces[index]


def to_112(image: np.ndarray | None) -> np.ndarray | None:
    """An aligned crop as 112x112 BGR uint8 (area when larger, linear when smaller); None passes through."""
    if image is None or image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 8:
        return None
    if image.shape[:2] == (FACE_SIZE, FACE_SIZE):
        return image
    interpolation = cv2.INTER_AREA if image.shape[0] > FACE_SIZE else cv2.INTER_LINEAR
    return cv2.resize(image, (FACE_SIZE, FACE_SIZE), interpolation=interpolation)


class CropFolderFaces:
    """A folder of aligned face crops (insightface layout: one 112x112 image per file), read lazily."""

    def __init__(self, folders: Sequence[str | Path]) -> None:
        self.files = image_files(folders)
        self.description = f"{len(self.files)} aligned crops under {', '.join(map(str, folders))}"

    def __len__(self) -> int:
        return len(self.files)

    def get(self, index: int) -> np.ndarray | None:
        data = np.fromfile(self.files[index], dtype=np.uint8)
        return to_112(cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None)


class RecordFaces:
    """The faces of an insightface RecordIO dataset (``train.rec`` + ``train.idx``), decoded on demand."""

    def __init__(self, rec_path: str | Path, idx_path: str | Path | None = None) -> None:
        from .recordio import BadRecord, RecordIOError, RecordIOReader, unpack_record

        self.reader = RecordIOReader(rec_path, idx_path)
        keys = self.reader.keys
        try:
            header, _ = unpack_record(self.reader.read(0)) if 0 in self.reader.index else (None, b"")
        except BadRecord:
            header = None
        if header is not None and isinstance(header.label, tuple):  # insightface: images are keys [1, label[0])
            stop = int(header.label[0])
            self.keys = [k for k in keys if 1 <= k < stop]
        else:
            self.keys = keys
        if not self.keys:
            raise RecordIOError(f"{rec_path} holds no image records")
        self.description = f"{len(self.keys)} records of {rec_path}"

    def __len__(self) -> int:
        return len(self.keys)

    def get(self, index: int) -> np.ndarray | None:
        from .recordio import BadRecord, unpack_record

        try:
            _, image = unpack_record(self.reader.read(self.keys[index]))
        except BadRecord as exc:
            log.debug("%s", exc)
            return None
        if not image:
            return None
        return to_112(cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR))

    def close(self) -> None:
        self.reader.close()


INTERPOLATIONS = {"area": cv2.INTER_AREA, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC,
                  "nearest": cv2.INTER_NEAREST}


@dataclass(frozen=True)
class Degradation:
    """How the r px view is made from the (augmented) 112 face.

    BTNet (arXiv 2310.09563, Sec. 4.1, "Implementation details") trains each branch on the
    training faces downsampled to its resolution; the authors' loader (StevenSmith2000/BTNet,
    dataset.py) resizes the 112 face to r with torchvision's ``Resize`` (PIL bilinear, which
    averages like area when shrinking) and flips at random. Real small faces come through
    other kernels, so the interpolation is drawn per face among ``interpolations`` (default:
    area, bilinear, bicubic); blur before and JPEG after the resize are options (default off,
    as the authors).
    """

    interpolations: tuple[str, ...] = ("area", "bilinear", "bicubic")
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.5, 1.5)  # in 112 px units, before the resize
    jpeg_p: float = 0.0
    jpeg_quality: tuple[int, int] = (40, 90)

    def __post_init__(self) -> None:
        bad = [name for name in self.interpolations if name not in INTERPOLATIONS]
        if bad or not self.interpolations:
            raise ValueError(f"interpolations should be among {sorted(INTERPOLATIONS)}, "
                             f"found {list(self.interpolations)}")

    def apply(self, face: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
        """``face`` (112 BGR uint8) degraded to ``size`` px."""
        out = face
        if self.blur_p > 0 and rng.random() < self.blur_p:
            out = cv2.GaussianBlur(out, (0, 0), rng.uniform(*self.blur_sigma))
        name = self.interpolations[int(rng.integers(len(self.interpolations)))]
        out = cv2.resize(out, (size, size), interpolation=INTERPOLATIONS[name]) if size != out.shape[0] else out.copy()
        if self.jpeg_p > 0 and rng.random() < self.jpeg_p:
            quality = int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1))
            ok, data = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
            decoded = cv2.imdecode(data, cv2.IMREAD_COLOR) if ok else None
            if decoded is not None:
                out = decoded
        return out


AREA_ONLY = Degradation(interpolations=("area",))  # the evaluation protocol (eval-pairs): held-out losses use it


def network_inputs(faces_112: np.ndarray, resolutions: Sequence[int], spec: Preprocess,
                   small: dict[int, np.ndarray] | None = None) -> dict[int, np.ndarray]:
    """{112: the faces, r: the r px views} as normalized NCHW float32, per the manifest.

    ``small``: the r px views already made (training batches); default: area degradation.
    """
    batches = {FACE_SIZE: preprocess(faces_112, spec, FACE_SIZE)}
    for r in resolutions:
        views = small[r] if small is not None else np.stack([degrade(face, r) for face in faces_112])
        batches[r] = preprocess(views, spec, r)
    return batches


@dataclass(frozen=True)
class Batch:
    """One rank's share of a global batch: the 112 views and the r px views of the same faces."""

    faces: np.ndarray  # (B, 112, 112, 3) uint8
    small: dict[int, np.ndarray]  # r -> (B, r, r, 3) uint8
    bad_records: frozenset[int]  # source indices found bad while making it


class GlobalBatches:
    """Step -> this rank's faces, reproducible from (seed, step) alone; decoding in a thread pool.

    Each epoch is a seeded permutation of ``indices`` (the remainder that does not fill a
    global batch is dropped, as ``drop_last``); rank i of N takes places [i*B, (i+1)*B) of
    the global batch of N*B. A bad record is replaced by the next good one in a fixed
    probe order (the same on every rank) and counted.
    """

    def __init__(self, source: FaceSource, indices: np.ndarray, batch_size: int, resolutions: Sequence[int],
                 augmentation: Augmentation | None, degradation: Degradation, seed: int = 0, rank: int = 0,
                 world: int = 1, workers: int = 2, prefetch: int = 2) -> None:
        self.source, self.indices = source, np.sort(np.asarray(indices, dtype=np.int64))
        self.global_batch = min(batch_size * world, len(self.indices)) // world * world
        if self.global_batch < world:
            raise InputImageError(f"{len(self.indices)} training faces cannot fill one batch on {world} processes")
        self.batch_size = self.global_batch // world
        self.resolutions = list(resolutions)
        self.augmentation, self.degradation = augmentation, degradation
        self.seed, self.rank, self.world = seed, rank, world
        self.pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="faces")
        self.prefetch = max(1, prefetch)
        self._pending: dict[int, list[Future]] = {}
        self._orders: dict[int, np.ndarray] = {}
        self.bad_records: set[int] = set()

    @property
    def steps_per_epoch(self) -> int:
        return len(self.indices) // self.global_batch

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            self._orders = {epoch: np.random.default_rng([self.seed, 7, epoch]).permutation(self.indices)}
        return self._orders[epoch]

    def global_indices(self, step: int) -> np.ndarray:
        epoch, within = divmod(step, self.steps_per_epoch)
        return self._order(epoch)[within * self.global_batch:(within + 1) * self.global_batch]

    def _face(self, index: int, bad: set[int]) -> np.ndarray:
        """The face at ``index``, or the first good one after it in a fixed probe order."""
        n = len(self.indices)
        place = int(np.searchsorted(self.indices, index))
        for attempt in range(min(n, 1000)):
            candidate = index if attempt == 0 else int(self.indices[(place + attempt * 7919) % n])
            face = self.source.get(candidate)
            if face is not None:
                return face
            bad.add(candidate)
        raise InputImageError(f"no decodable face among {min(n, 1000)} records tried from index {index}; "
                              "the dataset looks damaged")

    def _sample(self, step: int, place: int, index: int) -> tuple[np.ndarray, dict[int, np.ndarray], set[int]]:
        rng = np.random.default_rng([self.seed, step, place])
        bad: set[int] = set()
        face = self._face(index, bad)
        if self.augmentation is not None:
            face = self.augmentation.apply(face, rng)
            if self.augmentation.mixup_p > 0 and rng.random() < self.augmentation.mixup_p:
                other = self.augmentation.apply(self._face(int(rng.choice(self.indices)), bad), rng)
                weight = rng.uniform(0.5, 1.0)
                face = np.clip(np.rint(weight * face + (1.0 - weight) * other.astype(np.float32)), 0, 255) \
                    .astype(np.uint8)
        small = {r: self.degradation.apply(face, r, rng) for r in self.resolutions}
        return np.ascontiguousarray(face), small, bad

    def _submit(self, step: int):
        take = self.global_indices(step)
        first = self.rank * self.batch_size
        return [self.pool.submit(self._sample, step, first + j, int(i))
                for j, i in enumerate(take[first:first + self.batch_size])]

    def get(self, step: int) -> Batch:
        """This rank's batch for ``step``; the next ones are already being decoded."""
        futures = self._pending.pop(step, None) or self._submit(step)
        for ahead in range(step + 1, step + 1 + self.prefetch):
            if ahead not in self._pending:
                self._pending[ahead] = self._submit(ahead)
        for stale in [s for s in self._pending if s < step]:
            for future in self._pending.pop(stale):
                future.cancel()
        samples = [future.result() for future in futures]
        bad = set().union(*(s[2] for s in samples))
        self.bad_records |= bad
        return Batch(np.stack([s[0] for s in samples]),
                     {r: np.stack([s[1][r] for s in samples]) for r in self.resolutions}, frozenset(bad))

    def close(self) -> None:
        for futures in self._pending.values():
            for future in futures:
                future.cancel()
        self._pending.clear()
        self.pool.shutdown(wait=True, cancel_futures=True)


def load_held_out(source: FaceSource, indices: np.ndarray) -> np.ndarray:
    """The held-out faces decoded once (bad records left out)."""
    faces = [f for f in (source.get(int(i)) for i in indices) if f is not None]
    return np.stack(faces) if faces else np.zeros((0, FACE_SIZE, FACE_SIZE, 3), np.uint8)
