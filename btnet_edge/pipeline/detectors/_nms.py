"""Box geometry shared by every detector: IoU and greedy non-maximum suppression, in numpy."""

from __future__ import annotations

import numpy as np


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one x1,y1,x2,y2 box against an (N, 4) array."""
    return _overlap(box, boxes, over_min=False)


def _overlap(box: np.ndarray, boxes: np.ndarray, over_min: bool) -> np.ndarray:
    ix1 = np.maximum(box[0], boxes[:, 0])
    iy1 = np.maximum(box[1], boxes[:, 1])
    ix2 = np.minimum(box[2], boxes[:, 2])
    iy2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area = max(float(box[2] - box[0]), 0.0) * max(float(box[3] - box[1]), 0.0)
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    denom = np.minimum(area, areas) if over_min else area + areas - inter
    return inter / np.maximum(denom, 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float,
        containment_threshold: float | None = None) -> np.ndarray:
    """Indices of the boxes kept by greedy NMS, best score first.

    ``containment_threshold`` also drops a box when that fraction of the smaller
    box lies inside a better one: merging tiles needs it, since a face seen whole
    at low resolution and again in a tile can give boxes of different sizes.
    """
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        best = order[0]
        keep.append(int(best))
        rest = order[1:]
        if not rest.size:
            break
        drop = _overlap(boxes[best], boxes[rest], over_min=False) > iou_threshold
        if containment_threshold is not None:
            drop |= _overlap(boxes[best], boxes[rest], over_min=True) > containment_threshold
        order = rest[~drop]
    return np.asarray(keep, dtype=np.int64)
