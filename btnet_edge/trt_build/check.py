"""Accept engines by cosine similarity of their embeddings to the FP32 ONNX Runtime reference.

FP16 engines differ from FP32 elementwise by design, so acceptance is per
resolution: mean and minimum cosine between the two embeddings of the same
input, on random inputs and on real faces when a folder of photos is given
(mean >= 0.999 passes). Inputs are uint8 BGR crops, as the camera gives them: the
reference normalises them on the host, engines built with uint8 inputs inside.
The embedders are built from any backend per plan entry,
so the comparison is exercised on CPU with FP16 ONNX graphs and on a GPU with
TensorRT engines alike.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..backends.base import Backend
from ..package.loader import ModelPackage
from ..package.manifest import TRUNK_RESOLUTION, Manifest
from ..trt_runtime.engine_folder import EngineEntry, EngineFolder
from ..trt_runtime.trunk_chain import open_plan

log = logging.getLogger(__name__)

DEFAULT_MIN_MEAN_COSINE = 0.999
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
Embedder = Callable[[int, np.ndarray], np.ndarray]  # (resolution, (N, r, r, 3) uint8 BGR crops) -> embeddings


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of matching rows."""
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)


def embedder(manifest: Manifest, branches: Mapping[int, Backend], trunk: Backend, uint8: bool = False) -> Embedder:
    """(r, crops) -> embeddings: the branch for r (none at 112), then the trunk with the other inputs empty.

    ``uint8``: the graphs take the crops as they are (normalisation inside), else they are preprocessed here.
    """
    from ..pipeline.preprocess import preprocess

    entries = {r: info for r, info in zip(manifest.trunk.entry_resolutions, manifest.trunk.inputs)}
    image = manifest.trunk.inputs[0]

    def run(resolution: int, crops: np.ndarray) -> np.ndarray:
        images = crops if uint8 else preprocess(crops, manifest.preprocess, resolution)
        if resolution == TRUNK_RESOLUTION:
            feature = images
        else:
            branch = manifest.branch(resolution)
            feature = branches[resolution].infer({branch.input.name: images})[branch.output.name]
        feeds = {info.name: np.zeros((0, *info.shape), np.float32) for info in entries.values()}
        if uint8:
            feeds[image.name] = np.zeros((0, image.shape[1], image.shape[2], 3), np.uint8)
        feeds[entries[resolution].name] = feature
        return trunk.infer(feeds)[manifest.trunk.output.name]

    return run


def ort_reference(package: ModelPackage) -> tuple[Embedder, list[Backend]]:
    """The FP32 reference: the package's own graphs on ONNX Runtime CPU."""
    from ..backends.ort import OrtBackend

    branches = {b.resolution: OrtBackend(package.path(b.file), read_model=lambda f=b.file: package.read_verified(f),
                                       read_file=package.read_verified)
                for b in package.manifest.branches}
    trunk = OrtBackend(package.trunk_path, read_model=lambda: package.read_verified(package.manifest.trunk.file),
                       read_file=package.read_verified)
    return embedder(package.manifest, branches, trunk), [*branches.values(), trunk]


def plan_embedder(manifest: Manifest, folder: EngineFolder,
                  backend_for: Callable[[EngineEntry], Backend]) -> tuple[Embedder, list[Backend]]:
    """An embedder over the folder's engines; ``backend_for(entry)`` opens one (TensorRT, or ONNX Runtime in tests)."""
    backends = open_plan(manifest, folder, backend_for)
    return embedder(manifest, backends.branches, backends.trunk, folder.uint8), backends.opened


def resident_embedder(runner: Any) -> Embedder:
    """(r, crops) -> embeddings through a device-resident runner (what the Recognizer runs on TensorRT)."""
    return lambda resolution, crops: runner.embed({resolution: crops})[resolution]


def random_inputs(manifest: Manifest, count: int, seed: int = 0) -> dict[int, np.ndarray]:
    """Random uint8 BGR crops per resolution."""
    rng = np.random.default_rng(seed)
    return {r: rng.integers(0, 256, (count, r, r, 3), dtype=np.uint8) for r in manifest.resolutions}


def face_inputs(manifest: Manifest, folder: str | Path, limit: int = 16) -> dict[int, np.ndarray]:
    """Centre squares of the photos in ``folder`` (recursively), downsampled to each resolution (uint8 BGR).

    Crops of portrait photos stand in for aligned faces: the check compares two
    backends on the same input, so alignment quality does not matter here.
    """
    import cv2

    from ..errors import InputImageError
    from ..pipeline.image import read_image

    paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    crops = []
    for path in paths:
        try:
            image = read_image(path)  # bounded by its header, like every photo we read
        except InputImageError as exc:
            log.warning("skipping %s: %s", path, exc)
            continue
        h, w = image.shape[:2]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        crops.append(cv2.resize(image[top:top + side, left:left + side], (TRUNK_RESOLUTION, TRUNK_RESOLUTION),
                                interpolation=cv2.INTER_AREA))
    if not crops:
        return {}
    faces = np.stack(crops)
    return {r: np.stack([cv2.resize(f, (r, r), interpolation=cv2.INTER_AREA) for f in faces])
            for r in manifest.resolutions}


def compare(reference: Embedder, candidate: Embedder, inputs: Mapping[int, np.ndarray], source: str,
            threshold: float = DEFAULT_MIN_MEAN_COSINE, batch: int = 8) -> list[dict[str, Any]]:
    """One row per resolution: samples, mean and min cosine, and whether the mean reaches ``threshold``."""
    rows = []
    for resolution, images in sorted(inputs.items(), reverse=True):
        cosines = np.concatenate([cosine_rows(reference(resolution, images[i:i + batch]),
                                              candidate(resolution, images[i:i + batch]))
                                  for i in range(0, len(images), batch)])
        mean = float(cosines.mean())
        rows.append({"resolution": resolution, "source": source, "samples": len(cosines),
                     "mean_cosine": round(mean, 6), "min_cosine": round(float(cosines.min()), 6),
                     "passed": bool(mean >= threshold)})
    return rows


def close_all(backends: Sequence[Backend]) -> None:
    for backend in backends:
        backend.close()
