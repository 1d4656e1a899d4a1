"""What `run` streams and prints: one JSON line per frame (``--jsonl``), and a short summary at the end.

The JSON-lines file is a stream, so it is not written under a temp name: it refuses an
existing file (unless ``--force``), each line is flushed as its frame finishes, and what
was written stays on Ctrl-C or an error.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from ..errors import OutputError
from ..pipeline.face import Face
from ..pipeline.stream import wait_text
from ..safe_io import check_file_target, refuse_inputs_as_target


class JsonLines:
    """``--jsonl PATH`` ('-' for stdout): one flushed line per frame or error."""

    def __init__(self, target: Path, inputs: Sequence[str | Path], force: bool = False) -> None:
        self.to_stdout = str(target) == "-"
        self.stream: IO[str]
        if self.to_stdout:
            self.stream = sys.stdout
            return
        check_file_target(target, "--jsonl", force=force)
        refuse_inputs_as_target(target, inputs, "--jsonl")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            self.stream = open(target, "w", encoding="utf-8")  # noqa: SIM115 - open as long as the writer; close()
        except OSError as exc:
            raise OutputError(f"cannot write --jsonl {target}: {exc.strerror or exc}; choose a writable file") from None

    def write(self, entry: dict) -> None:
        self.stream.write(json.dumps(entry) + "\n")
        self.stream.flush()

    def close(self) -> None:
        if not self.to_stdout:
            self.stream.close()


class RunSummary:
    """Frames, faces, per-identity counts and frames per second: printed when `run` ends."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.frames = 0
        self.faces = 0
        self.per_identity: Counter = Counter()
        self.tracks: dict[str, set] = defaultdict(set)
        self.track_ids: set = set()
        self.schedules: dict[str, dict] = {}

    def stream(self, source: str, schedule, shape: tuple[int, int], fps: float | None) -> None:
        """Note the stream schedule a video ran with (once per source): how long a new face may wait."""
        if schedule is None or source in self.schedules:
            return
        info = dict(schedule.describe(*shape))
        info["fps"] = fps
        self.schedules[source] = info

    def add(self, source: str, faces: Sequence[Face]) -> None:
        self.frames += 1
        self.faces += len(faces)
        for face in faces:
            tracked = face.track_id is not None
            name = (face.track_identity if tracked else face.identity) or "?"
            self.per_identity[name] += 1
            if tracked:
                self.tracks[name].add((source, face.track_id))
                self.track_ids.add((source, face.track_id))

    def to_json(self) -> dict:
        seconds = time.perf_counter() - self.start
        return {"frames": self.frames, "faces": self.faces, "tracks": len(self.track_ids),
                "per_identity": {name: {"faces": n, "tracks": len(self.tracks.get(name, ()))}
                                 for name, n in self.per_identity.most_common()},
                "seconds": round(seconds, 3), "fps": round(self.frames / seconds, 3) if seconds > 0 else None,
                "stream_schedules": self.schedules}

    def format(self) -> str:
        data = self.to_json()
        tracks = f", {data['tracks']} tracks" if data["tracks"] else ""
        lines = [f"{data['frames']} frames, {data['faces']} faces{tracks}, {data['fps'] or 0:.2f} frames/s"]
        for name, counts in data["per_identity"].items():
            in_tracks = f" in {counts['tracks']} track(s)" if counts["tracks"] else ""
            lines.append(f"  {name}: {counts['faces']} faces{in_tracks}")
        for source, info in self.schedules.items():
            lines.append(f"  {Path(source).name}: {wait_text(info)}")
        return "\n".join(lines)

