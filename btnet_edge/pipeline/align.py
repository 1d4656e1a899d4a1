"""Alignment straight to a branch's native size: geometry as data plus pure functions.

A face is warped onto the ArcFace 5-point template scaled to r x r. It is never
aligned at 112 first and shrunk after, and never upsampled beyond what the warp
itself asks. When the warp shrinks the face, the region is first reduced with area
interpolation (what the paper's degradation does), so small outputs do not alias.
"""

from __future__ import annotations

import cv2
import numpy as np

# ArcFace 5-point template for 112 x 112 (insightface utils/face_align.py, arcface_dst):
# left eye, right eye, nose tip, left mouth corner, right mouth corner.
ARCFACE_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
TEMPLATE_SIZE = 112
_AREA_BELOW_SCALE = 0.8  # warps shrinking more than this are pre-reduced with INTER_AREA


def template_for(size: int) -> np.ndarray:
    """The ArcFace template scaled to ``size`` x ``size`` (pixel centres kept aligned)."""
    return ARCFACE_TEMPLATE_112 * (size / TEMPLATE_SIZE)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping src to dst (Umeyama 1991): 2x3."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    covariance = dst_c.T @ src_c / len(src)
    u, singular, vt = np.linalg.svd(covariance)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1] = -1.0
    rotation = u @ np.diag(d) @ vt
    variance = (src_c ** 2).sum() / len(src)
    scale = float((singular * d).sum() / variance) if variance > 0 else 1.0
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def _warp(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Warp to size x size; shrink the needed region with INTER_AREA first when the warp shrinks a lot."""
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale < _AREA_BELOW_SCALE:
        inverse = cv2.invertAffineTransform(matrix)
        corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], dtype=np.float64) @ inverse.T
        h, w = image.shape[:2]
        x0 = int(max(np.floor(corners[:, 0].min()) - 2, 0))
        y0 = int(max(np.floor(corners[:, 1].min()) - 2, 0))
        x1 = int(min(np.ceil(corners[:, 0].max()) + 2, w))
        y1 = int(min(np.ceil(corners[:, 1].max()) + 2, h))
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            region = image[y0:y1, x0:x1]
            new_w = max(1, int(round((x1 - x0) * scale)))
            new_h = max(1, int(round((y1 - y0) * scale)))
            reduced = cv2.resize(region, (new_w, new_h), interpolation=cv2.INTER_AREA)
            sx, sy = new_w / (x1 - x0), new_h / (y1 - y0)
            # p_image = p_reduced / s + origin  ->  matrix composed with that map
            to_image = np.array([[1 / sx, 0, x0], [0, 1 / sy, y0], [0, 0, 1]], dtype=np.float64)
            matrix = matrix @ to_image
            image = reduced
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=0.0)


def align_face(image: np.ndarray, kps: np.ndarray, size: int) -> np.ndarray:
    """The face with landmarks ``kps`` (5, 2) warped onto the template at ``size`` px (BGR uint8)."""
    matrix = similarity_transform(np.asarray(kps, dtype=np.float64).reshape(5, 2), template_for(size))
    return _warp(image, matrix, size)


def crop_box(image: np.ndarray, bbox: np.ndarray, size: int) -> np.ndarray:
    """Box-crop mode for unreliable landmarks: the square around the box, resized to ``size``.

    Area interpolation when shrinking, linear when the box is smaller than ``size``.
    Parts outside the frame are black, as in the landmark mode.
    """
    x1, y1, x2, y2 = (float(v) for v in bbox[:4])
    side = max(x2 - x1, y2 - y1, 1.0)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    scale = size / side
    matrix = np.array([[scale, 0, size / 2 - scale * cx], [0, scale, size / 2 - scale * cy]], dtype=np.float64)
    return _warp(image, matrix, size)


def degrade(aligned: np.ndarray, size: int) -> np.ndarray:
    """An aligned face reduced to ``size`` px with area interpolation: the paper's low-resolution protocol."""
    if aligned.shape[0] == size:
        return aligned.copy()
    return cv2.resize(aligned, (size, size), interpolation=cv2.INTER_AREA)
