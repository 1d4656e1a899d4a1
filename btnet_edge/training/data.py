"""Training faces: detected and aligned at 112 once, kept in memory as uint8, augmented per step.

Distillation needs no labels, so every face the detector finds is a sample. The
teacher sees the augmented 112 px face and the branch of resolution r sees that same
face degraded to r px (area interpolation: the paper's protocol, as eval-pairs uses).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

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


def network_inputs(faces_112: np.ndarray, resolutions: Sequence[int], spec: Preprocess) -> dict[int, np.ndarray]:
    """{112: the faces, r: the faces degraded to r px} as normalized NCHW float32, per the manifest."""
    batches = {FACE_SIZE: preprocess(faces_112, spec, FACE_SIZE)}
    for r in resolutions:
        batches[r] = preprocess(np.stack([degrade(face, r) for face in faces_112]), spec, r)
    return batches


class BatchSampler:
    """Epochs of shuffled faces, augmented on the fly; the generator state travels in checkpoints."""

    def __init__(self, faces: FaceSet, batch_size: int, augmentation: Augmentation | None, seed: int = 0) -> None:
        self.faces, self.augmentation = faces, augmentation
        self.batch_size = min(batch_size, len(faces))
        self.rng = np.random.default_rng(seed)
        self._order = np.zeros(0, dtype=np.int64)

    @property
    def steps_per_epoch(self) -> int:
        return len(self.faces) // self.batch_size

    def next(self) -> np.ndarray:
        """(B, 112, 112, 3) uint8: the next batch (each epoch drops the remainder, as a DataLoader would)."""
        if len(self._order) < self.batch_size:
            self._order = self.rng.permutation(len(self.faces))[: self.steps_per_epoch * self.batch_size]
        take, self._order = self._order[: self.batch_size], self._order[self.batch_size:]
        faces = self.faces.faces[take]
        if self.augmentation is None:
            return faces
        out = np.stack([self.augmentation.apply(face, self.rng) for face in faces])
        if self.augmentation.mixup_p <= 0 or len(out) < 2:
            return out
        mixed = self.rng.random(len(out)) < self.augmentation.mixup_p
        if mixed.any():
            weight = self.rng.uniform(0.5, 1.0, size=(len(out), 1, 1, 1)).astype(np.float32)
            blend = weight * out + (1.0 - weight) * np.roll(out, 1, axis=0)
            out[mixed] = np.clip(np.rint(blend[mixed]), 0, 255).astype(np.uint8)
        return out

    def state(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "order": self._order.tolist()}

    def restore(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self._order = np.asarray(state["order"], dtype=np.int64)
