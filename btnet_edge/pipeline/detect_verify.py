"""No false faces: boxes that only the enlarged pass found must earn their place.

Enlarging a frame 2-4x makes textures face-like (a tie's pattern, a bowl, fingers, a
pine cone: docs/detection.md, "No false faces"). A box the coarse pass also saw needs no
more evidence; one seen only enlarged gets two checks, cheapest first:

- **face cues** (free): landmark geometry (the five points lie in or near the box, the nose
  between the eyes and the mouth along the face's axis, at any roll of the head, the eyes
  apart by a share of the box width) and contrast (eyes, brows and mouth make a face's grey levels spread at least
  ``MIN_CONTRAST`` of their mean; a blurred picture on a wall or a smooth surface does not).
- **second look**, for boxes scoring under ``SURE_SCORE``: the box's neighbourhood
  (``SECOND_LOOK_CONTEXT`` face sizes around it) cut out and shown to the detector with the
  face at 40 px (1.6x the enlarged pass's 25 px), then at 56 px for the boxes not found at 40;
  the crop turned so the eyes lie level; the box stays only if the detector finds a face
  (score >= ``SECOND_LOOK_SCORE``) at the crop's centre, at about that size, at one of them.
  A real face enlarged further stays a face; a texture that looked like one at 25 px seldom
  does at 40 or 56 px. Crops of one size go in one detector call.

Measured on the fixture scenes and on photos downscaled so their faces are 11-18 px:
docs/detection.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Callable

import cv2
import numpy as np

SECOND_LOOK_PX = (40.0, 56.0)  # face sides (crop px) of the looks; the second only for boxes the first missed
SECOND_LOOK_SCORE = 0.7  # real 11-18 px faces score >= 0.8 there, the textures seen <= 0.5 (docs/detection.md)
SURE_SCORE = 0.95  # enlarged-pass boxes scoring this much skip the second look (the false ones seen: 0.55-0.90)
SECOND_LOOK_CONTEXT = 2.0  # the crop reaches this many face sides from the box centre on each side
CENTRE_SLACK = 0.35  # the face found again lies this many face sizes from the crop's centre at most ...
SIZE_SLACK = 1.6  # ... and is within this factor of the size asked for
LANDMARK_MARGIN = 0.25  # landmarks may lie this share of the box side outside it
MIN_EYE_DISTANCE = 0.1  # share of the box width (a profile face still has its eyes this far apart)
MIN_CONTRAST = 0.1  # grey-level std over mean (mean taken as >= 32, so dark noise does not pass)
CONTRAST_INSET = 0.1  # measured inside the box less this share per side: the face, not its frame
PAD_BGR = (104.0, 117.0, 127.0)  # crops beyond the frame are filled with the detector's mean colour


def plausible_landmarks(boxes: np.ndarray, kps: np.ndarray) -> np.ndarray:
    """Mask of boxes whose five landmarks are laid out like a face's, at any roll of the head.

    The points lie in or near the box, the eyes apart by a share of the box width, and the nose
    between the eyes and the mouth along the line from the eyes' midpoint to the mouth's.
    """
    if not len(boxes):
        return np.zeros(0, bool)
    width = np.maximum(boxes[:, 2] - boxes[:, 0], 1e-6)
    height = np.maximum(boxes[:, 3] - boxes[:, 1], 1e-6)
    side = np.maximum(width, height)[:, None]
    inside = ((kps[..., 0] >= boxes[:, None, 0] - LANDMARK_MARGIN * side)
              & (kps[..., 0] <= boxes[:, None, 2] + LANDMARK_MARGIN * side)
              & (kps[..., 1] >= boxes[:, None, 1] - LANDMARK_MARGIN * side)
              & (kps[..., 1] <= boxes[:, None, 3] + LANDMARK_MARGIN * side)).all(axis=1)
    eyes = (kps[:, 0] + kps[:, 1]) / 2
    mouth = (kps[:, 3] + kps[:, 4]) / 2
    axis = mouth - eyes
    length = np.maximum((axis ** 2).sum(axis=1), 1e-9)
    along = ((kps[:, 2] - eyes) * axis).sum(axis=1) / length  # 0 at the eyes, 1 at the mouth
    ordered = (along > 0.0) & (along < 1.0) & (np.sqrt(length) >= MIN_EYE_DISTANCE * width)
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
                kps: np.ndarray | None = None, sizes_px: Sequence[float] = SECOND_LOOK_PX) -> np.ndarray:
    """Mask of ``boxes`` the detector finds again around themselves with the face at one of ``sizes_px``.

    The crop is turned so the eyes (``kps``, when given) lie level: a tilted head is looked at
    upright, as the detector was trained. A box is found again when a face scoring at least
    ``SECOND_LOOK_SCORE`` lies at the crop's centre (within ``CENTRE_SLACK`` face sizes) at about
    the size asked for. The sizes are tried in turn, each only for the boxes not found yet.
    ``find_batch(images) -> [Candidates]``: the detector on several images of one shape.
    """
    found_again = np.zeros(len(boxes), bool)
    for target in sizes_px:
        left = np.flatnonzero(~found_again)
        if not left.size:
            break
        side = int(round(2 * SECOND_LOOK_CONTEXT * target))
        crops = []
        for i in left:
            x1, y1, x2, y2 = (float(v) for v in boxes[i])
            scale = target / max(x2 - x1, y2 - y1, 1e-6)
            angle = 0.0
            if kps is not None:
                dx, dy = kps[i, 1] - kps[i, 0]
                angle = float(np.degrees(np.arctan2(dy, dx)))
            matrix = cv2.getRotationMatrix2D(((x1 + x2) / 2, (y1 + y2) / 2), angle, scale)
            matrix[:, 2] += np.array([side / 2 - (x1 + x2) / 2, side / 2 - (y1 + y2) / 2])
            crops.append(cv2.warpAffine(img, matrix, (side, side), flags=cv2.INTER_LINEAR,
                                        borderMode=cv2.BORDER_CONSTANT, borderValue=PAD_BGR))
        for i, found in zip(left, find_batch(crops)):
            if not len(found.scores):
                continue
            b = found.boxes
            centre = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], axis=1)
            near = np.linalg.norm(centre - side / 2, axis=1) <= CENTRE_SLACK * target
            sides = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
            sized = (sides >= target / SIZE_SLACK) & (sides <= target * SIZE_SLACK)
            found_again[i] = bool((near & sized & (found.scores >= SECOND_LOOK_SCORE)).any())
    return found_again
