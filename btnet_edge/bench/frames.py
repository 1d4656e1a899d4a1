"""Whole frames: where a frame's time goes (detect, align, branches, trunk, gallery), and a mixed frame.

``bench_frames`` runs ``Recognizer.get`` on images and videos and reports time per stage,
frames per second and the share of the frame spent outside model runs. ``bench_mixed``
times a synthetic frame holding faces at several resolutions two ways: the package's
shared graphs (each branch once, the trunk once for all faces) against one fused graph
call per face. Its faces are aligned crops made up for the purpose: a 7 px face is below
what any detector finds, and latency does not depend on pixel values.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from typing import Callable

import numpy as np

from ..backends.base import Backend
from ..package.loader import ModelPackage
from ..package.manifest import TRUNK_RESOLUTION
from ..pipeline.preprocess import preprocess
from ..pipeline.recognizer import Recognizer, StageTimes
from ..pipeline.runner import PackageRunner
from ..pipeline.sources import expand_inputs, iter_frames
from .timing import TimingPlan, run_interleaved

log = logging.getLogger(__name__)

STAGES = ("detect", "align", "branches", "trunk", "gallery", "total")
MIXED_RESOLUTIONS = (112, 28, 14, 7)


def stage_report(source: str, kind: str, times: StageTimes, faces: Counter,
                 pass_seconds: dict[str, float] | None = None, routes: Counter | None = None,
                 track_s: float | None = None) -> dict:
    """One ``frames`` entry: ms per frame per stage, fps, and the shares outside model runs.

    ``share_outside_models`` counts detection, branches and trunk as model runs (the detector's
    resize and NMS fall inside its stage); ``share_outside_branches_trunk`` counts only the
    recognition graphs, so it also holds the detector. ``track_ms_per_frame``: the Tracker's
    time on a video's faces (association and track identities), outside ``total``.
    """
    frames = max(times.frames, 1)
    total = times.total or float("nan")
    return {
        "source": source,
        "kind": kind,
        "frames": times.frames,
        "faces_per_frame": round(sum(faces.values()) / frames, 3),
        "faces_by_resolution": {str(r): round(n / frames, 3) for r, n in sorted(faces.items(), reverse=True)},
        "faces_by_route": {route: round(n / frames, 3) for route, n in sorted((routes or {}).items())},
        "ms_per_frame": {stage: round(getattr(times, stage) * 1e3 / frames, 3) for stage in STAGES},
        "detect_ms_per_pass": {name: round(s * 1e3 / frames, 3) for name, s in (pass_seconds or {}).items()},
        "share_outside_models": round(1.0 - (times.detect + times.branches + times.trunk) / total, 4),
        "share_outside_branches_trunk": round(1.0 - (times.branches + times.trunk) / total, 4),
        "fps": round(times.frames / total, 3),
        "track_ms_per_frame": None if track_s is None else round(track_s * 1e3 / frames, 3),
    }


def _add(into: StageTimes, times: StageTimes) -> None:
    for field in (*STAGES, "frames"):
        setattr(into, field, getattr(into, field) + getattr(times, field))


def bench_frames(recognizer: Recognizer, inputs: Sequence[str], repeats: int = 5, max_frames: int | None = None,
                 progress: bool = True, stream: bool = True) -> list[dict]:
    """One entry per image or video (plus "all" when there are several), after one untimed warm-up frame each.

    An image is recognized ``repeats`` times with the still-image plan; a video's frames (up to
    ``max_frames``) once each, as `run` does: the stream schedule (``stream``; pipeline/stream.py,
    its detection time in the detect stage) and a Tracker, whose own time is reported apart.
    """
    from tqdm.auto import tqdm

    from ..pipeline.stream import video_tracker

    entries, overall, faces_all, passes_all, routes_all = [], StageTimes(), Counter(), Counter(), Counter()
    passes = recognizer.detector.pass_seconds
    sources = expand_inputs(inputs)
    for source in tqdm(sources, unit="input", desc="frames", disable=not progress or len(sources) < 2):
        first = next(iter_frames([source], max_frames=1), None)
        if first is None:
            log.warning("%s yields no frame: skipped", source)
            continue
        recognizer.get(first.image)  # warm-up: first-run allocations and caches are not the steady state
        recognizer.times = StageTimes()
        passes.clear()
        is_video = first.index is not None
        frames = iter_frames([source], max_frames) if is_video else (first for _ in range(repeats))
        faces: Counter = Counter()
        routes: Counter = Counter()
        tracker = video_tracker(recognizer, stream=stream) if is_video else None
        for frame in frames:
            found = recognizer.get(frame.image) if tracker is None else tracker.get(frame.image)
            faces.update(face.resolution for face in found)
            routes.update(face.route for face in found)
        entry = stage_report(source, "video" if is_video else "image", recognizer.times, faces, passes, routes,
                             None if tracker is None else tracker.seconds)
        if tracker is not None and tracker.stream is not None:
            entry["stream"] = {**tracker.stream.describe(*first.image.shape[:2]), "fps_source": first.fps,
                               "faces_held_unconfirmed": tracker.held}
        entries.append(entry)
        _add(overall, recognizer.times)
        faces_all.update(faces)
        passes_all.update(passes)
        routes_all.update(routes)
    if len(entries) > 1:
        entries.append(stage_report("all", "all", overall, faces_all, passes_all, routes_all))
    return entries


def add_ratios(entries: list[dict], compared: dict[str, list[dict]]) -> None:
    """Into each default entry: the same source's time per frame under each compared run, and the ratio."""
    for name, others in compared.items():
        by_source = {e["source"]: e for e in others}
        for entry in entries:
            other = by_source.get(entry["source"])
            if other is None:
                continue
            ours, theirs = entry["ms_per_frame"]["total"], other["ms_per_frame"]["total"]
            entry.setdefault("compared", {})[name] = {
                "ms_per_frame": theirs, "faces_per_frame": other["faces_per_frame"], "fps": other["fps"],
                "ratio": round(ours / theirs, 3) if theirs else None}


def bench_mixed(package: ModelPackage, make_backend: Callable[[str], Backend], plan: TimingPlan,
                faces_per_resolution: int = 1, resolutions: Sequence[int] = MIXED_RESOLUTIONS,
                from_crops: bool = False, seed: int = 0) -> dict | None:
    """Shared graphs vs one fused call per face on a synthetic mixed frame; None when fused graphs are missing."""
    manifest = package.manifest
    fused = {f.resolution: f for f in manifest.fused}
    resolutions = [r for r in resolutions if r in manifest.resolutions]
    lacking = [r for r in resolutions if r != TRUNK_RESOLUTION and r not in fused]
    if lacking:
        log.warning("mixed-frame benchmark skipped: package has no fused graphs for %s px (export with --fused)",
                    lacking)
        return None
    rng = np.random.default_rng(seed)
    crops = {r: rng.integers(0, 256, (faces_per_resolution, r, r, 3), dtype=np.uint8) for r in resolutions}
    tensors = {r: preprocess(c, manifest.preprocess, r) for r, c in crops.items()}

    def inputs() -> dict[int, np.ndarray]:
        return {r: preprocess(c, manifest.preprocess, r) for r, c in crops.items()} if from_crops else tensors

    runner = PackageRunner(package, make_backend).load()
    graphs = {r: make_backend(fused[r].file).load() for r in resolutions if r != TRUNK_RESOLUTION}
    zeros = {t.name: np.zeros((0, *t.shape), np.float32) for t in manifest.trunk.inputs}
    image_112 = manifest.trunk.inputs[0].name

    def per_face() -> None:
        for r, batch in inputs().items():
            for i in range(len(batch)):
                face = batch[i:i + 1]
                if r == TRUNK_RESOLUTION:
                    runner.trunk.infer({**zeros, image_112: face})
                else:
                    graphs[r].infer({fused[r].input.name: face})

    try:
        stats = run_interleaved({"shared": lambda: runner.embed(inputs()), "fused_per_face": per_face}, plan)
    finally:
        runner.close()
        for graph in graphs.values():
            graph.close()
    shared, single = stats["shared"], stats["fused_per_face"]
    faces = len(resolutions) * faces_per_resolution
    return {
        "source": "synthetic mixed-resolution frame",
        "kind": "mixed",
        "faces_by_resolution": {str(r): faces_per_resolution for r in resolutions},
        "graph_runs": {"shared": sum(r != TRUNK_RESOLUTION for r in resolutions) + 1, "fused_per_face": faces},
        "shared_p50_ms": round(shared.p50_ms, 3),
        "shared_p90_ms": round(shared.p90_ms, 3),
        "fused_per_face_p50_ms": round(single.p50_ms, 3),
        "fused_per_face_p90_ms": round(single.p90_ms, 3),
        "speedup": round(single.p50_ms / shared.p50_ms, 3),
    }
