"""TensorRT engines against ONNX Runtime on whole frames: the same faces, the same embeddings, the bus traffic.

Both sides are full Recognizers built from one :class:`RecognizerConfig` apart from the backend
(the TensorRT side uses the engine folder's detector engine and the device-resident runner), so
this compares everything a frame goes through: detection passes fitted to the engine's profile,
alignment, batch splitting, the engines' arithmetic. Faces are matched by IoU.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import numpy as np

from ..pipeline.config import RecognizerConfig
from ..pipeline.face import Face

MATCH_IOU = 0.5


def iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def match_faces(reference: list[Face], candidate: list[Face]) -> list[tuple[int, int, float]]:
    """Greedy one-to-one matches (reference index, candidate index, IoU) of IoU >= MATCH_IOU, best first."""
    pairs = sorted(((iou(r.bbox, c.bbox), i, j) for i, r in enumerate(reference) for j, c in enumerate(candidate)),
                   reverse=True)
    used_r, used_c, matches = set(), set(), []
    for value, i, j in pairs:
        if value < MATCH_IOU or i in used_r or j in used_c:
            continue
        used_r.add(i)
        used_c.add(j)
        matches.append((i, j, value))
    return matches


def bus_traffic(recognizer: Any) -> dict[str, int]:
    """Host-device copies and syncs so far of a TensorRT Recognizer: its detector engine and its runner."""
    total = {"htod": 0, "dtoh": 0, "syncs": 0, "calls": 0}
    backend = getattr(recognizer.detector, "backend", None)
    for name, value in getattr(backend, "copies", {}).items():
        total[name] += value
    stats = getattr(recognizer.runner, "total", None)
    if stats is not None:
        total["htod"] += stats.htod_copies
        total["dtoh"] += stats.dtoh_copies
        total["syncs"] += stats.syncs
        total["calls"] += stats.calls
    return total


def compare_frames(config: RecognizerConfig, engines: str, frames: Iterable[tuple[str, np.ndarray]]) -> list[dict]:
    """One row per frame: faces on each side, matched faces, worst cosine and largest box shift, bus traffic."""
    from ..pipeline.recognizer import Recognizer

    reference = Recognizer.from_config(replace(config, backend="onnxruntime", engines=None))
    try:
        candidate = Recognizer.from_config(replace(config, backend="tensorrt", engines=str(engines)))
    except BaseException:
        reference.close()
        raise
    rows = []
    try:
        for name, frame in frames:
            before = bus_traffic(candidate)
            want, got = reference.get(frame), candidate.get(frame)
            after = bus_traffic(candidate)
            matches = match_faces(want, got)
            cosines = [float(np.dot(np.asarray(want[i].normed_embedding), np.asarray(got[j].normed_embedding)))
                       for i, j, _ in matches]
            rows.append({"frame": name, "size": f"{frame.shape[1]}x{frame.shape[0]}", "faces_onnxruntime": len(want),
                         "faces_tensorrt": len(got), "matched": len(matches),
                         "worst_cosine": min(cosines) if cosines else None,
                         "worst_iou": min(m[2] for m in matches) if matches else None,
                         **{k: after[k] - before[k] for k in after}})
    finally:
        reference.close()
        candidate.close()
    return rows


__all__ = ["bus_traffic", "compare_frames", "match_faces"]
