"""`run` keeps work and never destroys user files: bad inputs, --draw rules, Ctrl-C, full disk."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from btnet_edge.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


def _photos(folder: Path, names=("a.jpg", "b.png")) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, name in enumerate(names):
        path = folder / name
        cv2.imwrite(str(path), np.full((48, 64, 3), 40 * (i + 1), np.uint8))
        paths.append(path)
    return paths


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_bad_file_is_reported_and_the_rest_is_kept(tiny_package, tmp_path, capsys):
    photos = tmp_path / "photos"
    _photos(photos)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    out = tmp_path / "results.json"
    code = main(["run", str(tiny_package), str(photos), str(tmp_path / "missing.jpg"), "--json", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    document = json.loads(out.read_text())
    assert [Path(e["path"]).name for e in document["images"]] == ["a.jpg", "b.png"]
    assert [Path(e["path"]).name for e in document["errors"]] == ["broken.jpg", "missing.jpg"]
    assert "skipped" in err and "broken.jpg" in err and "2 input(s) could not be read" in err
    assert "Traceback" not in err


def test_on_error_stop_keeps_the_results_so_far(tiny_package, tmp_path, capsys):
    photos = tmp_path / "photos"
    _photos(photos, ("a.jpg", "c.jpg"))
    (photos / "b.jpg").write_bytes(b"not an image")
    out = tmp_path / "results.json"
    code = main(["run", str(tiny_package), str(photos), "--json", str(out), "--quiet", "--on-error", "stop"])
    assert code == 1 and "--on-error stop" in capsys.readouterr().err
    document = json.loads(out.read_text())
    assert [Path(e["path"]).name for e in document["images"]] == ["a.jpg"]
    assert "stopped" in document and [Path(e["path"]).name for e in document["errors"]] == ["b.jpg"]


def test_draw_refuses_the_inputs_folder_and_never_overwrites(tiny_package, tmp_path, monkeypatch, capsys):
    photos = tmp_path / "photos"
    _photos(photos)
    before = _snapshot(photos)
    for draw in (photos, tmp_path):  # the inputs' folder, and a parent of it
        assert main(["run", str(tiny_package), str(photos), "--draw", str(draw), "--quiet"]) == 1
        assert "holds the input" in capsys.readouterr().err
    assert _snapshot(photos) == before
    monkeypatch.chdir(photos)
    assert main(["run", str(tiny_package), "a.jpg", "--draw", ".", "--quiet"]) == 1
    assert "current folder" in capsys.readouterr().err
    assert _snapshot(photos) == before
    drawn = tmp_path / "drawn"
    drawn.mkdir()
    (drawn / "a.jpg").write_bytes(b"someone else's file")
    assert main(["run", str(tiny_package), str(photos), "--draw", str(drawn), "--quiet"]) == 1
    assert "would overwrite" in capsys.readouterr().err
    assert (drawn / "a.jpg").read_bytes() == b"someone else's file"
    assert main(["run", str(tiny_package), str(photos), "--draw", str(drawn), "--quiet", "--force"]) == 0
    assert cv2.imread(str(drawn / "a.jpg")).shape == (48, 64, 3)


def test_same_names_from_two_folders_get_unique_drawings(tiny_package, tmp_path):
    first, second = _photos(tmp_path / "day1", ("p.jpg",)), _photos(tmp_path / "day2", ("p.jpg",))
    cv2.imwrite(str(second[0]), np.full((30, 20, 3), 200, np.uint8))
    drawn = tmp_path / "drawn"
    assert main(["run", str(tiny_package), str(first[0]), str(second[0]), "--draw", str(drawn), "--quiet"]) == 0
    assert sorted(p.name for p in drawn.iterdir()) == ["p-2.jpg", "p.jpg"]
    assert cv2.imread(str(drawn / "p.jpg")).shape[:2] == (48, 64)
    assert cv2.imread(str(drawn / "p-2.jpg")).shape[:2] == (30, 20)


def test_ctrl_c_writes_the_results_so_far(tiny_package, tmp_path, monkeypatch, capsys):
    """The interrupt is raised from drawing the third frame, as a Ctrl-C arriving there would be."""
    import btnet_edge.pipeline.draw as draw

    photos = tmp_path / "photos"
    _photos(photos, [f"{i}.jpg" for i in range(5)])
    real, calls = draw.draw_faces, []

    def interrupted(image, faces):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(image, faces)

    monkeypatch.setattr(draw, "draw_faces", interrupted)
    out = tmp_path / "results.json"
    code = main(["run", str(tiny_package), str(photos), "--json", str(out), "--draw", str(tmp_path / "d"), "--quiet"])
    assert code == 130 and "interrupted" in capsys.readouterr().err
    document = json.loads(out.read_text())
    assert len(document["images"]) == 3 and document["stopped"] == "interrupted (Ctrl-C)"
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["0.jpg", "1.jpg"]


@pytest.mark.parametrize("what", ["json", "draw"])
def test_a_full_disk_fails_loudly_and_keeps_the_previous_results(tiny_package, tmp_path, what):
    """RLIMIT_FSIZE makes every write past 64 bytes fail, as a full disk does."""
    photos = tmp_path / "photos"
    _photos(photos)
    out = tmp_path / "results.json"
    out.write_text('{"images": ["previous run"]}\n')
    args = ["run", str(tiny_package), str(photos), "--quiet"]
    args += ["--json", str(out)] if what == "json" else ["--json", "-", "--draw", str(tmp_path / "drawn")]
    script = textwrap.dedent(f"""
        import resource, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        from btnet_edge.cli.main import main
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))
        sys.exit(main({args!r}))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert "cannot write" in result.stderr and "Traceback" not in result.stderr
    assert out.read_text() == '{"images": ["previous run"]}\n'
    if what == "draw":
        assert list((tmp_path / "drawn").iterdir()) == []


def test_json_to_a_folder_is_one_line(tiny_package, tmp_path, capsys):
    assert main(["run", str(tiny_package), str(tmp_path), "--json", str(tmp_path), "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a folder; give a file name" in err[0]
