"""The C++ runtime against the Python one: same package, frames, detector file and threads, in one run.

Each frame is run once untimed then ``repeats`` times by each runtime (Python in this
process, C++ through ``btnet-edge-run --repeat``). The two alternate for ``rounds``
rounds and each figure is the median over rounds, so a burst of other work on the
machine hits both alike; they are compared as a ratio. Per face = per frame / faces.
"""

from __future__ import annotations

import json
import logging
import statistics
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from ..errors import ConfigError
from ..package.loader import load_package
from ..pipeline.detect import create_detector
from ..pipeline.image import read_image
from ..pipeline.recognizer import Recognizer, StageTimes

log = logging.getLogger(__name__)

STAGES = ("detect", "align", "branches", "trunk", "gallery")
DEFAULT_APP = Path("build/cpp/btnet-edge-run")


def _python_times(recognizer: Recognizer, frames: Sequence[Path], repeats: int) -> dict:
    per_frame, faces, stages = [], [], dict.fromkeys(STAGES, 0.0)
    for path in frames:
        image = read_image(path)
        faces.append(len(recognizer.get(image)))  # untimed first run
        before = StageTimes(**recognizer.times.as_dict())
        start = time.perf_counter()
        for _ in range(repeats):
            recognizer.get(image)
        per_frame.append(1e3 * (time.perf_counter() - start) / repeats)
        for stage in STAGES:
            stages[stage] += getattr(recognizer.times, stage) - getattr(before, stage)
    frames_timed = repeats * len(frames)
    return {"ms_per_frame": per_frame, "faces": faces,
            "stage_ms_per_frame": {k: 1e3 * v / frames_timed for k, v in stages.items()}}


def _cpp_times(app: Path, package: Path, frames: Sequence[Path], detector: Path, repeats: int, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "cpp.json"
        cmd = [str(app), str(package), *map(str, frames), "--detector", str(detector), "--repeat", str(repeats),
               "--threads", str(threads), "--json", str(out)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise ConfigError(f"{app} failed: {done.stderr.strip()}")
        document = json.loads(out.read_text())
    images = document["images"]
    return {"ms_per_frame": [e["ms_per_frame"] for e in images], "faces": [len(e["faces"]) for e in images],
            "stage_ms_per_frame": document["timing"]["stage_ms_per_frame"]}


def _median_of_rounds(rounds: list[dict]) -> dict:
    """Per-frame and per-stage medians over rounds (faces come from the first round)."""
    median = statistics.median
    return {"faces": rounds[0]["faces"],
            "ms_per_frame": [median(values) for values in zip(*(r["ms_per_frame"] for r in rounds))],
            "stage_ms_per_frame": {k: median(r["stage_ms_per_frame"][k] for r in rounds) for k in STAGES}}


def bench_cpp_vs_python(package: str | Path, frames: Sequence[str | Path], app: str | Path = DEFAULT_APP,
                        detector: str | Path | None = None, repeats: int = 5, threads: int = 1,
                        rounds: int = 3) -> dict:
    """Per-frame and per-face latency of both runtimes; ``detector`` None: the bundled RetinaFace, written out."""
    app, package, frames = Path(app), Path(package), [Path(f) for f in frames]
    if not app.is_file():
        raise ConfigError(f"C++ app not found at {app}; build it: cmake -S . -B build/cpp "
                          "-DONNXRUNTIME_ROOT=... && cmake --build build/cpp (README, C++ runtime)")
    if repeats < 1 or threads < 1 or rounds < 1:
        raise ConfigError(f"repeats, threads and rounds must be >= 1, found {repeats}, {threads} and {rounds}")
    load_package(package)
    with tempfile.TemporaryDirectory() as folder:
        if detector is None:
            from ..pipeline.detectors.retinaface import bundled_weights

            detector = Path(folder) / "retinaface.onnx"
            detector.write_bytes(bundled_weights())
        python_rounds, cpp_rounds = [], []
        for _ in tqdm(range(rounds), desc="bench-cpp", unit="round"):
            # A fresh Recognizer per round, as the app is a fresh process: both start from the same state.
            # The C++ runtime has the still-image plan without the checks of enlarged-only boxes (docs/cpp.md):
            # Python does the same work here.
            with Recognizer(package, detector=create_detector(detector, threads=threads, second_look=False,
                                                              face_cues=False), threads=threads) as recognizer:
                python_rounds.append(_python_times(recognizer, frames, repeats))
            cpp_rounds.append(_cpp_times(app, package, frames, Path(detector), repeats, threads))
    python, cpp = _median_of_rounds(python_rounds), _median_of_rounds(cpp_rounds)
    rows = []
    for path, py_ms, cpp_ms, py_faces, cpp_faces in zip(frames, python["ms_per_frame"], cpp["ms_per_frame"],
                                                        python["faces"], cpp["faces"]):
        if py_faces != cpp_faces:
            log.warning("%s: Python found %d faces, C++ %d", path, py_faces, cpp_faces)
        rows.append({"frame": str(path), "faces": py_faces, "python_ms_per_frame": py_ms, "cpp_ms_per_frame": cpp_ms,
                     "python_ms_per_face": py_ms / py_faces if py_faces else None,
                     "cpp_ms_per_face": cpp_ms / cpp_faces if cpp_faces else None,
                     "speedup": py_ms / cpp_ms})
    total_faces = sum(python["faces"])
    summary = {"python_ms_per_frame": sum(python["ms_per_frame"]) / len(frames),
               "cpp_ms_per_frame": sum(cpp["ms_per_frame"]) / len(frames),
               "python_ms_per_face": sum(python["ms_per_frame"]) / total_faces if total_faces else None,
               "cpp_ms_per_face": sum(cpp["ms_per_frame"]) / total_faces if total_faces else None}
    summary["speedup"] = summary["python_ms_per_frame"] / summary["cpp_ms_per_frame"]
    return {"rows": rows, "summary": summary,
            "stage_ms_per_frame": {"python": python["stage_ms_per_frame"], "cpp": cpp["stage_ms_per_frame"]},
            "settings": {"repeats": repeats, "rounds": rounds, "threads": threads, "app": str(app),
                         "frames": len(frames)}}


def format_cpp_report(report: dict) -> str:
    """Rows per frame, the mean, and where a frame's time goes in each runtime."""
    from .report import _table

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    lines = [(Path(r["frame"]).name, str(r["faces"]), ms(r["python_ms_per_frame"]), ms(r["cpp_ms_per_frame"]),
              ms(r["python_ms_per_face"]), ms(r["cpp_ms_per_face"]), f"{r['speedup']:.2f}x") for r in report["rows"]]
    s = report["summary"]
    lines.append(("mean", "", ms(s["python_ms_per_frame"]), ms(s["cpp_ms_per_frame"]), ms(s["python_ms_per_face"]),
                  ms(s["cpp_ms_per_face"]), f"{s['speedup']:.2f}x"))
    header = ("frame", "faces", "python ms/frame", "c++ ms/frame", "python ms/face", "c++ ms/face", "python/c++")
    stages = report["stage_ms_per_frame"]
    stage_lines = [(name, ms(stages["python"][name]), ms(stages["cpp"][name])) for name in STAGES]
    return _table(header, lines) + "\n\n" + _table(("stage", "python ms/frame", "c++ ms/frame"), stage_lines)
