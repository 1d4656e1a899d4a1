"""No false faces: boxes that only the enlarged pass found must earn their place.

Enlarging a frame 2-4x makes textures face-like (a tie's pattern, a bowl, fingers, a
pine cone: docs/detection.md, "False faces"). A box the coarse pass also saw needs no
more evidence; one seen only enlarged gets two checks, cheapest first:

- **face cues** (free): landmark geometry (the five points lie in or near the box, the eyes
  above the nose and the nose above the mouth, the eyes apart by a share of the box width)
  and contrast (eyes, brows and mouth make a face's grey levels spread at least
  ``MIN_CONTRAST`` of their mean; a blurred picture on a wall or a smooth surface does not).
- **second look**, for boxes scoring under ``SURE_SCORE``: the box's neighbourhood
  (``SECOND_LOOK_CONTEXT`` face sizes around it) cut out and shown to the detector with the
  face at 40 px (1.6x the enlarged pass's 25 px), then at 56 px for the boxes not found at 40;
  the box stays only if the detector finds it again at one of them (IoU >= ``SECOND_LOOK_IOU``,
  score >= ``SECOND_LOOK_SCORE``). A real face enlarged further stays a face; a texture that
  looked like one at 25 px seldom does at 40 or 56 px. Crops of one size go in one detector call.

Measured on the fixture scenes and on photos downscaled so their faces are 11-18 px:
docs/detection.md.
"""

from __future__ import annotations

from typing import Callable, Sequence

import cv2
import numpy as np

from .detectors._nms import box_iou

SECOND_LOOK_PX = (40.0, 56.0)  # face sides (crop px) of the looks; the second only for boxes the first missed
SECOND_LOOK_SCORE = 0.7  # real 11-18 px faces score >= 0.8 there, the textures seen <= 0.5 (docs/detection.md)
SURE_SCORE = 0.95  # enlarged-pass boxes scoring this much skip the second look (the false ones seen: 0.55-0.90)
SECOND_LOOK_CONTEXT = 2.0  # the crop reaches this many face sides from the box centre on each side
SECOND_LOOK_IOU = 0.3
LANDMARK_MARGIN = 0.25  # landmarks may lie this share of the box side outside it
MIN_EYE_DISTANCE = 0.1  # share of the box width (a profile face still has its eyes this far apart)
MIN_CONTRAST = 0.1  # grey-level std over mean (mean taken as >= 32, so dark noise does not pass)
CONTRAST_INSET = 0.1  # measured inside the box less this share per side: the face, not its frame
PAD_BGR = (104.0, 117.0, 127.0)  # crops beyond the frame are filled with the detector's mean colour


def plausible_landmarks(boxes: np.ndarray, kps: np.ndarray) -> np.ndarray:
    """Mask of boxes whose five landmarks are laid out like a face's (eyes, nose, mouth top to bottom)."""
    if not len(boxes):
        return np.zeros(0, bool)
    width = np.maximum(boxes[:, 2] - boxes[:, 0], 1e-6)
    height = np.maximum(boxes[:, 3] - boxes[:, 1], 1e-6)
    side = np.maximum(width, height)[:, None]
    inside = ((kps[..., 0] >= boxes[:, None, 0] - LANDMARK_MARGIN * side)
              & (kps[..., 0] <= boxes[:, None, 2] + LANDMARK_MARGIN * side)
              & (kps[..., 1] >= boxes[:, None, 1] - LANDMARK_MARGIN * side)
              & (kps[..., 1] <= boxes[:, None, 3] + LANDMARK_MARGIN * side)).all(axis=1)
    eyes_y = (kps[:, 0, 1] + kps[:, 1, 1]) / 2
    mouth_y = (kps[:, 3, 1] + kps[:, 4, 1]) / 2
    ordered = (eyes_y < kps[:, 2, 1]) & (kps[:, 2, 1] < mouth_y)
    apart = np.linalg.norm(kps[:, 0] - kps[:, 1], axis=1) >= MIN_EYE_DISTANCE * width
    return inside & ordered & apart


def enough_contrast(img: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Mask of boxes whose grey levels spread at least ``MIN_CONTRAST`` of their mean (a face has features)."""
    height, width = img.shape[:2]
    keep = np.ones(len(boxes), bool)
    for i, box in enumerate(boxes):
        inset = CONTRAST_INSET * np.array([box[2] - box[0], box[3] - box[1]])
        x1, y1 = max(int(round(box[0] + inset[0])), 0), max(int(round(box[1] + inset[1])), 0)
        x2, y2 = min(int(round(box[2] - inset[0])), width), min(int(round(box[3] - inset[1])), height)
        if x2 - x1 < 2 or y2 - y1 < 2:
            continue  # (almost) outside the frame: nothing to judge
        grey = cv2.cvtColor(img[y1:y2, x1:x2], cv2.COLOR_BGR2GRAY).astype(np.float32)
        keep[i] = float(grey.std()) >= MIN_CONTRAST * max(float(grey.mean()), 32.0)
    return keep


def face_cues(img: np.ndarray, boxes: np.ndarray, kps: np.ndarray) -> np.ndarray:
    """Mask of boxes with a face's landmark layout and contrast."""
    keep = plausible_landmarks(boxes, kps)
    if keep.any():
        keep[keep] = enough_contrast(img, boxes[keep])
    return keep


def second_look(find_batch: Callable[[list[np.ndarray]], list], img: np.ndarray, boxes: np.ndarray,
                sizes_px: Sequence[float] = SECOND_LOOK_PX) -> np.ndarray:
    """Mask of ``boxes`` the detector finds again around themselves with the face at one of ``sizes_px``.

    The sizes are tried in turn, each only for the boxes not found yet. ``find_batch(images) ->
    [Candidates]``: the detector on several images of one shape.
    """
    found_again = np.zeros(len(boxes), bool)
    for target in sizes_px:
        left = np.flatnonzero(~found_again)
        if not left.size:
            break
        side = int(round(2 * SECOND_LOOK_CONTEXT * target))
        crops, transforms = [], []
        for i in left:
            x1, y1, x2, y2 = (float(v) for v in boxes[i])
            scale = target / max(x2 - x1, y2 - y1, 1e-6)
            dx, dy = side / 2 - scale * (x1 + x2) / 2, side / 2 - scale * (y1 + y2) / 2
            matrix = np.array([[scale, 0.0, dx], [0.0, scale, dy]], np.float64)
            crops.append(cv2.warpAffine(img, matrix, (side, side), flags=cv2.INTER_LINEAR,
                                        borderMode=cv2.BORDER_CONSTANT, borderValue=PAD_BGR))
            transforms.append((scale, dx, dy))
        for i, found, (scale, dx, dy) in zip(left, find_batch(crops), transforms):
            if not len(found.scores):
                continue
            back = found.boxes.copy()
            back[:, [0, 2]] = (back[:, [0, 2]] - dx) / scale
            back[:, [1, 3]] = (back[:, [1, 3]] - dy) / scale
            overlap = box_iou(np.asarray(boxes[i], np.float32), back) >= SECOND_LOOK_IOU
            found_again[i] = bool((overlap & (found.scores >= SECOND_LOOK_SCORE)).any())
    return found_again
