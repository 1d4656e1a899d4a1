"""BTNet per resolution against the pipeline people run today: upsample every face to 112, run the full trunk.

For resolution r and batch b, on the same backend and threads, interleaved:

- shared: ``branch_r`` on the r px faces, then the package trunk with the implant input filled;
- fused: ``fused_r`` (branch + trunk tail in one graph);
- baseline: the faces resized to 112 px (bilinear), then the trunk with only ``image_112`` filled.

By default both paths start from preprocessed tensors, so the figures are network cost, the
comparison the paper makes (the r px faces, and their 112 px upsampling for the baseline, are
prepared before timing). With ``from_crops`` both start from r px uint8 crops instead and the
timing includes preprocessing, and for the baseline the resize, as a real pipeline pays them.
The 112 px row is the trunk alone; its baseline is itself (speedup 1.0).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Callable

import cv2
import numpy as np

from ..backends.base import Backend
from ..errors import ConfigError
from ..package.loader import ModelPackage
from ..package.manifest import TRUNK_RESOLUTION
from ..pipeline.preprocess import preprocess
from .timing import Stats, TimingPlan, run_interleaved

log = logging.getLogger(__name__)

MODES = ("shared", "fused")


@dataclass(frozen=True)
class Row:
    """One line of the per-resolution table (the JSON contract's row, key for key)."""

    resolution: int
    batch: int
    mode: str
    p50_ms: float
    p90_ms: float
    p99_ms: float
    faces_per_s: float
    baseline_p50_ms: float
    speedup: float

    @classmethod
    def from_stats(cls, resolution: int, batch: int, mode: str, stats: Stats, baseline: Stats) -> Row:
        return cls(resolution, batch, mode, round(stats.p50_ms, 3), round(stats.p90_ms, 3), round(stats.p99_ms, 3),
                   round(batch / (stats.p50_ms / 1e3), 2), round(baseline.p50_ms, 3),
                   round(baseline.p50_ms / stats.p50_ms, 3))

    def to_json(self) -> dict:
        return asdict(self)


def upsample_to_112(crops: np.ndarray) -> np.ndarray:
    """(N, r, r, 3) uint8 -> (N, 112, 112, 3): the baseline's bilinear upsampling, one face at a time."""
    size = (TRUNK_RESOLUTION, TRUNK_RESOLUTION)
    return np.stack([cv2.resize(c, size, interpolation=cv2.INTER_LINEAR) for c in crops])


class ResolutionBench:
    """Holds the graphs (trunk once, branches and fused graphs as needed) and builds the timed cases."""

    def __init__(self, package: ModelPackage, make_backend: Callable[[str], Backend], from_crops: bool = False,
                 seed: int = 0) -> None:
        self.manifest = package.manifest
        self.make_backend = make_backend
        self.from_crops = from_crops
        self.rng = np.random.default_rng(seed)  # pixel values do not change latency; seeded for repeatability
        self.trunk = make_backend(self.manifest.trunk.file).load()
        self._graphs: dict[str, Backend] = {}
        self._zeros = {t.name: np.zeros((0, *t.shape), np.float32) for t in self.manifest.trunk.inputs}

    def close(self) -> None:
        for backend in (*self._graphs.values(), self.trunk):
            backend.close()

    def _graph(self, file: str) -> Backend:
        if file not in self._graphs:
            self._graphs[file] = self.make_backend(file).load()
        return self._graphs[file]

    def _input(self, crops: np.ndarray, size: int) -> Callable[[], np.ndarray]:
        """The network input for ``crops``: prepared now (network cost) or inside the timed call (from crops)."""
        spec = self.manifest.preprocess
        upsample = crops.shape[1] != size
        if self.from_crops:
            return (lambda: preprocess(upsample_to_112(crops), spec, size)) if upsample else \
                (lambda: preprocess(crops, spec, size))
        tensor = preprocess(upsample_to_112(crops) if upsample else crops, spec, size)
        return lambda: tensor

    def _trunk_call(self, name: str, make_input: Callable[[], np.ndarray]) -> Callable[[], object]:
        out = self.manifest.trunk.output.name
        return lambda: self.trunk.infer({**self._zeros, name: make_input()})[out]

    def cases(self, resolution: int, batch: int, modes: Sequence[str]) -> dict[str, Callable[[], object]]:
        """Timed calls for one block: "baseline" plus one per mode (only "baseline" at 112 px)."""
        crops = self.rng.integers(0, 256, (batch, resolution, resolution, 3), dtype=np.uint8)
        image_112 = self.manifest.trunk.inputs[0].name
        baseline = self._trunk_call(image_112, self._input(crops, TRUNK_RESOLUTION))
        if resolution == TRUNK_RESOLUTION:
            return {"baseline": baseline}
        info = self.manifest.branch(resolution)
        make_input = self._input(crops, resolution)
        cases = {"baseline": baseline}
        if "shared" in modes:
            branch = self._graph(info.file)
            cases["shared"] = self._trunk_call(
                info.output.name, lambda: branch.infer({info.input.name: make_input()})[info.output.name])
        if "fused" in modes:
            fused = next(f for f in self.manifest.fused if f.resolution == resolution)
            graph = self._graph(fused.file)
            cases["fused"] = lambda: graph.infer({fused.input.name: make_input()})[fused.output.name]
        return cases


def check_request(package: ModelPackage, resolutions: Sequence[int], batches: Sequence[int],
                  modes: Sequence[str]) -> list[str]:
    """Validate what was asked against the package; returns the modes that can run (fused needs fused graphs)."""
    known = package.manifest.resolutions
    unknown = [r for r in resolutions if r not in known]
    if unknown:
        raise ConfigError(f"package {package.manifest.name} has no {unknown} px entry; it has {known}")
    if not batches or any(b < 1 for b in batches):
        raise ConfigError(f"batch sizes should be positive integers, found {list(batches)}")
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise ConfigError(f"modes should be among {MODES}, found {list(modes)}")
    fused = {f.resolution for f in package.manifest.fused}
    missing = [r for r in resolutions if r != TRUNK_RESOLUTION and r not in fused]
    if "fused" in modes and missing:
        if list(modes) == ["fused"]:
            raise ConfigError(f"package {package.folder} has no fused graphs for {missing} px; export it with "
                              "`btnet-edge export ... --fused`, or use --mode shared")
        log.info("no fused graphs for %s px in the package (export with --fused for them): shared rows only", missing)
        return [m for m in modes if m != "fused"]
    return list(modes)


def bench_resolutions(package: ModelPackage, make_backend: Callable[[str], Backend], resolutions: Sequence[int],
                      batches: Sequence[int], modes: Sequence[str], plan: TimingPlan, from_crops: bool = False,
                      progress: bool = True) -> list[Row]:
    """Rows for every batch x resolution x mode; each block's cases run interleaved with its baseline."""
    from tqdm.auto import tqdm

    modes = check_request(package, resolutions, batches, modes)
    bench = ResolutionBench(package, make_backend, from_crops)
    blocks = [(b, r) for b in batches for r in sorted(resolutions, reverse=True)]
    rows: list[Row] = []
    bar = tqdm(total=len(blocks) * plan.repeats, unit="round", desc="bench", disable=not progress)
    try:
        for batch, resolution in blocks:
            bar.set_postfix_str(f"{resolution} px x {batch}")
            done = bar.n

            def tick(done: int = done) -> None:
                if bar.n - done >= plan.repeats:
                    bar.total += 1  # a round beyond the minimum: the median was not stable yet
                bar.update()

            stats = run_interleaved(bench.cases(resolution, batch, modes), plan, on_round=tick)
            base = stats["baseline"]
            for mode in modes:
                rows.append(Row.from_stats(resolution, batch, mode, stats.get(mode, base), base))
            log.debug("%d px x %d: %s", resolution, batch, {k: round(v.p50_ms, 2) for k, v in stats.items()})
    finally:
        bar.close()
        bench.close()
    return rows
