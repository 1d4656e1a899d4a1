"""Moved to :mod:`btnet_edge.gallery.enrollment`; kept for old imports."""

from ..gallery.enrollment import *  # noqa: F403
from ..gallery.enrollment import collect_identity, enroll_identity, enroll_people, pick_face, write_identity  # noqa: F401
