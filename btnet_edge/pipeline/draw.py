"""Annotated frames: box, identity (or "?") and the branch resolution used."""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from .face import Face

KNOWN_BGR = (60, 200, 60)
UNKNOWN_BGR = (40, 160, 255)


def draw_faces(image: np.ndarray, faces: Sequence[Face]) -> np.ndarray:
    """A copy of ``image`` with each face's box and a label "name 0.71 | 14px"."""
    canvas = image.copy()
    thickness = max(1, round(max(image.shape[:2]) / 800))
    for face in faces:
        x1, y1, x2, y2 = (int(round(v)) for v in face.bbox)
        color = KNOWN_BGR if face.identity else UNKNOWN_BGR
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thickness)
        name = face.identity or "?"
        score = f" {face.identity_score:.2f}" if face.identity_score is not None else ""
        label = f"{name}{score} | {face.resolution}px"
        scale = 0.4 * thickness
        (w, h), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        y_text = max(y1 - 3, h + 2)
        cv2.rectangle(canvas, (x1, y_text - h - 2), (x1 + w + 2, y_text + 2), color, -1)
        cv2.putText(canvas, label, (x1 + 1, y_text), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas
