"""Branch dispatch: which resolution a face of w x h px is recognized at.

Size indicator (max, avg or min of w and h) then a rounding rule over the
package's resolutions (BTNet, arXiv 2310.09563, Sec. 4; DESIGN.md). With
resolutions 7/14/28/112 the rules reproduce the authors' ranges:
floor: 112 if >=112, 28 if 28..111, 14 if 14..27, 7 if <14;
near:  112 if >=71,  28 if 22..70,  14 if 11..21, 7 if <=10;
ceil:  112 if >=29,  28 if 15..28,  14 if 8..14,  7 if <=7.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import ConfigError

INDICATORS = ("max", "avg", "min")
ROUNDINGS = ("floor", "near", "ceil")


def face_size(width: float, height: float, indicator: str = "max") -> float:
    """The size the dispatch rule compares: max, mean or min of the box sides, in px."""
    if indicator == "max":
        return max(width, height)
    if indicator == "avg":
        return (width + height) / 2.0
    if indicator == "min":
        return min(width, height)
    raise ConfigError(f"unknown size indicator {indicator!r}; use one of {INDICATORS}")


def choose_resolution(size: float, resolutions: Sequence[int], rounding: str = "ceil") -> int:
    """The branch resolution for a face of ``size`` px.

    floor: the largest resolution not above the size; ceil: the smallest not below
    it; near: the closest, ties to the smaller (the authors' ranges). Outside the
    range the nearest end is used.
    """
    ordered = sorted(set(resolutions))
    if not ordered:
        raise ConfigError("no resolutions to dispatch to")
    if rounding == "floor":
        below = [r for r in ordered if r <= size]
        return below[-1] if below else ordered[0]
    if rounding == "ceil":
        above = [r for r in ordered if r >= size]
        return above[0] if above else ordered[-1]
    if rounding == "near":
        return min(ordered, key=lambda r: (abs(r - size), r))
    raise ConfigError(f"unknown rounding {rounding!r}; use one of {ROUNDINGS}")


def dispatch_ranges(resolutions: Sequence[int], rounding: str) -> dict[str, list[int | None]]:
    """Integer px ranges per resolution, e.g. {"14": [8, 14]} ("112": [29, None]): for manifests and docs."""
    ordered = sorted(set(resolutions))
    spans: dict[str, list[int]] = {}
    limit = 4 * ordered[-1]
    for size in range(1, limit + 1):
        r = choose_resolution(size, ordered, rounding)
        low_high = spans.setdefault(str(r), [size, size])
        low_high[1] = size
    return {key: [low if low > 1 else 0, None if high == limit else high] for key, (low, high) in spans.items()}
