"""btnet-edge: multi-resolution face recognition (BTNet, BMVC 2023) for the edge.

The runtime (:class:`Recognizer`) needs only numpy, OpenCV and ONNX Runtime;
export and training need the ``export`` extra (torch, onnx).
"""

from __future__ import annotations

from .errors import (
    BackendError,
    BtnetError,
    CheckpointError,
    ConfigError,
    EngineMismatchError,
    GalleryError,
    InputImageError,
    ManifestError,
    MissingDependencyError,
    PackageError,
)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "BackendError",
    "BtnetError",
    "CheckpointError",
    "ConfigError",
    "EngineMismatchError",
    "GalleryError",
    "InputImageError",
    "ManifestError",
    "MissingDependencyError",
    "PackageError",
]
