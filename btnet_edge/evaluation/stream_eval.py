"""Detection on video, as a camera app sees it: recall per face size, frames until a new face is found, false boxes.

Each way of detecting (``modes``) runs over the same frames and reports per frame what an
application would get: on video, the faces of tracks with 2+ detections (Tracker
``min_hits``). A reported box hits the present face it overlaps most when their IoU is at
least ``iou_threshold``; one on an ignored box (the background photo's own faces, faces
cut by the frame's edge) counts for nothing; any other is a false box. Recall is counted
over the frames each face is present, for faces present ``min_present`` frames or more;
"frames to first detection" runs from a face's first present frame to its first hit.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..pipeline.detectors._nms import box_iou
from ..pipeline.face import Face

MIN_PRESENT_FRAMES = 10
SIZE_EDGES_PX = (10, 14, 20, 30)  # report rows: faces of at least 10, 14, 20, 30 px


def detections_to_faces(detections) -> list[Face]:
    """Faces without embeddings, for a Tracker that only associates boxes."""
    return [Face(bbox=d.bbox, kps=d.kps, det_score=d.score, face_size=max(d.width, d.height), resolution=0)
            for d in detections]


def stream_mode(detector, stream: bool, min_hits: int = 2) -> Callable:
    """A per-frame function image -> reported boxes: the stream schedule (or the still plan) and a Tracker."""
    from ..pipeline.stream import StreamDetector
    from ..pipeline.track import Tracker

    tracker = Tracker(min_hits=min_hits, use_embeddings=False)
    schedule = StreamDetector(detector) if stream else None

    def run(image: np.ndarray) -> np.ndarray:
        found = schedule.detect(image, tracker.expected_boxes()) if schedule else detector.detect(image)
        faces = tracker.update(detections_to_faces(found))
        return np.array([f.bbox for f in faces], np.float32).reshape(-1, 4)

    return run


@dataclass
class _ModeState:
    """What one mode found so far: per walker, hit or not in each frame present, and the first frame found."""

    hits: defaultdict[int, list[bool]] = field(default_factory=lambda: defaultdict(list))
    first: dict[int, int] = field(default_factory=dict)
    false: int = 0
    seconds: float = 0.0


def evaluate_stream(frames: Iterable, modes: dict[str, Callable], sizes: dict[int, float], total: int | None = None,
                    iou_threshold: float = 0.5, min_present: int = MIN_PRESENT_FRAMES, progress: bool = True) -> dict:
    """Run every mode on every frame; ``sizes``: walker index -> face size (px)."""
    from tqdm.auto import tqdm

    state = {name: _ModeState() for name in modes}
    present: defaultdict[int, list[int]] = defaultdict(list)
    count = 0
    for frame in tqdm(frames, total=total, unit="frame", desc="clip", disable=not progress):
        count += 1
        for k in frame.boxes:
            present[k].append(frame.index)
        keys = list(frame.boxes)
        truth = np.array([frame.boxes[k] for k in keys], np.float32).reshape(-1, 4)
        for name, run in modes.items():
            start = time.perf_counter()
            boxes = run(frame.image)
            state[name].seconds += time.perf_counter() - start
            hit = _match(boxes, truth, frame.ignore, iou_threshold)
            st = state[name]
            st.false += hit["false"]
            for j, k in enumerate(keys):
                st.hits[k].append(bool(hit["found"][j]))
                if hit["found"][j] and k not in st.first:
                    st.first[k] = frame.index
    per_mode: dict[str, dict] = {}
    report = {"frames": count, "min_present_frames": min_present, "iou": iou_threshold, "modes": per_mode}
    counted = [k for k, frames_in in present.items() if len(frames_in) >= min_present]
    for name, st in state.items():
        rows = {}
        for edge in SIZE_EDGES_PX:
            ks = [k for k in counted if sizes[k] >= edge]
            hits = [h for k in ks for h in st.hits[k]]
            rows[f">={edge}px"] = {"faces": len(ks), "face_frames": len(hits),
                                   "recall": round(float(np.mean(hits)), 4) if hits else None}
        waits = [st.first[k] - present[k][0] for k in counted if k in st.first]
        per_mode[name] = {
            "recall": rows,
            "frames_to_first_detection": {
                "median": float(np.median(waits)) if waits else None,
                "p90": float(np.percentile(waits, 90)) if waits else None,
                "never_found": sum(k not in st.first for k in counted)},
            "false_boxes_per_frame": round(st.false / max(count, 1), 4),
            "ms_per_frame": round(st.seconds * 1e3 / max(count, 1), 2),
        }
    base = per_mode.get("coarse-only")
    if base:
        for entry in per_mode.values():
            entry["cost_vs_coarse_only"] = round(entry["ms_per_frame"] / max(base["ms_per_frame"], 1e-9), 3)
    return report


def _match(boxes: np.ndarray, truth: np.ndarray, ignore: np.ndarray, iou_threshold: float) -> dict:
    found = np.zeros(len(truth), bool)
    false = 0
    for box in boxes:
        if len(truth):
            iou = box_iou(box, truth)
            iou[found] = -1.0
            j = int(np.argmax(iou))
            if iou[j] >= iou_threshold:
                found[j] = True
                continue
            if (box_iou(box, truth) >= iou_threshold).any():
                continue  # a second box on a face already hit: a double, not a face of its own
        if len(ignore) and (box_iou(box, ignore) >= 0.3).any():
            continue
        false += 1
    return {"found": found, "false": false}


def format_stream_table(report: dict) -> str:
    lines = [f"{report['frames']} frames; recall over the frames each face is present, faces present "
             f"{report['min_present_frames']}+ frames"]
    head = f"{'mode':>12} " + " ".join(f"{k:>8}" for k in next(iter(report['modes'].values()))["recall"]) + \
        "  first-seen med/p90  false/frame  ms/frame  x coarse"
    lines.append(head)
    for name, m in report["modes"].items():
        recall = " ".join(f"{'-' if r['recall'] is None else format(r['recall'], '.3f'):>8}"
                          for r in m["recall"].values())
        wait = m["frames_to_first_detection"]
        w = "-" if wait["median"] is None else f"{wait['median']:.0f}/{wait['p90']:.0f}"
        lines.append(f"{name:>12} {recall}  {w:>18}  {m['false_boxes_per_frame']:>11.3f}  {m['ms_per_frame']:>8.1f}"
                     f"  {m.get('cost_vs_coarse_only', float('nan')):>8.2f}")
    return "\n".join(lines)
