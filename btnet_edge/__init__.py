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
    NotComputedError,
    PackageError,
)

__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy: `import btnet_edge` stays light; the Recognizer pulls OpenCV and ONNX Runtime when first used.
    if name == "Recognizer":
        from .pipeline.recognizer import Recognizer

        return Recognizer
    if name == "Face":
        from .pipeline.face import Face

        return Face
    if name == "FaceAnalysis":
        from .app.face_analysis import FaceAnalysis

        return FaceAnalysis
    if name == "Gallery":
        from .gallery import Gallery

        return Gallery
    if name == "DetectPlan":
        from .pipeline.detect_plan import DetectPlan

        return DetectPlan
    raise AttributeError(f"module 'btnet_edge' has no attribute {name!r}")

__all__ = [
    "BackendError",
    "BtnetError",
    "CheckpointError",
    "ConfigError",
    "DetectPlan",
    "EngineMismatchError",
    "Face",
    "FaceAnalysis",
    "Gallery",
    "GalleryError",
    "InputImageError",
    "ManifestError",
    "MissingDependencyError",
    "NotComputedError",
    "PackageError",
    "Recognizer",
    "__version__",
]
