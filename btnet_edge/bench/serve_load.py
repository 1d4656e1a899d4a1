"""Load test of the face server: N concurrent camera clients x M frames over loopback.

Reports throughput and latency percentiles against one in-process Recognizer on the
same frames, the faces each branch and trunk run carried (the cross-request batching),
how many answers were lost or wrong (compared with the in-process reference), and,
when asked, what clients saw while an embedder replica was killed mid-load.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np

from ..errors import ServeError
from ..pipeline.face import Face

log = logging.getLogger(__name__)

BBOX_TOLERANCE_PX = 1.0
MIN_COSINE = 0.999  # batch composition changes float rounding, not the answer


@dataclass
class Outcome:
    """What one request ended as: an answer (right or wrong) or an error the client saw."""

    client: int
    frame: int
    start_s: float
    latency_s: float
    status: str  # "ok", "wrong" or "error"
    detail: str = ""


@dataclass
class LoadRun:
    outcomes: list[Outcome] = field(default_factory=list)
    wall_s: float = 0.0
    kill_at_s: float | None = None
    sent: int = 0


def encode_frames(images: Sequence[np.ndarray], scales: Sequence[float], quality: int = 95) -> list[bytes]:
    """JPEG bytes of every image at every scale (smaller scales put faces on the 7/14/28 px branches)."""
    out = []
    for img in images:
        for s in scales:
            frame = img if s == 1 else cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
            ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if ok:
                out.append(data.tobytes())
    return out


def same_faces(got: Sequence[Face], expected: Sequence[Face]) -> str:
    """'' when the server's faces match the in-process reference, else what differs."""
    if len(got) != len(expected):
        return f"{len(got)} faces, expected {len(expected)}"
    for i, (g, e) in enumerate(zip(got, expected)):
        if g.resolution != e.resolution:
            return f"face {i}: branch {g.resolution}, expected {e.resolution}"
        if np.abs(np.asarray(g.bbox) - np.asarray(e.bbox)).max() > BBOX_TOLERANCE_PX:
            return f"face {i}: box {np.round(g.bbox, 1)}, expected {np.round(e.bbox, 1)}"
        cosine = float(g.normed_embedding @ e.normed_embedding)
        if cosine < MIN_COSINE:
            return f"face {i}: embedding cosine {cosine:.4f} to the reference"
        if g.identity != e.identity:
            return f"face {i}: identity {g.identity!r}, expected {e.identity!r}"
    return ""


def run_load(get: Callable[[bytes], list[Face]], frames: Sequence[bytes], reference: Sequence[list[Face]] | None,
             clients: int, frames_per_client: int, kill: Callable[[], None] | None = None,
             kill_after: float = 0.4, progress=None) -> LoadRun:
    """Every client sends its frames one after another; ``kill`` runs once ``kill_after`` of them are answered."""
    run = LoadRun(sent=clients * frames_per_client)
    lock = threading.Lock()
    t0 = time.perf_counter()

    def client(c: int) -> None:
        for i in range(frames_per_client):
            index = (c * frames_per_client + i) % len(frames)
            start = time.perf_counter()
            try:
                faces = get(frames[index])
                wrong = same_faces(faces, reference[index]) if reference is not None else ""
                outcome = Outcome(c, index, start - t0, time.perf_counter() - start, "wrong" if wrong else "ok", wrong)
            except ServeError as exc:
                outcome = Outcome(c, index, start - t0, time.perf_counter() - start, "error", str(exc))
            with lock:
                run.outcomes.append(outcome)
                if kill is not None and run.kill_at_s is None and len(run.outcomes) >= kill_after * run.sent:
                    run.kill_at_s = time.perf_counter() - t0
                    threading.Thread(target=kill, daemon=True).start()
            if progress is not None:
                progress.update(1)

    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    run.wall_s = time.perf_counter() - t0
    return run


def latency_summary(latencies_s: Sequence[float], frames: int, wall_s: float) -> dict:
    ms = np.asarray(latencies_s, float) * 1000.0
    return {"frames": int(frames), "wall_s": round(wall_s, 3),
            "frames_per_s": round(frames / wall_s, 2) if wall_s else 0,
            "p50_ms": round(float(np.percentile(ms, 50)), 2) if len(ms) else None,
            "p99_ms": round(float(np.percentile(ms, 99)), 2) if len(ms) else None}


def summarize(run: LoadRun) -> dict:
    """Counts, latency of answered requests, and what clients saw around a replica kill."""
    status = Counter(o.status for o in run.outcomes)
    answered = [o for o in run.outcomes if o.status != "error"]
    summary = {"sent": run.sent, "ok": status["ok"], "wrong": status["wrong"], "errors": status["error"],
               "lost": run.sent - len(run.outcomes), **latency_summary([o.latency_s for o in answered],
                                                                      len(answered), run.wall_s)}
    summary["max_latency_ms"] = round(max((o.latency_s for o in run.outcomes), default=0.0) * 1000.0, 1)
    summary["wrong_examples"] = [o.detail for o in run.outcomes if o.status == "wrong"][:3]
    errors = [o for o in run.outcomes if o.status == "error"]
    summary["error_messages"] = dict(Counter(_kind(o.detail) for o in errors).most_common(5))
    if run.kill_at_s is not None:
        after = sorted((o for o in run.outcomes if o.start_s + o.latency_s >= run.kill_at_s),
                       key=lambda o: o.start_s + o.latency_s)
        last_error = max((o.start_s + o.latency_s for o in errors), default=None)
        recovered = next((o for o in after if o.status == "ok" and (last_error is None or
                                                                     o.start_s + o.latency_s > last_error)), None)
        summary["kill"] = {"at_s": round(run.kill_at_s, 3), "errors_after_kill": len(errors),
                           "slowest_error_ms": round(max((o.latency_s for o in errors), default=0.0) * 1000, 1),
                           "recovered_after_s": None if recovered is None else
                           round(recovered.start_s + recovered.latency_s - run.kill_at_s, 3)}
    return summary


def _kind(message: str) -> str:
    """An error message without the URL: what the client was told."""
    return message.split(": ", 1)[-1][:160]
