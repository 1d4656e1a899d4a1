"""Verification on pairs at chosen resolutions: BTNet's protocol (aligned at 112, degraded with area).

Each face is aligned at 112 (photos: the largest confident detection; aligned crops:
resized to 112), reduced to r px with :func:`~btnet_edge.pipeline.align.degrade`, then
embedded either by the r px branch ("branch") or upsampled back to 112 (bilinear) for
the trunk ("upsample", the baseline). Resolution pairs are 112 & r (img1 at 112, img2
at r) and r & r; at 112 both methods are the trunk itself.
"""

from __future__ import annotations

import csv
import logging
import os
import platform
import random
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import cv2
import numpy as np

from .. import __version__
from ..errors import ConfigError, InputImageError
from ..pipeline.align import align_face, degrade
from ..pipeline.face import Face
from ..pipeline.image import read_image
from ..pipeline.sources import IMAGE_SUFFIXES
from . import metrics

log = logging.getLogger(__name__)

TRUNK_SIZE = 112
METHODS = ("branch", "upsample")
INPUT_KINDS = ("auto", "photo", "crop")
CROP_MAX_SIDE = 128  # "auto": a square image this small is an aligned crop; anything else is a photo
FAR_TARGETS = (1e-2, 1e-3)


@dataclass(frozen=True)
class Pair:
    """Two images and whether they show the same person."""

    img1: Path
    img2: Path
    same: bool


def read_pairs(csv_path: str | Path) -> list[Pair]:
    """PAIRS.csv with columns img1,img2,same (paths relative to the file, same = 1 or 0)."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise InputImageError(f"pairs file not found: {csv_path}")
    with open(csv_path, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"img1", "img2", "same"} - set(reader.fieldnames or [])
        if missing:
            raise ConfigError(f"{csv_path} should have the columns img1,img2,same; it lacks {sorted(missing)}")
        pairs = []
        for line, row in enumerate(reader, start=2):
            same = (row["same"] or "").strip()
            if same not in ("0", "1"):
                raise ConfigError(f"{csv_path}:{line}: same should be 1 or 0, found {same!r}")
            a, b = (csv_path.parent / row[k].strip() for k in ("img1", "img2"))
            for path in (a, b):
                if not path.is_file():
                    raise InputImageError(f"{csv_path}:{line}: image {path} not found (paths are relative to the CSV)")
            pairs.append(Pair(a, b, same == "1"))
    if not pairs:
        raise ConfigError(f"{csv_path} holds no pairs")
    return pairs


def identity_folders(root: str | Path) -> dict[str, list[Path]]:
    """{identity: image files} from ``root/<identity>/*`` (sorted; empty folders left out)."""
    root = Path(root)
    if not root.is_dir():
        raise InputImageError(f"{root} is not a folder of identity subfolders")
    found = {d.name: sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
             for d in sorted(root.iterdir()) if d.is_dir()}
    found = {name: files for name, files in found.items() if files}
    if not found:
        raise InputImageError(f"{root} has no identity subfolders with images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return found


def all_pairs(root: str | Path, seed: int = 0) -> list[Pair]:
    """Every same and different pair among the images of ``root/<identity>/``, in a seeded order.

    Shuffled so that the contiguous folds of the 10-fold accuracy mix both kinds.
    """
    items = [(name, path) for name, files in identity_folders(root).items() for path in files]
    pairs = [Pair(a, b, na == nb) for (na, a), (nb, b) in combinations(items, 2)]
    random.Random(seed).shuffle(pairs)
    return pairs


def write_pairs(pairs: Sequence[Pair], csv_path: str | Path) -> Path:
    """Write PAIRS.csv with paths relative to its folder."""
    csv_path = Path(csv_path)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    base = csv_path.parent.resolve()
    with open(csv_path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["img1", "img2", "same"])
        for pair in pairs:
            rel = [Path(os.path.relpath(p.resolve(), base)).as_posix() for p in (pair.img1, pair.img2)]
            writer.writerow([rel[0], rel[1], int(pair.same)])
    return csv_path


def is_aligned_crop(image: np.ndarray, input_kind: str) -> bool:
    if input_kind not in INPUT_KINDS:
        raise ConfigError(f"input kind should be one of {INPUT_KINDS}, found {input_kind!r}")
    if input_kind != "auto":
        return input_kind == "crop"
    h, w = image.shape[:2]
    return h == w and h <= CROP_MAX_SIDE


def aligned_112(recognizer, image: np.ndarray, input_kind: str = "auto") -> np.ndarray | None:
    """The photo's main face aligned at 112 (None when no face), or an aligned crop resized to 112."""
    from ..pipeline.recognizer import main_face

    if is_aligned_crop(image, input_kind):
        interpolation = cv2.INTER_AREA if image.shape[0] > TRUNK_SIZE else cv2.INTER_LINEAR
        return cv2.resize(image, (TRUNK_SIZE, TRUNK_SIZE), interpolation=interpolation)
    detections = recognizer.detector.detect(image)
    faces = [Face(bbox=d.bbox, kps=d.kps, det_score=d.score, face_size=max(d.width, d.height), resolution=TRUNK_SIZE)
             for d in detections]
    face = main_face(faces)
    return None if face is None else align_face(image, face.kps, TRUNK_SIZE)


def default_method(recognizer, resolution: int) -> str:
    """The route the Recognizer's branch policy gives faces of this resolution: "branch" or "upsample"."""
    return "branch" if recognizer.routes.get(resolution) == "branch" else "upsample"


def embed_at(recognizer, faces_112: np.ndarray, resolution: int, method: str) -> np.ndarray:
    """L2-normalized embeddings of 112 px aligned faces degraded to ``resolution`` px."""
    if method == "default":
        method = default_method(recognizer, resolution)
    if method not in METHODS:
        raise ConfigError(f"method should be one of {METHODS} or default, found {method!r}")
    if resolution == TRUNK_SIZE:
        return recognizer.embed(faces_112, TRUNK_SIZE)
    small = np.stack([degrade(face, resolution) for face in faces_112])
    if method == "branch":
        return recognizer.embed(small, resolution)
    upsampled = np.stack([cv2.resize(face, (TRUNK_SIZE, TRUNK_SIZE), interpolation=cv2.INTER_LINEAR) for face in small])
    return recognizer.embed(upsampled, TRUNK_SIZE)


def resolution_pairs(resolutions: Sequence[int]) -> list[tuple[int, int]]:
    """(112, 112) then, for each r below 112 (largest first), (112, r) and (r, r)."""
    out = [(TRUNK_SIZE, TRUNK_SIZE)]
    for r in sorted({int(r) for r in resolutions if int(r) != TRUNK_SIZE}, reverse=True):
        out += [(TRUNK_SIZE, r), (r, r)]
    return out


def evaluate_pairs(recognizer, pairs: Sequence[Pair], resolutions: Sequence[int], methods: Sequence[str] = METHODS,
                   input_kind: str = "auto", folds: int = 10, progress: bool = False) -> dict:
    """Rows of the contract (one per resolution pair and method), curves for the ROC plot, skipped images."""
    from tqdm.auto import tqdm

    routed = check_resolutions(recognizer, resolutions, methods)
    paths = sorted({p for pair in pairs for p in (pair.img1, pair.img2)})
    faces: dict[Path, np.ndarray] = {}
    skipped = []
    for path in tqdm(paths, desc="faces", unit="img", disable=not progress):
        face = aligned_112(recognizer, read_image(path), input_kind)
        if face is None:
            log.warning("no face found in %s: its pairs are left out", path)
            skipped.append(str(path))
        else:
            faces[path] = face
    kept = [p for p in pairs if p.img1 in faces and p.img2 in faces]
    labels = np.array([p.same for p in kept], dtype=bool)
    if len(kept) < folds or labels.all() or not labels.any():
        raise InputImageError(f"{len(kept)} usable pairs ({int(labels.sum())} same) after leaving out images without "
                              f"a face; need at least {folds} with both same and different pairs")
    index = {path: i for i, path in enumerate(faces)}
    stack = np.stack(list(faces.values()))
    first = np.array([index[p.img1] for p in kept])
    second = np.array([index[p.img2] for p in kept])
    rows, curves = score_pairs(recognizer, stack, first, second, labels, resolutions, methods, folds)
    return {"rows": rows, "curves": curves, "skipped_images": skipped, "faces": len(faces),
            "default_routes": {str(r): route for r, route in routed.items()}}


def check_resolutions(recognizer, resolutions: Sequence[int], methods: Sequence[str]) -> dict[int, str]:
    """The default route of each resolution; errors for resolutions out of range or without a branch."""
    if any(not 2 <= r <= TRUNK_SIZE for r in resolutions):
        raise ConfigError(f"resolutions should lie between 2 and {TRUNK_SIZE} px, found {list(resolutions)}")
    bad = [r for r in resolutions if r != TRUNK_SIZE and r not in recognizer.manifest.resolutions]
    if bad and "branch" in methods:
        raise ConfigError(f"package has no branch for {bad} px (it has {recognizer.manifest.resolutions}); "
                          "choose --resolutions among those or use --method upsample")
    return {r: default_method(recognizer, r) for r in resolutions if r != TRUNK_SIZE}


def score_pairs(recognizer, stack: np.ndarray, first: np.ndarray, second: np.ndarray, labels: np.ndarray,
                resolutions: Sequence[int], methods: Sequence[str], folds: int = 10) -> tuple[list, list]:
    """Rows and ROC curves for pairs (stack[first[i]], stack[second[i]]) of 112 px aligned faces."""
    cache: dict[tuple[int, str], np.ndarray] = {}

    def embeddings(resolution: int, method: str) -> np.ndarray:
        if method == "default":
            method = default_method(recognizer, resolution)
        key = (resolution, "trunk" if resolution == TRUNK_SIZE else method)
        if key not in cache:
            cache[key] = embed_at(recognizer, stack, resolution, method)
        return cache[key]

    rows, curves = [], []
    for res_a, res_b in resolution_pairs(resolutions):
        for method in methods:
            scores = np.sum(embeddings(res_a, method)[first] * embeddings(res_b, method)[second], axis=1)
            far, tar, _ = metrics.roc_curve(scores, labels)
            accuracy = metrics.kfold_accuracy(scores, labels, folds)
            rows.append({
                "res_a": res_a, "res_b": res_b, "method": method,
                **({"route": default_method(recognizer, res_b) if res_b != TRUNK_SIZE else "trunk"}
                   if method == "default" else {}),
                "accuracy": round(accuracy["mean"], 6), "accuracy_std": round(accuracy["std"], 6),
                "auc": round(metrics.curve_auc(far, tar), 6),
                "tar_at_far": {f"{t:.0e}".replace("e-0", "e-"): round(metrics.tar_at_far(scores, labels, t), 6)
                               for t in FAR_TARGETS},
                "pairs": len(labels), "same_pairs": int(labels.sum()),
                # how close the same face lands to its own 112 px embedding: no labels, less noise than pairs
                "same_face_cosine": round(float(np.mean(np.sum(embeddings(TRUNK_SIZE, method)
                                                               * embeddings(res_b, method), axis=1))), 6),
                "mean_score_same": round(float(scores[labels].mean()), 6),
                "mean_score_different": round(float(scores[~labels].mean()), 6),
            })
            curves.append({"res_a": res_a, "res_b": res_b, "method": method, "far": far, "tar": tar})
    return rows, curves


def evaluate_bin(recognizer, bin_path: str | Path, resolutions: Sequence[int], methods: Sequence[str] = METHODS,
                 folds: int = 10) -> dict:
    """The rows of :func:`evaluate_pairs` for an insightface .bin (aligned 112 crops, pairs 2i and 2i+1)."""
    from .bin_pairs import decode_faces, read_bin

    bin_path = Path(bin_path)
    routed = check_resolutions(recognizer, resolutions, methods)
    images, issame = read_bin(bin_path)
    labels = np.asarray(issame, dtype=bool)
    if len(labels) < folds or labels.all() or not labels.any():
        raise InputImageError(f"{bin_path}: {len(labels)} pairs ({int(labels.sum())} same); need at least {folds} "
                              "with both same and different pairs")
    stack = decode_faces(images, bin_path)
    first, second = np.arange(0, len(stack), 2), np.arange(1, len(stack), 2)
    rows, curves = score_pairs(recognizer, stack, first, second, labels, resolutions, methods, folds)
    for row in rows:
        row["set"] = bin_path.stem
    return {"rows": rows, "curves": curves, "skipped_images": [], "faces": len(stack),
            "default_routes": {str(r): route for r, route in routed.items()}}


def environment(recognizer, **extra: object) -> dict:
    """What produced the numbers: package, backend and library versions (the JSON's ``env``)."""
    import onnxruntime

    manifest = recognizer.manifest
    return {
        "btnet_edge": __version__,
        "package": str(recognizer.package.folder),
        "package_name": manifest.name,
        "architecture": manifest.architecture,
        "weights": manifest.weights,
        "trunk_sha256": manifest.files.get(manifest.trunk.file),
        "trained_branches": bool(manifest.extra.get("import_report", {}).get("training")),
        "branch_policy": getattr(recognizer, "branch_policy", None),
        "backend": type(recognizer.runner.trunk).__name__,
        "detector": type(recognizer.detector).__name__,
        "degrade": "cv2.INTER_AREA to r px; upsample baseline cv2.INTER_LINEAR back to 112",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "onnxruntime": onnxruntime.__version__,
        "platform": platform.platform(),
        **extra,
    }
