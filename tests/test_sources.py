"""Video and camera sources: a damaged video is an error (its frames kept), a missing camera is one line."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from btnet_edge.cli.main import main
from btnet_edge.errors import InputImageError
from btnet_edge.pipeline.sources import iter_frames, open_camera


def _clip(path: Path, frames: int = 30, fourcc: str = "mp4v") -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10, (160, 120))
    if not writer.isOpened():
        pytest.skip(f"this OpenCV cannot write {fourcc} video")
    rng = np.random.default_rng(0)
    for i in range(frames):
        frame = np.full((120, 160, 3), i * 8, np.uint8)
        frame[:40, :40] = rng.integers(0, 255, (40, 40, 3))
        writer.write(frame)
    writer.release()
    return path


def _damaged(clip: Path) -> Path:
    data = bytearray(clip.read_bytes())
    middle, span = len(data) // 2, len(data) // 6
    data[middle:middle + span] = bytes(span)  # a corrupt middle, as a bad sector or a cut download leaves
    out = clip.with_name("damaged" + clip.suffix)
    out.write_bytes(bytes(data))
    return out


@pytest.mark.parametrize("fourcc, suffix", [("mp4v", ".mp4"), ("MJPG", ".avi")])
def test_a_damaged_video_is_an_error_after_its_frames(tmp_path, fourcc, suffix):
    clip = _clip(tmp_path / f"clip{suffix}", fourcc=fourcc)
    assert len(list(iter_frames([str(clip)]))) == 30  # intact: no error
    damaged = _damaged(clip)
    frames = []
    with pytest.raises(InputImageError, match=r"read (\d+) of the 30 frames its header declares") as exc:
        for frame in iter_frames([str(damaged)]):
            frames.append(frame.index)
    read = int(str(exc.value).split("read ")[1].split(" ")[0])
    assert 0 < len(frames) == read < 30 and frames == list(range(read))


def test_stopping_early_on_purpose_is_not_damage(tmp_path):
    clip = _clip(tmp_path / "clip.mp4")
    assert [f.index for f in iter_frames([str(clip)], max_frames=5)] == [0, 1, 2, 3, 4]
    assert [f.index for f in iter_frames([str(clip)], stride=7)] == [0, 7, 14, 21, 28]
    damaged = _damaged(clip)
    assert len(list(iter_frames([str(damaged)], max_frames=3))) == 3  # the damage is after what was asked for


def test_run_lists_the_cut_and_exits_non_zero(tiny_package, tmp_path, capsys):
    damaged = _damaged(_clip(tmp_path / "clip.mp4"))
    out = tmp_path / "run.json"
    assert main(["run", str(tiny_package), str(damaged), "--json", str(out), "--quiet", "--no-track"]) == 1
    report = json.loads(out.read_text())
    assert [e["path"] for e in report["errors"]] == [str(damaged)]
    assert "of the 30 frames its header declares" in report["errors"][0]["error"]
    assert 0 < len(report["images"]) < 30  # the frames before the damage are kept
    assert "btnet-edge run: error:" in capsys.readouterr().err


@pytest.mark.skipif(Path("/dev/video0").exists(), reason="this machine has a camera 0")
def test_no_camera_is_one_line_without_opencv_noise(tiny_package, capfd):
    with pytest.raises(InputImageError, match="no camera 0: /dev/video0 does not exist"):
        open_camera(0)
    assert main(["run", str(tiny_package), "0", "--quiet"]) == 1
    err = capfd.readouterr().err.strip().splitlines()
    assert all("WARN" not in line and "OpenCV" not in line for line in err), err
    assert [line for line in err if "camera 0" in line] == [
        "btnet-edge run: skipped 0: no camera 0: /dev/video0 does not exist (this machine has no camera); plug one "
        "in, or give a video file or images"]
