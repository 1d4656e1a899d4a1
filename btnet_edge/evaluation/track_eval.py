"""Track identities on the synthetic walking clip: right and wrong names per face size, with and without aggregation.

For each person of ``people/<name>/`` the first photo (sorted) with a large face walks
through the clip and the others are enrolled, so the clip never shows an enrolled
photo. Every frame goes through ``Recognizer.get`` and a :class:`Tracker` once; the
frame's own match ("per frame") and the track's aggregated identity ("track") are
scored against the ground truth of the same detections.
"""

from __future__ import annotations

import logging
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..errors import InputImageError
from ..gallery import Gallery
from ..gallery.enrollment import collect_identity, people_folders, write_identity
from ..pipeline.detectors._nms import box_iou
from ..pipeline.track import Tracker
from .synth_frames import collect_source_faces
from .track_clip import plan_walkers, walking_clip

log = logging.getLogger(__name__)

SIZE_BUCKETS_PX = ((0, 10), (10, 24), (24, 48), (48, 1000))
MATCH_IOU = 0.3
MODES = ("per_frame", "track")


def _bucket(size: float) -> str:
    for low, high in SIZE_BUCKETS_PX:
        if low <= size < high:
            return f"{low}-{high}" if high < 1000 else f"{low}+"
    return "other"


def split_people(people_dir: str | Path, detector) -> tuple[dict, dict[str, list[Path]]]:
    """{name: SourceFace walking in the clip}, {name: photos to enroll}; people with one photo are left out."""
    walkers, enroll = {}, {}
    for name, photos in people_folders(people_dir).items():
        for photo in photos:
            faces = collect_source_faces([photo], detector=detector)
            if faces and len(photos) > 1:
                walkers[name] = max(faces, key=lambda f: f.box[2] - f.box[0])
                enroll[name] = [p for p in photos if p != photo]
                break
    if not walkers:
        raise InputImageError(f"{people_dir}: no person has two photos with a large face; the clip needs one "
                              "photo to walk and others to enroll")
    return walkers, enroll


def evaluate_tracking(recognizer, people_dir: str | Path, frames: int = 80, seed: int = 0,
                      tracker_options: dict | None = None, progress: bool = True, on_frame=None) -> dict:
    """Enroll, run the clip through the recognizer and a tracker, and score per size bucket (the JSON's body)."""
    from tqdm.auto import tqdm

    faces, enroll = split_people(people_dir, recognizer.detector)
    with tempfile.TemporaryDirectory(prefix="btnet-track-") as tmp:
        gallery = Gallery(Path(tmp) / "gallery.db", embedding_size=recognizer.manifest.embedding_size)
        try:
            for name, photos in enroll.items():
                write_identity(gallery, collect_identity(recognizer, name, photos, skip_bad=True))
            recognizer.gallery = gallery
            tracker = Tracker(recognizer, **(tracker_options or {}))
            walkers = plan_walkers(faces, frames, seed)
            counts: dict = {mode: defaultdict(lambda: defaultdict(int)) for mode in MODES}
            small: dict = {mode: defaultdict(lambda: defaultdict(int)) for mode in MODES}
            direction = {w.name: "away" if w.sizes_px[0] > w.sizes_px[-1] else "approaching" for w in walkers}
            tracks: dict[str, set[int]] = defaultdict(set)
            for frame in tqdm(walking_clip(walkers, seed), total=frames, unit="frame", desc="clip",
                              disable=not progress):
                found = tracker.get(frame.image)
                if on_frame is not None:
                    on_frame(frame, found)
                _score_frame(frame.boxes, found, counts, tracks, small, direction)
        finally:
            recognizer.gallery = None
            gallery.close()
    small_rows = {mode: {d: {"faces": c["faces"], "right": c["right"], "wrong": c["wrong"],
                             "right_share": round(c["right"] / c["faces"], 4) if c["faces"] else None}
                         for d, c in sorted(small[mode].items())} for mode in MODES}
    return {"buckets": _rows(counts), "under_24px_by_direction": small_rows,
            "track_ids_per_person": {n: len(tracks[n]) for n in sorted(faces)},
            "people": sorted(faces), "frames": frames, "seed": seed,
            "tracker_ms_per_frame": round(tracker.seconds * 1e3 / max(tracker.frames, 1), 3)}


def _score_frame(truth: dict[str, np.ndarray], found: list, counts: dict, tracks: dict[str, set[int]], small: dict,
                 direction: dict[str, str]) -> None:
    """Count each person's face of this frame: found or not, and right, wrong or unknown per mode."""
    used: set[int] = set()
    for name, box in truth.items():
        size = float(max(box[2] - box[0], box[3] - box[1]))
        bucket = _bucket(size)
        overlaps = box_iou(box, np.array([f.bbox for f in found], np.float32).reshape(-1, 4))
        best = max(((float(overlaps[i]), i) for i in range(len(found)) if i not in used), default=(0.0, -1))
        tiny = size < 24
        for mode in MODES:
            counts[mode][bucket]["faces"] += 1
            if tiny:
                small[mode][direction[name]]["faces"] += 1
        if best[0] < MATCH_IOU:
            continue
        used.add(best[1])
        face = found[best[1]]
        tracks[name].add(face.track_id)
        for mode, said in (("per_frame", face.identity), ("track", face.track_identity)):
            row = counts[mode][bucket]
            row["detected"] += 1
            outcome = "right" if said == name else "unknown" if said is None else "wrong"
            row[outcome] += 1
            if tiny:
                small[mode][direction[name]][outcome] += 1


def _rows(counts: dict) -> list[dict]:
    rows = []
    order = [_bucket(low) for low, _ in SIZE_BUCKETS_PX]
    for mode in MODES:
        for bucket in order:
            row = counts[mode].get(bucket)
            if not row:
                continue
            n = row["faces"]
            rows.append({"mode": mode, "size_px": bucket, "faces": n, "detected": row["detected"],
                         "right": row["right"], "wrong": row["wrong"], "unknown": row["unknown"],
                         "right_share": round(row["right"] / n, 4) if n else None,
                         "wrong_share": round(row["wrong"] / n, 4) if n else None})
    return rows


def format_table(result: dict) -> str:
    """Right and wrong names per size bucket, per frame against track, then track ids per person."""
    lines = [f"{'size px':>8} {'faces':>6} {'found':>6} | {'per-frame right':>15} {'wrong':>5} | "
             f"{'track right':>11} {'wrong':>5}"]
    by = {(r["mode"], r["size_px"]): r for r in result["buckets"]}
    for bucket in dict.fromkeys(r["size_px"] for r in result["buckets"]):
        own, track = by[("per_frame", bucket)], by[("track", bucket)]
        lines.append(f"{bucket:>8} {own['faces']:>6} {own['detected']:>6} | {own['right_share']:>15.1%} "
                     f"{own['wrong']:>5} | {track['right_share']:>11.1%} {track['wrong']:>5}")
    for d, own in result["under_24px_by_direction"]["per_frame"].items():
        track = result["under_24px_by_direction"]["track"][d]
        lines.append(f"faces under 24 px, {d}: {own['faces']}, right per frame {own['right_share']:.1%}, "
                     f"per track {track['right_share']:.1%}")
    ids = ", ".join(f"{name} {n}" for name, n in result["track_ids_per_person"].items())
    lines.append(f"track ids per person: {ids}; tracker {result['tracker_ms_per_frame']} ms/frame")
    return "\n".join(lines)
