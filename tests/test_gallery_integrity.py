"""What a bad-input probe found in the gallery (issue 20), each reproduced on a real SQLite file.

Flipped bits and NaN blobs in stored embeddings, hand-edited thresholds, near-duplicate
names, the same photo enrolled twice, CLI edge cases, and galleries on a read-only or
full filesystem (real tmpfs mounts; skipped where mounting is not allowed).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
from pathlib import Path

import numpy as np
import pytest

from btnet_edge.errors import GalleryError
from btnet_edge.gallery import Gallery

D = 512


def unit(rng: np.random.Generator, n: int, d: int = D) -> np.ndarray:
    rows = rng.standard_normal((n, d))
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.fixture
def people(tmp_path: Path) -> Path:
    path = tmp_path / "g.db"
    rng = np.random.default_rng(0)
    with Gallery(path, embedding_size=D) as g:
        for i in range(8):
            g.enroll(f"person{i}", unit(rng, 2))
    return path


def flip_bit(path: Path, row_id: int, component: int, bit: int) -> None:
    with sqlite3.connect(path) as conn:
        (blob,) = conn.execute("SELECT vector FROM embeddings WHERE id = ?", (row_id,)).fetchone()
        words = np.frombuffer(blob, "<u4").copy()
        words[component] ^= np.uint32(1 << bit)
        conn.execute("UPDATE embeddings SET vector = ? WHERE id = ?", (words.tobytes(), row_id))
    conn.close()


@pytest.mark.parametrize("bit", [31, 30, 29, 27, 24, 23, 22, 10, 0])
def test_one_flipped_bit_never_makes_strangers_match(people: Path, bit: int) -> None:
    strangers = unit(np.random.default_rng(1), 20)
    with Gallery(people, create=False) as clean:
        before = clean.identify(strangers, top_k=1, threshold=-1.0)
    flip_bit(people, row_id=3, component=7, bit=bit)  # person1's first embedding
    with Gallery(people, create=False) as g:
        after = g.identify(strangers, top_k=1, threshold=-1.0)
        assert all(not row for row in g.identify(strangers))  # default threshold 0.3: nobody is named
        scores = [row[0].score for row in after]
        assert max(scores) < 0.35 and all(-1.0 <= s <= 1.0 for s in scores)
        if g.damaged:  # exponent bits: the norm moved, the row is quarantined
            assert [(d.row_id, d.identity_id) for d in g.damaged] == [(3, 2)]
        else:  # sign and mantissa bits: the norm stays within tolerance and cosines barely move
            assert max(abs(a[0].score - b[0].score) for a, b in zip(after, before)) < 0.05
    if bit == 30:  # the exponent's top bit: the value becomes ~1e38, always caught
        with Gallery(people, create=False) as g:
            assert [d.row_id for d in g.damaged] == [3]


def test_a_nan_blob_is_quarantined_loudly(people: Path, caplog, capsys) -> None:
    from btnet_edge.cli.main import main

    nan = np.full(D, np.nan, "<f4").tobytes()
    with sqlite3.connect(people) as conn:
        conn.execute("UPDATE embeddings SET vector = ? WHERE id = 1", (nan,))
    conn.close()
    with caplog.at_level(logging.WARNING), Gallery(people, create=False) as g:
        probe = unit(np.random.default_rng(2), 1)
        g.identify(probe)
        assert [(d.row_id, d.reason) for d in g.damaged] == [(1, "holds NaN or inf")]
    assert "embedding 1 of 'person0' holds NaN or inf" in caplog.text and "--remove 'person0'" in caplog.text
    assert main(["gallery", str(people)]) == 1
    captured = capsys.readouterr()
    listing = json.loads(captured.out)  # valid JSON, with the damaged row named
    assert listing["damaged"] == [{"embedding": 1, "name": "person0", "problem": "holds NaN or inf"}]
    assert "damaged and left out of every search (person0)" in captured.err
    assert main(["gallery", str(people), "--remove", "person0"]) == 0
    assert json.loads(capsys.readouterr().out)["damaged"] == []


@pytest.mark.parametrize("value", ["-inf", "nan", "1e309", "2.5", "abc"])
def test_an_edited_threshold_is_refused_and_can_be_fixed(people: Path, value: str, capsys) -> None:
    from btnet_edge.cli.main import main

    with sqlite3.connect(people) as conn:
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('threshold.14', ?)", (value,))
    conn.close()
    with Gallery(people, create=False) as g:
        with pytest.raises(GalleryError, match=r"stored threshold.14 is .*--threshold 0.3 --resolution 14"):
            g.identify(unit(np.random.default_rng(3), 1), probe_resolutions=[14])
    assert main(["gallery", str(people)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "not a cosine in [-1, 1]" in captured.err  # an error, never invalid JSON
    assert main(["gallery", str(people), "--threshold", "0.4", "--resolution", "14"]) == 0
    assert json.loads(capsys.readouterr().out)["thresholds"] == {"14": 0.4}


def test_near_duplicate_names_are_one_identity(tmp_path: Path, caplog) -> None:
    rng = np.random.default_rng(4)
    with Gallery(tmp_path / "g.db", embedding_size=D) as g:
        g.enroll("Zoë Saldaña", unit(rng, 1))
        g.enroll("Zoe\u0308 Saldan\u0303a ", unit(rng, 1))  # NFD, trailing space
        g.enroll("  Zoë   Saldaña", unit(rng, 1))
        assert [(i.name, i.count) for i in g.identities()] == [("Zoë Saldaña", 3)]
        with caplog.at_level(logging.WARNING):
            g.enroll("zoë saldaña", unit(rng, 1))  # differs in case only: kept apart, but said
        assert "differ only in case" in caplog.text and len(g) == 2
        for bad in ("", " \t", "a\x00b", None):
            with pytest.raises(GalleryError, match=r"non-empty str|control characters"):
                g.enroll(bad, unit(rng, 1))  # type: ignore[arg-type]


def test_the_same_photo_enrolled_again_adds_nothing(tmp_path: Path, caplog) -> None:
    rng = np.random.default_rng(5)
    photo = unit(rng, 1)[0]
    with Gallery(tmp_path / "g.db", embedding_size=D) as g:
        assert g.enroll("ada", photo, sources="ada.jpg") == 1
        with caplog.at_level(logging.WARNING):
            assert g.enroll("ada", photo + 1e-4 * unit(rng, 1)[0], sources="ada-copy.jpg") == 0  # re-encoded copy
        assert "already enrolled (the same photo again?)" in caplog.text and "ada-copy.jpg" in caplog.text
        other = unit(rng, 1)[0]
        assert g.enroll("ada", np.stack([other, other, photo]), sources=["b.jpg", "b2.jpg", "a.jpg"]) == 1
        assert g.identities()[0].count == 2


def test_cli_refuses_an_empty_remove_and_a_resolution_without_threshold(people: Path, capsys) -> None:
    from btnet_edge.cli.main import main

    before = people.read_bytes()
    assert main(["gallery", str(people), "--remove", ""]) != 0
    assert "--remove needs the name" in capsys.readouterr().err
    assert main(["gallery", str(people), "--resolution", "14"]) != 0
    assert "give --threshold with it" in capsys.readouterr().err
    assert people.read_bytes() == before


@pytest.fixture
def tmpfs(tmp_path: Path):
    """A 2 MB tmpfs of our own, unmounted afterwards (needs root; skipped elsewhere)."""
    mount = tmp_path / "mnt"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True,
                            text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip()}): needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_gallery_on_a_read_only_folder_is_still_read(people: Path, tmpfs: Path, capsys) -> None:
    from btnet_edge.cli.main import main

    with Gallery(people, create=False) as g:
        probe = g.identify(unit(np.random.default_rng(6), 1), threshold=-1.0)
    target = tmpfs / "g.db"
    target.write_bytes(people.read_bytes())  # a WAL-mode file with no -wal/-shm beside it
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    with Gallery(target, create=False, readonly=True) as g:
        assert g.identify(unit(np.random.default_rng(6), 1), threshold=-1.0) == probe
        assert len(g) == 8
    assert main(["gallery", str(target)]) == 0
    assert len(json.loads(capsys.readouterr().out)["identities"]) == 8
    with pytest.raises(GalleryError, match=r"cannot open|read-only"):
        Gallery(target, create=False).enroll("x", unit(np.random.default_rng(7), 1))


def test_a_full_disk_still_reads_and_an_enrollment_fails_cleanly(people: Path, tmpfs: Path) -> None:
    target = tmpfs / "g.db"
    target.write_bytes(people.read_bytes())
    server = Gallery(target, create=False)  # a running server: its -wal and -shm exist when the disk fills
    server.identify(unit(np.random.default_rng(8), 1))
    filler = tmpfs / "filler"
    with open(filler, "wb") as f:  # fill the disk to the last byte
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    with Gallery(target, create=False) as writer, pytest.raises(GalleryError, match=r"full.*nothing was changed"):
        writer.enroll("newcomer", unit(np.random.default_rng(9), 200))
    assert "newcomer" not in server and len(server) == 8
    server.close()
    with Gallery(target, create=False, readonly=True) as g:  # opened afresh on the full disk: still read
        assert len(g) == 8 and g.identify(unit(np.random.default_rng(8), 1), threshold=-1.0)[0]
