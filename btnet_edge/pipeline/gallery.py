"""Moved to :mod:`btnet_edge.gallery` (storage, index and enrollment in their own package); kept for old imports."""

from ..gallery.gallery import Gallery  # noqa: F401
from ..gallery.records import IdentityInfo, Match  # noqa: F401
