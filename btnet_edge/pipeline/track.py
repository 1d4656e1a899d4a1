"""Tracking: a track id per face across video frames, and an identity per track from its aggregated embeddings.

The Recognizer stays frame-stateless; video state lives here. A :class:`Tracker` is fed
the faces of one frame at a time (``update``) or frames (``get``, which runs the
Recognizer first) and returns the same faces with ``track_id``, the track's identity
(``track_identity``, ``track_score``) and, for faces their own frame leaves unknown, the
best gallery candidate and its score.

Association is ours, not ByteTrack's (docs/design.md, "Tracking"): a face of 8-20 px
walking moves several box widths per frame, so IoU alone loses it. A face joins a track
when its centre lies within ``max_jump`` sizes of the track's constant-velocity
prediction and its size is within ``max_size_ratio``; among candidates the pairing is
greedy on a score of overlap, closeness and embedding similarity. A track survives
``max_missed`` frames without a detection.

Identity: each observation weighs ``det_score * min(1, size / FULL_WEIGHT_PX) ** 2``; the
track's aggregate is the weighted mean of the normalised embeddings of its ``keep_best``
heaviest observations, matched against the gallery. So a name established while the face
was large carries on when it is small, and a person approaching is judged on their best
frames so far, not diluted by the many tiny ones before (measured: docs/design.md). An
aggregate below the gallery's threshold still names the track when at least
``min_agreeing`` frames were confidently matched, all to the aggregate's best identity. A
track is not forced to a name when the top two identities are closer than
``min_margin`` or when the frames' own confident names disagree (another name holds
more than ``max_conflict`` of the weighted votes).
"""

from __future__ import annotations

import heapq
import time
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from .detectors._nms import box_iou
from .face import Face

FULL_WEIGHT_PX = 64.0  # faces this big or bigger count fully in a track's aggregate
KEEP_BEST = 8  # observations in a track's aggregate: the heaviest so far
MAX_OBSERVATIONS = 256  # per track, the most recent kept for inspection (the aggregate keeps its own)


@dataclass(frozen=True)
class Observation:
    """One frame's evidence for a track."""

    frame: int
    face_size: float
    det_score: float
    route: str
    resolution: int
    weight: float
    identity: str | None


@dataclass
class Track:
    """A tracked face: where it is, how it moves, and its evidence."""

    track_id: int
    bbox: np.ndarray
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2, np.float32))
    missed: int = 0
    hits: int = 0
    best: list = field(default_factory=list)  # min-heap of (weight, sequence, normalised embedding)
    votes: dict = field(default_factory=lambda: defaultdict(float))  # weighted, per name matched by a frame
    named_frames: dict = field(default_factory=lambda: defaultdict(int))
    observations: deque = field(default_factory=lambda: deque(maxlen=MAX_OBSERVATIONS))
    identity: str | None = None
    identity_score: float | None = None

    @property
    def size(self) -> float:
        return float(max(self.bbox[2] - self.bbox[0], self.bbox[3] - self.bbox[1]))

    def predicted_centre(self) -> np.ndarray:
        return _centre(self.bbox) + self.velocity * (self.missed + 1)

    def aggregate(self) -> np.ndarray | None:
        """Unit-length weighted mean of the heaviest observations' embeddings (None before any embedding)."""
        if not self.best:
            return None
        total = sum(weight * embedding for weight, _, embedding in self.best)
        return total / max(float(np.linalg.norm(total)), 1e-12)


def observation_weight(face: Face) -> float:
    """How much one face counts in its track's aggregate: detection score times squared relative size."""
    return float(face.det_score) * min(1.0, float(face.face_size) / FULL_WEIGHT_PX) ** 2


def _centre(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2], np.float32)


class Tracker:
    """Track ids and per-track identities for faces of consecutive frames (one Tracker per video or camera).

    ``recognizer``: a :class:`~btnet_edge.pipeline.recognizer.Recognizer` for :meth:`get`; its
    gallery is used unless ``gallery`` is given. Without a gallery, tracks get ids but no names.
    ``aggregate=False`` makes the track's identity the latest frame's own (for comparison).
    ``frame_step``: source frames per update (`run --stride`): motion between updates, and so
    the ``max_jump`` and ``max_size_ratio`` gates, grow with it. ``min_hits``: a track's faces
    are returned once it has this many detections (2 on video, :func:`video_tracker`: a false
    box seldom repeats). ``stream``: a :class:`~btnet_edge.pipeline.stream.StreamDetector`
    that :meth:`get` detects with, told where the live tracks are expected.
    """

    def __init__(self, recognizer=None, *, gallery=None, max_missed: int = 3, max_jump: float = 2.5,
                 max_size_ratio: float = 1.6, min_margin: float = 0.05, max_conflict: float = 0.25,
                 use_embeddings: bool = True, aggregate: bool = True, keep_best: int = KEEP_BEST,
                 min_agreeing: int = 2, frame_step: int = 1, min_hits: int = 1, stream=None) -> None:
        self.recognizer = recognizer
        self.gallery = gallery if gallery is not None else getattr(recognizer, "gallery", None)
        step = max(1, frame_step)
        self.max_missed, self.max_jump, self.max_size_ratio = max_missed, max_jump * step, max_size_ratio ** step
        self.min_margin, self.max_conflict, self.min_agreeing = min_margin, max_conflict, min_agreeing
        self.use_embeddings, self.aggregate, self.keep_best = use_embeddings, aggregate, max(1, keep_best)
        self.min_hits, self.stream = max(1, int(min_hits)), stream
        self.held = 0  # faces not returned because their track had fewer than min_hits detections
        self.tracks: list[Track] = []
        self.frames = 0
        self.next_id = 1
        self.seconds = 0.0  # cumulative time in update(): what `bench --frames` reports per frame

    def get(self, image: np.ndarray) -> list[Face]:
        """Recognize one BGR frame and track its faces."""
        if self.recognizer is None:
            raise TypeError("Tracker.get needs a recognizer: Tracker(recognizer); or call update(faces)")
        if self.stream is None:
            return self.update(self.recognizer.get(image))
        start = time.perf_counter()
        detections = self.stream.detect(image, self.expected_boxes())
        return self.update(self.recognizer.recognize(image, detections, time.perf_counter() - start))

    def expected_boxes(self) -> list[np.ndarray]:
        """Where each live track's face should be in the next frame (its box moved by its velocity)."""
        out = []
        for track in self.tracks:
            shift = track.velocity * (track.missed + 1)
            out.append(track.bbox + np.array([shift[0], shift[1], shift[0], shift[1]], np.float32))
        return out

    def update(self, faces: Sequence[Face]) -> list[Face]:
        """The faces of the next frame, in the same order, with track ids and track identities.

        Faces of tracks with fewer than ``min_hits`` detections are left out (counted in ``held``).
        """
        start = time.perf_counter()
        faces = list(faces)
        pairs = self._associate(faces)
        assigned: dict[int, Track] = {}
        for fi, track in pairs:
            assigned[fi] = track
        for fi, face in enumerate(faces):
            if fi not in assigned:
                track = Track(self.next_id, np.asarray(face.bbox, np.float32).copy())
                self.next_id += 1
                self.tracks.append(track)
                assigned[fi] = track
        candidates = self._candidates(faces)
        for fi, face in enumerate(faces):
            self._observe(assigned[fi], face)
        self._identify_tracks({id(t): t for t in assigned.values()}.values())
        seen = {id(t) for t in assigned.values()}
        for track in self.tracks:
            if id(track) not in seen:
                track.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        out = []
        for fi, face in enumerate(faces):
            track = assigned[fi]
            if track.hits < self.min_hits:
                self.held += 1
                continue
            best = candidates[fi]
            name, score = (track.identity, track.identity_score) if self.aggregate else (face.identity,
                                                                                         face.identity_score)
            out.append(replace(face, track_id=track.track_id, track_identity=name, track_score=score,
                               candidate=best[0] if best else None, candidate_score=best[1] if best else None))
        self.frames += 1
        self.seconds += time.perf_counter() - start
        return out

    # -- internals ---------------------------------------------------------------------------

    def _associate(self, faces: list[Face]) -> list[tuple[int, Track]]:
        """Greedy pairing of faces with live tracks, best score first, within the motion and size gates."""
        scored = []
        aggregates = [t.aggregate() if self.use_embeddings else None for t in self.tracks]
        predicted = [t.predicted_centre() for t in self.tracks]
        boxes = np.stack([t.bbox for t in self.tracks]) if self.tracks else np.zeros((0, 4), np.float32)
        for fi, face in enumerate(faces):
            box = np.asarray(face.bbox, np.float32)
            size = max(float(face.face_size), 1.0)
            centre = _centre(box)
            overlaps = box_iou(box, boxes)
            for ti, track in enumerate(self.tracks):
                reach = max(size, track.size, 1.0)
                jump = float(np.linalg.norm(centre - predicted[ti])) / reach
                ratio = max(size, track.size) / max(min(size, track.size), 1.0)
                if jump > self.max_jump or ratio > self.max_size_ratio:
                    continue
                score = float(overlaps[ti]) - jump / self.max_jump
                aggregate, normed = aggregates[ti], face.normed_embedding
                if aggregate is not None and normed is not None:
                    score += float(normed @ aggregate)
                scored.append((score, fi, ti))
        pairs, used_faces, used_tracks = [], set(), set()
        for _score, fi, ti in sorted(scored, key=lambda s: -s[0]):
            if fi in used_faces or ti in used_tracks:
                continue
            used_faces.add(fi)
            used_tracks.add(ti)
            pairs.append((fi, self.tracks[ti]))
        return pairs

    def _observe(self, track: Track, face: Face) -> None:
        box = np.asarray(face.bbox, np.float32)
        if track.hits:
            step = (_centre(box) - _centre(track.bbox)) / (track.missed + 1)
            track.velocity = 0.5 * track.velocity + 0.5 * step  # smoothed constant velocity, no Kalman filter
        track.bbox = box.copy()
        track.missed = 0
        track.hits += 1
        weight = observation_weight(face)
        if face.embedding is not None and weight > 0:
            item = (weight, track.hits, face.normed_embedding)
            if len(track.best) < self.keep_best:
                heapq.heappush(track.best, item)
            elif weight > track.best[0][0]:
                heapq.heapreplace(track.best, item)
        if face.identity is not None:
            track.votes[face.identity] += weight
            track.named_frames[face.identity] += 1
        track.observations.append(Observation(self.frames, float(face.face_size), float(face.det_score), face.route,
                                              int(face.resolution), weight, face.identity))

    def _identify_tracks(self, tracks) -> None:
        tracks = [t for t in tracks if t.aggregate() is not None]
        if self.gallery is None or not tracks:
            return
        matrix = np.stack([t.aggregate() for t in tracks]).astype(np.float32)
        threshold = self.gallery.default_threshold
        found = self.gallery.identify(matrix, top_k=2, threshold=-1.0)
        for track, matches in zip(tracks, found):
            track.identity, track.identity_score = None, None
            if not matches:
                continue
            best = matches[0]
            track.identity_score = best.score
            second = matches[1].score if len(matches) > 1 else -1.0
            agreeing = set(track.named_frames) == {best.name} and track.named_frames[best.name] >= self.min_agreeing
            if (best.score < threshold and not agreeing) or best.score - second < self.min_margin:
                continue
            total = sum(track.votes.values())
            others = total - track.votes.get(best.name, 0.0)
            if total > 0 and others > self.max_conflict * total:
                continue  # the frames' own names disagree: not forced to a name
            track.identity = best.name

    def _candidates(self, faces: list[Face]) -> list[tuple[str, float] | None]:
        """The best gallery identity of each face whatever its score (for unknown faces: to tune thresholds)."""
        normed = {i: e for i, f in enumerate(faces) if (e := f.normed_embedding) is not None}
        out: list[tuple[str, float] | None] = [None] * len(faces)
        if self.gallery is None or not normed:
            return out
        matrix = np.stack(list(normed.values())).astype(np.float32)
        for i, matches in zip(normed, self.gallery.identify(matrix, top_k=1, threshold=-1.0)):
            if matches:
                out[i] = (matches[0].name, matches[0].score)
        return out
