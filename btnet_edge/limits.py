"""Safety limits a user can raise: image pixels decoded, and the largest resolution a manifest may declare.

They stop a decompression bomb (a 30000 x 30000 PNG of 856 KB decodes to 2.7 GB)
or a manifest declaring a 100000 px branch from exhausting memory. Raise them with
the environment variables below, or per call where the API takes a limit.
"""

from __future__ import annotations

import os

from .errors import ConfigError

MAX_IMAGE_PIXELS_ENV = "BTNET_MAX_IMAGE_PIXELS"
MAX_RESOLUTION_ENV = "BTNET_MAX_RESOLUTION"
DEFAULT_MAX_IMAGE_PIXELS = 178_956_970  # Pillow's default: about 180 MP, 537 MB as BGR
DEFAULT_MAX_RESOLUTION = 1024  # px, for any resolution or tensor side a manifest declares


def _from_env(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or not text.strip():
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"environment variable {name}={text!r} should be a whole number of at least 1 "
                          f"(default {default}); fix or unset it")
    return value


def max_image_pixels() -> int:
    """Width x height above which an image file is refused before its pixels are decoded."""
    return _from_env(MAX_IMAGE_PIXELS_ENV, DEFAULT_MAX_IMAGE_PIXELS)


def max_resolution() -> int:
    """The largest resolution (px) a package manifest may declare for a branch or an input side."""
    return _from_env(MAX_RESOLUTION_ENV, DEFAULT_MAX_RESOLUTION)
