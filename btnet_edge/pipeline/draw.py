"""Annotated frames: box, track id, identity (or "?" with the best candidate's score) and the branch resolution.

Labels keep one readable text size whatever the face size: a small face's label goes
below its box, and a label that would cover another is moved down, with a leader line
back to its box, so crowded small faces stay legible.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from .face import Face

KNOWN_BGR = (60, 200, 60)
UNKNOWN_BGR = (40, 160, 255)
MAX_NAME_CHARS = 12
SMALL_FACE_PX = 32  # below this the label goes under the box, clear of the face
FONT = cv2.FONT_HERSHEY_SIMPLEX


def face_label(face: Face) -> str:
    """"#3 obama 0.71 | 14px"; a tracked face shows its track's identity; an unknown one "? best 0.21"."""
    tracked = face.track_id is not None
    name = face.track_identity if tracked else face.identity
    score = face.track_score if tracked else face.identity_score
    if name:
        short = name if len(name) <= MAX_NAME_CHARS else name[:MAX_NAME_CHARS - 1] + "."
        text = f"{short} {score:.2f}" if score is not None else short
    elif face.candidate_score is not None:
        text = f"? best {face.candidate_score:.2f}"
    else:
        text = "?"
    prefix = f"#{face.track_id} " if tracked else ""
    return f"{prefix}{text} | {face.resolution}px"


def _overlaps(a: tuple[int, int, int, int], taken: list[tuple[int, int, int, int]]) -> bool:
    return any(a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3] for b in taken)


def draw_faces(image: np.ndarray, faces: Sequence[Face]) -> np.ndarray:
    """A copy of ``image`` with each face's box and label."""
    canvas = image.copy()
    height, width = image.shape[:2]
    thickness = max(1, round(max(height, width) / 800))
    scale = 0.4 * thickness
    taken: list[tuple[int, int, int, int]] = [
        tuple(int(round(v)) for v in face.bbox) for face in faces]  # type: ignore[misc]
    for face in sorted(faces, key=lambda f: (f.bbox[1], f.bbox[0])):
        x1, y1, x2, y2 = (int(round(v)) for v in face.bbox)
        known = face.track_identity if face.track_id is not None else face.identity
        color = KNOWN_BGR if known else UNKNOWN_BGR
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thickness)
        label = face_label(face)
        (w, h), _ = cv2.getTextSize(label, FONT, scale, 1)
        below = face.face_size < SMALL_FACE_PX or y1 - h - 5 < 0
        y_text = y2 + h + 4 if below else y1 - 3
        x_text = min(max(x1, 0), max(width - w - 2, 0))
        rect = (x_text, y_text - h - 2, x_text + w + 2, y_text + 2)
        tries = 0
        while _overlaps(rect, [t for t in taken if t != (x1, y1, x2, y2)]) and tries < 8:
            y_text += h + 4
            rect = (x_text, y_text - h - 2, x_text + w + 2, y_text + 2)
            tries += 1
        if tries:
            cv2.line(canvas, ((x1 + x2) // 2, y2), (x_text + 2, rect[1]), color, 1, cv2.LINE_AA)
        taken.append(rect)
        cv2.rectangle(canvas, rect[:2], rect[2:], color, -1)
        cv2.putText(canvas, label, (x_text + 1, y_text), FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas
