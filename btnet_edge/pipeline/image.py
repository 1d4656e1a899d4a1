"""Images in and out of the pipeline: one check for arrays, one reader for files.

Arrays handed to the API must already be OpenCV BGR uint8 HxWx3: converting a
wrong array silently would hide a caller's bug (RGB vs BGR, a depth map, a
normalised float tensor). Files on disk are photos, so the reader converts the
harmless cases (grayscale, alpha) and rejects only 16-bit data, whose scaling
we cannot know.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..errors import ImageTooLargeError, InputImageError
from ..limits import MAX_IMAGE_PIXELS_ENV, max_image_pixels
from .image_header import FORMATS, image_format, image_size

log = logging.getLogger(__name__)

_EXPECTED = "an OpenCV BGR image: a uint8 array of shape (height, width, 3)"


def check_bgr_image(img: Any) -> np.ndarray:
    """Return ``img`` as a C-contiguous BGR uint8 HxWx3 array, or raise :class:`InputImageError`."""
    if img is None:
        raise InputImageError(
            f"image is None; expected {_EXPECTED}. cv2.imread returns None for a missing or "
            "unreadable file: use btnet_edge.pipeline.image.read_image(path) to get an error naming it"
        )
    if not isinstance(img, np.ndarray):
        raise InputImageError(f"image is a {type(img).__name__}; expected {_EXPECTED}. Convert it with np.asarray")
    if img.size == 0:
        raise InputImageError(f"image is empty (shape {img.shape}); expected {_EXPECTED} with height and width > 0")
    if img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 1):
        raise InputImageError(
            f"image is grayscale (shape {img.shape}); expected {_EXPECTED}. "
            "Convert it with cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)"
        )
    if img.ndim != 3:
        raise InputImageError(
            f"image has {img.ndim} dimensions (shape {img.shape}); expected {_EXPECTED}. "
            "Pass one frame at a time"
        )
    if img.shape[2] == 4:
        raise InputImageError(
            f"image has 4 channels (shape {img.shape}, BGRA?); expected {_EXPECTED}. "
            "Drop the alpha channel with cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)"
        )
    if img.shape[2] != 3:
        raise InputImageError(f"image has {img.shape[2]} channels (shape {img.shape}); expected {_EXPECTED}")
    if img.dtype != np.uint8:
        if img.dtype == np.uint16:
            hint = "scale it to 8 bits, e.g. (img >> 8).astype(np.uint8)"
        elif np.issubdtype(img.dtype, np.floating):
            hint = ("if it holds 0..1 values use (img * 255).clip(0, 255).astype(np.uint8); "
                    "if 0..255, img.astype(np.uint8)")
        else:
            hint = "convert it to uint8 0..255"
        raise InputImageError(f"image dtype is {img.dtype}; expected {_EXPECTED}: {hint}")
    return np.ascontiguousarray(img)


def check_image_pixels(data: np.ndarray | bytes, name: str, max_pixels: int | None = None) -> tuple[int, int]:
    """(width, height) of an encoded image from its header; refuse it before decoding when over ``max_pixels``.

    A file whose size cannot be read from its header (an unknown format, a damaged header)
    is refused too: what cannot be bounded is never handed to a decoder.
    """
    limit = max_image_pixels() if max_pixels is None else max_pixels
    view = (data.data if isinstance(data, np.ndarray) else memoryview(data)).cast("B")
    if len(view) == 0:
        raise InputImageError(f"{name} is empty (0 bytes); it is not an image")
    size = image_size(view)
    if size is None:
        kind = image_format(view)
        if kind is None:
            raise InputImageError(f"cannot decode {name} as an image ({len(view)} bytes): it is not a "
                                  f"{'/'.join(FORMATS)} file")
        raise InputImageError(f"{name}: its {kind} header does not declare a readable size (damaged or truncated "
                              "file), so it is not decoded; re-save it as JPEG or PNG")
    if size[0] * size[1] > limit:
        raise ImageTooLargeError(
            f"{name} is {size[0]} x {size[1]} px ({size[0] * size[1] / 1e6:.0f} MP), over the limit of "
            f"{limit / 1e6:.0f} MP (decoding it would take {3 * size[0] * size[1] / 2**30:.1f} GiB); shrink it, or "
            f"raise the limit with {MAX_IMAGE_PIXELS_ENV}=<pixels> if you trust the file"
        )
    return size


def read_image(path: str | Path, max_pixels: int | None = None) -> np.ndarray:
    """Read a photo file as BGR uint8: grayscale and BGRA files are converted, 16-bit files rejected.

    Files declaring more than ``max_pixels`` (default :func:`~btnet_edge.limits.max_image_pixels`)
    are refused from their header, before the pixels are decoded.
    """
    path = Path(path)
    if not path.is_file():
        raise InputImageError(f"image file not found: {path}" + (" (it is a directory)" if path.is_dir() else ""))
    # np.fromfile + imdecode instead of cv2.imread: same decoders, but non-ASCII paths work on every OS.
    # ANYDEPTH|ANYCOLOR (not UNCHANGED) keeps 16-bit data visible to us and still applies EXIF orientation.
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise InputImageError(f"cannot read {path}: {exc.strerror or exc}; check its permissions") from None
    width, height = check_image_pixels(data, str(path), max_pixels)
    img = cv2.imdecode(data, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    if img is None or img.size == 0:
        raise InputImageError(
            f"cannot decode {path} as an image ({data.size} bytes): OpenCV here has no decoder for it, or the "
            "file is truncated"
        )
    if img.shape[0] * img.shape[1] > width * height:  # the decoder read another size than the header declared
        raise InputImageError(f"{path} decoded to {img.shape[1]} x {img.shape[0]} px although its header declares "
                              f"{width} x {height}; the file is damaged or crafted, so it is refused")
    if img.dtype != np.uint8:
        raise InputImageError(
            f"{path} holds {img.dtype} pixels (16-bit or float image); the detector needs 8-bit photos. "
            "Convert the file to 8 bits first, e.g. cv2.imwrite(out, (img >> 8).astype(np.uint8)) for 16-bit"
        )
    if img.ndim == 2 or img.shape[2] == 1:
        log.debug("%s is grayscale: converting to BGR", path)
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.shape[2] == 4:
        log.debug("%s has an alpha channel: dropping it", path)
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    return check_bgr_image(img)
