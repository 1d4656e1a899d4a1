"""Drop-in façades for code written against other face libraries (insightface's ``FaceAnalysis``)."""

from __future__ import annotations

from .face_analysis import FaceAnalysis

__all__ = ["FaceAnalysis"]
