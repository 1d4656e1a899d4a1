"""Aligned BGR uint8 crops -> network input, as the manifest declares (one function for every backend)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import InputImageError
from ..package.manifest import Preprocess


def preprocess(crops: np.ndarray | Sequence[np.ndarray], spec: Preprocess, size: int) -> np.ndarray:
    """(N, size, size, 3) BGR uint8 -> (N, 3, size, size) float32 in the colour order and scale of ``spec``."""
    batch = np.asarray(crops) if not isinstance(crops, np.ndarray) else crops
    if batch.ndim == 3:
        batch = batch[None]
    if batch.ndim != 4 or batch.shape[1:] != (size, size, 3):
        raise InputImageError(f"aligned faces should be (N, {size}, {size}, 3) BGR uint8, found shape {batch.shape}; "
                              f"align them to {size} px first (btnet_edge.pipeline.align.align_face)")
    if batch.dtype != np.uint8:
        raise InputImageError(f"aligned faces should be uint8 (OpenCV BGR), found {batch.dtype}")
    pixels = batch.astype(np.float32)
    if spec.color_order == "RGB":
        pixels = pixels[..., ::-1]
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    return np.ascontiguousarray(((pixels - mean) / std).transpose(0, 3, 1, 2))


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
