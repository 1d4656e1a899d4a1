"""Interleaved timing: cases that are compared run in alternation, so drift and load hit all alike.

On a shared or thermally throttled machine, timing one path for a minute and then
the other measures the machine as much as the paths. Here every round runs each case
once, in an order that rotates from round to round, after an untimed warm-up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TimingPlan:
    """How long to measure.

    ``repeats`` timed rounds at least; then more rounds until each case has ``min_time_s`` seconds
    of samples and its median is stable (adding the last quarter of the samples moved it by at most
    ``stable_rel``), never more than ``max_repeats`` rounds, and no extra round once the timed
    rounds have taken ``max_block_s`` (slow cases on a busy machine would otherwise run for minutes).
    """

    warmup: int = 1
    repeats: int = 5
    min_time_s: float = 1.0
    max_repeats: int = 50
    stable_rel: float = 0.05
    max_block_s: float = 30.0

    def __post_init__(self) -> None:
        if self.warmup < 0 or self.repeats < 1 or self.min_time_s < 0 or self.stable_rel <= 0 or self.max_block_s < 0:
            raise ConfigError(f"timing needs warmup >= 0, repeats >= 1, min_time_s >= 0, stable_rel > 0 and "
                              f"max_block_s >= 0, found {self.warmup}, {self.repeats}, {self.min_time_s}, "
                              f"{self.stable_rel}, {self.max_block_s}")
        if self.max_repeats < self.repeats:
            raise ConfigError(f"max_repeats ({self.max_repeats}) should be at least repeats ({self.repeats})")


@dataclass(frozen=True)
class Stats:
    """Latency percentiles of one case, in milliseconds (linear interpolation between samples)."""

    p50_ms: float
    p90_ms: float
    p99_ms: float
    samples: int

    @classmethod
    def from_seconds(cls, samples_s: list[float]) -> Stats:
        ms = np.asarray(samples_s, dtype=np.float64) * 1e3
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        return cls(float(p50), float(p90), float(p99), len(ms))


def median_is_stable(samples: list[float], rel: float) -> bool:
    """True when the median without the newest quarter of the samples is within ``rel`` of the full median.

    Fewer than 4 samples cannot be judged and count as stable: the ``repeats`` floor decides then.
    """
    if len(samples) < 4:
        return True
    full = float(np.median(samples))
    older = float(np.median(samples[: len(samples) - max(1, len(samples) // 4)]))
    return abs(full - older) <= rel * full


def run_interleaved(cases: Mapping[str, Callable[[], object]], plan: TimingPlan,
                    on_round: Callable[[], None] | None = None) -> dict[str, Stats]:
    """Time every case, interleaved round by round; ``on_round`` is called after each timed round (progress)."""
    names = list(cases)
    if not names:
        return {}
    for _ in range(plan.warmup):
        for name in names:
            cases[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    rounds = 0
    while True:
        shift = rounds % len(names)
        for name in names[shift:] + names[:shift]:  # rotate so no case always runs first (cache, turbo)
            start = time.perf_counter()
            cases[name]()
            samples[name].append(time.perf_counter() - start)
        rounds += 1
        if on_round is not None:
            on_round()
        if rounds < plan.repeats:
            continue
        if all(sum(s) >= plan.min_time_s and median_is_stable(s, plan.stable_rel) for s in samples.values()):
            break
        if rounds >= plan.max_repeats or sum(map(sum, samples.values())) >= plan.max_block_s:
            unstable = [n for n in names if not median_is_stable(samples[n], plan.stable_rel)]
            if unstable:
                log.info("median of %s still moving after %d rounds (max_repeats / max_block_s reached); "
                         "the machine is noisy", ", ".join(unstable), rounds)
            break
    return {name: Stats.from_seconds(s) for name, s in samples.items()}
