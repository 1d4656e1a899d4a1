"""insightface-style reads of a Face: ``face["embedding"]``, ``face.get(...)``, ``"embedding" in face``.

insightface's Face is a dict whose ``__getattr__`` returns None for any name, so a typo
or an attribute no model computed reads as "absent". Here known fields read as they
do there, a typo is an error, and the attributes insightface's other models compute
(age, gender, 3D landmarks, ...) raise :class:`NotComputedError` saying so.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields
from typing import Any

from ..errors import NotComputedError

# insightface attributes that come from models btnet-edge does not run, and which model computes each.
NOT_COMPUTED = {
    "age": "genderage", "gender": "genderage", "sex": "genderage",
    "landmark_2d_106": "landmark_2d_106", "landmark_3d_68": "landmark_3d_68", "pose": "landmark_3d_68",
}
_DERIVED = ("normed_embedding", "embedding_norm")


def not_computed(name: str) -> NotComputedError:
    return NotComputedError(
        f"face.{name} is not computed by btnet-edge: it comes from insightface's {NOT_COMPUTED[name]} model, "
        "and btnet-edge runs only detection (bbox, kps, det_score) and recognition (embedding). "
        "Run that insightface model on the same image if you need it (docs/insightface-migration.md)")


class InsightfaceAccess:
    """Mixin for the frozen Face dataclass: dict-style reads of its fields."""

    def keys(self) -> list[str]:
        """Names that hold a value, as the keys of insightface's Face dict."""
        names = [f.name for f in fields(self)] + list(_DERIVED)  # type: ignore[arg-type]
        return [n for n in names if getattr(self, n) is not None]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.keys()

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __getitem__(self, name: str) -> Any:
        if name in NOT_COMPUTED:
            raise not_computed(name)
        if name not in self.keys():
            known = ", ".join(self.keys())
            raise KeyError(f"face has no {name!r}; it has: {known}")
        return getattr(self, name)

    def get(self, name: str, default: Any = None) -> Any:
        """``face.get("embedding")``; ``default`` for names a face may lack; an error for attributes never computed."""
        if name in NOT_COMPUTED:
            raise not_computed(name)
        return getattr(self, name) if name in self.keys() else default

    def __getattr__(self, name: str) -> Any:  # only reached when normal lookup fails
        if name in NOT_COMPUTED:
            raise not_computed(name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
