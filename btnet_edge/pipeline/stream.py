"""Detection for camera streams and videos: small faces at little more than the cost of one 640 pass.

A still image gets the detector's full plan (detect_plan.py): a coarse pass and an
enlarged, tiled pass that costs ~25x the coarse one at 720p. A stream cannot pay that
every frame, and need not: consecutive frames are nearly the same picture. Per frame:

- the **coarse pass** on the whole frame, as on stills;
- a **window** of the enlarged pass around each live track's predicted box, so a small face
  once found stays found, and around small blobs of changed pixels (frame differencing,
  OpenCV) outside the tracks, taking turns, so a face walking in is looked at the next frame
  even while many tracks are live (windows of one size run as one batch);
- a **share of the enlarged pass's tiles**, as many as ``plan.stream_budget`` allows (enlarged
  pixels per frame, in coarse passes; the windows count against it), so the whole frame is
  covered every :attr:`StreamDetector.cycle_frames` frames. Tiles where the picture changed
  since their last visit (frame differencing, OpenCV) go first; a tile is never left longer
  than a cycle. A face standing still is already a track.

Candidates of all three merge with the still-image rules
(NMS, fragments, and the checks of boxes only the enlarged pass found, detect_verify.py);
boxes in a window around a track were checked when the track was found.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from .detect import Candidates, Detection, FaceDetector
from .detect_plan import DetectPass, in_range, in_tile, tile_spans
from .image import check_bgr_image

STREAM_TILES_PX = (512, 640, 768, 960)  # tile sides tried (pass px); the one with the fewest pixels in all wins
MAX_TILE_BUDGETS = 3.0  # a tile may cost at most this many frames' budgets (frame times stay even)
WINDOW_COST = 2.5  # a window's pixels count this much: small inputs cost ~2.5x per pixel on a CPU (measured)
WINDOW_FACES = 4.0  # a track's window spans this many face sizes (motion room) ...
WINDOW_MIN_PX = 128  # ... and at least this many pass px; sides are rounded up to multiples of 32 (few shapes)
MOTION_SCALE = 0.5  # motion is measured on the frame at this scale, in grey (a 10 px face is still 5 px there)
MOTION_LEVEL = 12  # grey levels of change that count as motion (sensor noise of a few levels does not)
MOTION_SHARE = 0.0005  # a tile whose pixels changed by this share since its last visit is looked at first
MOVER_MIN_PX = 4  # changed pixels (at MOTION_SCALE) a blob needs to get a window of its own ...
MOVER_WINDOW = 2.0  # a moving blob's window spans this many blob sizes (the blob holds the motion already)
MAX_MOVERS = 4  # ... and at most this many such windows per frame, the largest blobs not just seen first
MIN_TILE_SHARE = 0.25  # windows (tracks, then movers) may take at most 3/4 of the budget; the tiles keep the rest
# ... but movers always get this share, even when the tracks' windows take all of theirs: a crowd of tracked faces
# must not blind the stream to a new one walking in (measured: with four tracks live no mover ran, and a face that
# came out from behind a person waited 10 frames for a tile)
MIN_MOVER_SHARE = 0.3
MOVER_TURN_FRAMES = 2  # a moving blob looked at in the last this many frames waits behind the others


@dataclass
class _Tile:
    """One tile of the enlarged pass: its spans in pass px, and its schedule state."""

    x_span: tuple
    y_span: tuple
    frame_box: tuple  # x0, y0, x1, y1 in motion-map px
    last: int = -1
    motion: float = 0.0

    @property
    def pixels(self) -> int:
        return (self.x_span[1] - self.x_span[0]) * (self.y_span[1] - self.y_span[0])


class StreamDetector:
    """The stream schedule over a :class:`FaceDetector` (its plan, model and checks); one per video or camera.

    ``detect(frame, around)``: ``around`` are boxes (frame px) where faces are expected (the
    Tracker's predictions). ``motion=False`` visits tiles in turn only. ``stats`` counts the
    work done, for benchmarks and the run summary.
    """

    def __init__(self, detector: FaceDetector, motion: bool = True) -> None:
        self.detector = detector
        self.plan = detector.plan
        self.motion = motion
        self.frames = 0
        self.stats = {"frames": 0, "tiles": 0, "windows": 0, "pass_px": 0}
        self._shape: tuple[int, int] | None = None
        self._passes: list[DetectPass] = []
        self._tiles: list[_Tile] = []
        self._tile_px = 0
        self._budget_px = 0.0
        self._credit = 0.0
        self._motion_turn = True
        self._grey: np.ndarray | None = None
        self._moved: np.ndarray | None = None
        self._recent_movers: list[tuple[int, np.ndarray]] = []  # (frame, region searched) of recent mover windows
        self.cycle_frames = 1  # frames to cover the whole frame with the enlarged pass, no track windows
        self.max_wait_frames = 1  # the same when track windows take their largest share of the budget

    # -- public ------------------------------------------------------------------------------

    def detect(self, frame: np.ndarray, around: Sequence[np.ndarray] = ()) -> list[Detection]:
        """Faces of the next frame, best score first, in frame pixels."""
        img = check_bgr_image(frame)
        self._prepare(img.shape[:2])
        self.frames += 1
        self.stats["frames"] += 1
        passes = self._passes
        detector = self.detector
        if len(passes) == 1:  # the plan has no enlarged pass at this size: a still's plan is already cheap
            return detector.detect(img)
        coarse_step, enlarged_step = passes
        start = time.perf_counter()
        coarse = _run_coarse(detector, img, coarse_step)
        detector.pass_seconds["coarse"] += time.perf_counter() - start
        start = time.perf_counter()
        windows = [b for b in (np.asarray(b, np.float32) for b in around) if _side(b) < enlarged_step.max_face_px]
        self._update_motion(img, windows)
        room = max((1 - MIN_TILE_SHARE) * self._budget_px - sum(_window_cost(b, enlarged_step.scale) for b in windows),
                   MIN_MOVER_SHARE * self._budget_px)
        movers: list[np.ndarray] = []
        for box in self._take_turns(self._movers(enlarged_step.max_face_px)):
            room -= _window_cost(box, enlarged_step.scale)
            if (room < 0 and movers) or len(movers) == MAX_MOVERS:  # the first always runs: a mover's window
                break  # may cost more than the share
            movers.append(box)
        self._recent_movers = [(self.frames, _grown(b, WINDOW_FACES)) for b in movers] + \
            [(f, b) for f, b in self._recent_movers if self.frames - f < MOVER_TURN_FRAMES]  # the regions searched
        parts, spent = self._run_windows(img, windows + movers, enlarged_step)
        self._credit += self._budget_px - min(spent, (1 - MIN_TILE_SHARE) * self._budget_px)
        chosen = self._choose()
        parts.extend(self._run_tiles(img, chosen, enlarged_step))
        detector.pass_seconds["enlarged"] += time.perf_counter() - start
        enlarged = in_range(Candidates.concat(parts), enlarged_step)
        trusted = np.stack(windows) if windows else np.zeros((0, 4), np.float32)
        return detector.merge(img, coarse, enlarged, trusted=trusted)

    def describe(self, height: int, width: int) -> dict:
        """The schedule for frames of this size: tiles, budget, and how long a new face may wait."""
        self._prepare((height, width))
        if len(self._passes) == 1:
            return {"enlarged_pass": False, "cycle_frames": 1, "max_wait_frames": 1}
        coarse_px = _pass_pixels(height, width, self._passes[0].scale)
        return {"enlarged_pass": True, "tiles": len(self._tiles), "tile_px": self._tile_px,
                "budget_coarse_passes": self.plan.stream_budget, "coarse_pass_px": coarse_px,
                "enlarged_px_per_cycle": sum(t.pixels for t in self._tiles), "cycle_frames": self.cycle_frames,
                "max_wait_frames": self.max_wait_frames}

    # -- schedule ----------------------------------------------------------------------------

    def _prepare(self, shape: tuple[int, int]) -> bool:
        """Plan the tiles for this frame size; True when it is new."""
        if shape == self._shape:
            return False
        self._shape = shape
        height, width = shape
        self._passes = self.plan.passes(height, width)
        limits = self.detector.input_limits()  # an engine's profile: passes and tiles must fit its max input
        if limits is not None:
            from .detect_plan import fit_passes

            self._passes = fit_passes(self._passes, height, width, limits[1])
        largest = min(limits[1]) // 32 * 32 if limits is not None else None
        self._tiles, self._grey, self._credit = [], None, 0.0
        if len(self._passes) == 1:
            self.cycle_frames = self.max_wait_frames = 1
            return True
        coarse, enlarged = self._passes
        self._budget_px = self.plan.stream_budget * _pass_pixels(height, width, coarse.scale)
        pass_h, pass_w = round(height * enlarged.scale), round(width * enlarged.scale)
        best = None
        for side in STREAM_TILES_PX:
            side = max(side, 2 * enlarged.overlap + 32)
            if largest is not None:
                side = min(side, largest)
            spans = [(y, x) for y in tile_spans(pass_h, side, enlarged.overlap)
                     for x in tile_spans(pass_w, side, enlarged.overlap)]
            tile_px = (spans[0][1][1] - spans[0][1][0]) * (spans[0][0][1] - spans[0][0][0])
            total = sum((x[1] - x[0]) * (y[1] - y[0]) for y, x in spans)
            fits = tile_px <= MAX_TILE_BUDGETS * self._budget_px
            key = (not fits, total if fits else tile_px)
            if best is None or key < best[0]:
                best = (key, spans, tile_px, total)
        assert best is not None  # STREAM_TILES_PX is not empty
        _, spans, self._tile_px, total = best
        to_motion = MOTION_SCALE / enlarged.scale
        self._tiles = [_Tile(x, y, (int(x[0] * to_motion), int(y[0] * to_motion), int(math.ceil(x[1] * to_motion)),
                                     int(math.ceil(y[1] * to_motion)))) for y, x in spans]
        self.cycle_frames = max(1, math.ceil(total / self._budget_px))
        self.max_wait_frames = max(1, math.ceil(total / (MIN_TILE_SHARE * self._budget_px)))
        return True

    def _choose(self) -> list[_Tile]:
        """Tiles for this frame: overdue (oldest first) and moving ones (most motion first) in turn, else the oldest."""
        chosen: list[_Tile] = []
        while self._credit > 0 and len(chosen) < len(self._tiles):
            rest = [t for t in self._tiles if t not in chosen]
            overdue = [t for t in rest if self.frames - t.last >= self.max_wait_frames]
            moving = [t for t in rest if t.motion >= MOTION_SHARE] if self.motion else []
            if overdue and (not moving or not self._motion_turn):
                tile = min(overdue, key=lambda t: t.last)  # overdue and moving tiles take turns
            elif moving:
                tile = max(moving, key=lambda t: t.motion)
            else:
                tile = min(rest, key=lambda t: t.last)
            self._motion_turn = not self._motion_turn if overdue and moving else self._motion_turn
            chosen.append(tile)
            self._credit -= tile.pixels
        return chosen

    def _movers(self, max_face_px: float) -> list[np.ndarray]:
        """Boxes (frame px) around small things that moved since the last frame outside tracked faces, most first.

        A person walking in shows as a blob of changed pixels: a window of the enlarged pass goes
        there at once, before its tile's turn. Blobs larger than the enlarged pass's largest face
        (a body, a car) are left to the tiles, which take moving ones first.
        """
        moved = getattr(self, "_moved", None)
        if moved is None or not moved.any():
            return []
        grown = cv2.dilate(moved, np.ones((3, 3), np.uint8))
        _, _, stats, _ = cv2.connectedComponentsWithStats(grown, connectivity=8)
        boxes = []
        for x, y, w, h, area in stats[1:]:
            side = max(w, h) / MOTION_SCALE
            if area < MOVER_MIN_PX or side > max_face_px:
                continue
            cx, cy = (x + w / 2) / MOTION_SCALE, (y + h / 2) / MOTION_SCALE
            half = max(side, 8.0) * MOVER_WINDOW / WINDOW_FACES / 2  # its window spans MOVER_WINDOW blob sizes
            boxes.append((area, np.array([cx - half, cy - half, cx + half, cy + half], np.float32)))
        boxes.sort(key=lambda item: -item[0])
        return [box for _, box in boxes]

    def _take_turns(self, movers: list[np.ndarray]) -> list[np.ndarray]:
        """Movers whose place had no window in the last few frames first: one blob that is not a face (or a face
        the detector cannot find) must not keep the movers' share from the others, frame after frame."""
        def looked_at(box: np.ndarray) -> bool:
            centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
            return any(b[0] <= centre[0] <= b[2] and b[1] <= centre[1] <= b[3] for _, b in self._recent_movers)

        seen = [looked_at(b) for b in movers]
        return [b for b, s in zip(movers, seen) if not s] + [b for b, s in zip(movers, seen) if s]

    def _update_motion(self, img: np.ndarray, tracked: list[np.ndarray]) -> None:
        """Add to each tile the share of its pixels that changed since the last frame, outside tracked faces."""
        if not self.motion:
            return
        grey = cv2.cvtColor(cv2.resize(img, None, fx=MOTION_SCALE, fy=MOTION_SCALE, interpolation=cv2.INTER_AREA),
                            cv2.COLOR_BGR2GRAY)
        if self._grey is not None and self._grey.shape == grey.shape:
            moved = (cv2.absdiff(grey, self._grey) >= MOTION_LEVEL).astype(np.uint8)
            for box in tracked:  # a tracked face moving is no news: its window follows it
                grow = WINDOW_FACES / 2 * _side(box)
                cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
                x0, y0 = int(max(cx - grow, 0) * MOTION_SCALE), int(max(cy - grow, 0) * MOTION_SCALE)
                x1, y1 = int(math.ceil((cx + grow) * MOTION_SCALE)), int(math.ceil((cy + grow) * MOTION_SCALE))
                moved[y0:y1, x0:x1] = 0
            self._moved = moved
            total = cv2.integral(moved)
            for tile in self._tiles:
                x0, y0, x1, y1 = tile.frame_box
                x1, y1 = min(x1, moved.shape[1]), min(y1, moved.shape[0])
                area = max((x1 - x0) * (y1 - y0), 1)
                tile.motion += float(total[y1, x1] - total[y0, x1] - total[y1, x0] + total[y0, x0]) / area
        self._grey = grey

    # -- running -----------------------------------------------------------------------------

    def _run_tiles(self, img: np.ndarray, tiles: list[_Tile], step: DetectPass) -> list[Candidates]:
        pass_h, pass_w = round(img.shape[0] * step.scale), round(img.shape[1] * step.scale)
        by_shape: dict[tuple[int, int], list[_Tile]] = {}
        for tile in tiles:
            by_shape.setdefault((tile.x_span[1] - tile.x_span[0], tile.y_span[1] - tile.y_span[0]), []).append(tile)
        parts = []
        for (w, h), group in by_shape.items():
            crops = [_warp(img, step.scale, tile.x_span[0], tile.y_span[0], w, h) for tile in group]
            for tile, found in zip(group, self.detector._candidates_batch(crops)):
                found = found.scaled(1.0, tile.x_span[0], tile.y_span[0])
                parts.append(found.take(in_tile(found.boxes, tile.x_span, tile.y_span, pass_w, pass_h))
                             .scaled(1.0 / step.scale))
                tile.last, tile.motion = self.frames, 0.0
                self.stats["tiles"] += 1
                self.stats["pass_px"] += w * h
        return parts

    def _run_windows(self, img: np.ndarray, boxes: list[np.ndarray], step: DetectPass) -> tuple[list, float]:
        """Candidates in a window of the enlarged pass around each box, and the pass pixels spent."""
        pass_h, pass_w = round(img.shape[0] * step.scale), round(img.shape[1] * step.scale)
        by_side: dict[int, list[tuple[int, int]]] = {}
        for box in boxes:
            side = _window_side(box, step.scale)
            cx, cy = (box[0] + box[2]) / 2 * step.scale, (box[1] + box[3]) / 2 * step.scale
            x0 = int(round(min(max(cx - side / 2, 0), max(pass_w - side, 0))))
            y0 = int(round(min(max(cy - side / 2, 0), max(pass_h - side, 0))))
            by_side.setdefault(side, []).append((x0, y0))
        parts, spent = [], 0.0
        for side, corners in by_side.items():
            crops = [_warp(img, step.scale, x0, y0, side, side) for x0, y0 in corners]
            for (x0, y0), found in zip(corners, self.detector._candidates_batch(crops)):
                found = found.scaled(1.0, x0, y0)
                span_x, span_y = (x0, x0 + side, -np.inf, np.inf), (y0, y0 + side, -np.inf, np.inf)
                parts.append(found.take(in_tile(found.boxes, span_x, span_y, pass_w, pass_h)).scaled(1.0 / step.scale))
                spent += WINDOW_COST * side * side
                self.stats["windows"] += 1
        self.stats["pass_px"] += sum(side * side * len(corners) for side, corners in by_side.items())
        return parts, spent


def _window_side(box: np.ndarray, scale: float) -> int:
    """Side (pass px) of the enlarged-pass window around ``box``: WINDOW_FACES face sizes, a multiple of 32."""
    return max(WINDOW_MIN_PX, int(math.ceil(WINDOW_FACES * _side(box) * scale / 32.0)) * 32)


def _window_cost(box: np.ndarray, scale: float) -> float:
    return WINDOW_COST * _window_side(box, scale) ** 2


def _grown(box: np.ndarray, factor: float) -> np.ndarray:
    """``box`` scaled by ``factor`` about its centre (a window's reach around the box it was placed for)."""
    cx, cy, half = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, factor * _side(box) / 2
    return np.array([cx - half, cy - half, cx + half, cy + half], np.float32)


def _side(box: np.ndarray) -> float:
    return float(max(box[2] - box[0], box[3] - box[1]))


def _pass_pixels(height: int, width: int, scale: float) -> int:
    return max(1, round(height * scale)) * max(1, round(width * scale))


def _warp(img: np.ndarray, scale: float, x0: int, y0: int, width: int, height: int) -> np.ndarray:
    """The frame at ``scale`` (as cv2.resize samples it), cut at pass px (x0, y0) to width x height, borders padded."""
    shift = 0.5 * scale - 0.5
    matrix = np.array([[scale, 0.0, shift - x0], [0.0, scale, shift - y0]], np.float64)
    return cv2.warpAffine(img, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _run_coarse(detector: FaceDetector, img: np.ndarray, step: DetectPass) -> Candidates:
    from .detect_plan import run_pass

    return run_pass(detector._candidates, img, step)


def wait_text(info: dict) -> str:
    """How long a new small face may wait under a stream schedule, in words."""
    if not info.get("enlarged_pass"):
        return "one detection pass per frame finds every face it can at once"
    fps = info.get("fps")
    cycle, worst = info["cycle_frames"], info["max_wait_frames"]
    seconds = f" ({cycle / fps:.1f} s, at most {worst / fps:.1f} s at {fps:.0f} frames/s)" if fps else ""
    return (f"small-face pass in {info['tiles']} tiles, {info['budget_coarse_passes']:g} coarse passes of work per "
            f"frame: a new small face is looked for where the picture moves first, and everywhere within "
            f"{cycle} frames (at most {worst}){seconds}")


VIDEO_MIN_HITS = 2  # on video a face is reported once its track has two detections


def video_tracker(recognizer, frame_step: int = 1, stream: bool = True, **options):
    """The Tracker a video or camera gets: stream detection (when ``stream``) and tracks reported from 2 detections."""
    from .track import Tracker

    detector = StreamDetector(recognizer.detector) if stream else None
    options.setdefault("min_hits", VIDEO_MIN_HITS)
    return Tracker(recognizer, frame_step=frame_step, stream=detector, **options)
