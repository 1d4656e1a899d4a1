"""The gallery matrix: held once, reloaded incrementally, searchable in float16 and in chunks."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

import btnet_edge.gallery.index as gallery_index
from btnet_edge.errors import GalleryError
from btnet_edge.gallery import Gallery

D = 32


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    rows = rng.standard_normal((n, D)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.fixture
def filled(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    people = {f"p{i:03d}": _unit(rng, 1 + i % 4) for i in range(60)}
    path = tmp_path / "g.db"
    with Gallery(path, embedding_size=D) as gallery:
        for name, rows in people.items():
            gallery.enroll(name, rows)
    return path, people


def _brute_force(people: dict[str, np.ndarray], probes: np.ndarray) -> list[tuple[str, float]]:
    best = []
    for probe in probes:
        scores = {name: float((rows @ probe).max()) for name, rows in people.items()}
        name = max(scores, key=scores.get)
        best.append((name, scores[name]))
    return best


def test_reload_reads_only_new_rows(filled):
    path, people = filled
    probes = _unit(np.random.default_rng(1), 5)
    with Gallery(path, create=False) as reader, Gallery(path, create=False) as writer:
        reader.identify(probes)
        total = sum(len(r) for r in people.values())
        assert reader.rows_loaded == total
        newcomer = _unit(np.random.default_rng(2), 3)
        writer.enroll("newcomer", newcomer)
        found = reader.identify(newcomer, threshold=0.99)
        assert [m[0].name for m in found] == ["newcomer"] * 3
        assert reader.rows_loaded == total + 3  # the old rows were not read again
        writer.remove("p000")  # a removal: the next refresh reads everything again, and p000 is gone
        reader.identify(probes)
        after_full_reload = (total + 3) + (total + 3 - len(people["p000"]))
        assert reader.rows_loaded == after_full_reload
        assert "p000" not in {m[0].name for m in reader.identify(people["p000"], threshold=-1.0)}
        writer.rename("p001", "renamed")  # names are reloaded without reading vectors
        assert reader.identify(people["p001"][:1], threshold=0.99)[0][0].name == "renamed"
        assert reader.rows_loaded == after_full_reload


def test_chunked_search_equals_brute_force(filled, monkeypatch):
    path, people = filled
    probes = _unit(np.random.default_rng(3), 40)
    expected = _brute_force(people, probes)
    monkeypatch.setattr(gallery_index, "SEARCH_BLOCK_ELEMENTS", 300)  # a few probes x rows at once
    monkeypatch.setattr(gallery_index, "ROW_CHUNK", 7)
    for dtype, tolerance in (("float32", 1e-5), ("float16", 2e-3)):
        with Gallery(path, create=False, matrix_dtype=dtype) as gallery:
            found = gallery.identify(probes, top_k=1, threshold=-1.0)
        assert [m[0].name for m in found] == [name for name, _ in expected]
        assert max(abs(m[0].score - s) for m, (_, s) in zip(found, expected)) < tolerance


def test_top_k_is_sorted_and_complete(filled):
    path, people = filled
    probe = people["p010"][0]
    with Gallery(path, create=False) as gallery:
        top = gallery.identify(probe, top_k=5, threshold=-1.0)[0]
        everyone = gallery.identify(probe, top_k=1000, threshold=-1.0)[0]
    assert top[0].name == "p010" and top[0].score == pytest.approx(1.0, abs=1e-6)
    assert [m.score for m in top] == sorted((m.score for m in top), reverse=True)
    assert len(everyone) == len(people) and top == everyone[:5]


def test_float16_halves_the_matrix(filled):
    path, _ = filled
    sizes = {}
    for dtype in ("float32", "float16"):
        with Gallery(path, create=False, matrix_dtype=dtype) as gallery:
            sizes[dtype] = gallery.index_info()["matrix_bytes"]
    assert sizes["float16"] * 2 == sizes["float32"]
    with pytest.raises(GalleryError, match="matrix_dtype should be one of"):
        Gallery(path, create=False, matrix_dtype="int8").identify(np.ones(D))


def test_hand_edited_meta_is_a_clear_error(filled):
    path, _ = filled
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = 'abc' WHERE key = 'threshold'")
    with Gallery(path, create=False) as gallery:
        with pytest.raises(GalleryError, match=r"stored threshold is .abc., not a cosine.*--threshold 0.3"):
            gallery.identify(np.ones(D))
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = 'abc' WHERE key = 'embedding_size'")
    with pytest.raises(GalleryError, match="embedding_size is 'abc'"):
        Gallery(path, create=False)


def test_reused_row_ids_are_not_mistaken_for_loaded_rows(tmp_path):
    """SQLite reuses the ids of deleted tail rows: removing the last person and enrolling another is seen."""
    rng = np.random.default_rng(5)
    path = tmp_path / "g.db"
    first, last, newcomer = _unit(rng, 2), _unit(rng, 2), _unit(rng, 2)
    with Gallery(path, embedding_size=D) as reader, Gallery(path, create=False) as writer:
        writer.enroll("first", first)
        writer.enroll("last", last)
        assert reader.identify(last, threshold=0.99)[0][0].name == "last"
        writer.remove("last")
        writer.enroll("newcomer", newcomer)  # takes the row ids (and identity id) "last" had
        assert [m[0].name if m else None for m in reader.identify(newcomer, threshold=0.99)] == ["newcomer"] * 2
        assert reader.identify(last, threshold=0.99) == [[], []]


def test_approximate_index_agrees_with_exact_and_grows_incrementally(tmp_path):
    pytest.importorskip("faiss", reason="faiss-cpu not installed (btnet-edge[ann], in the dev extra)")
    d, rng = 64, np.random.default_rng(11)
    path = tmp_path / "big.db"
    rows = rng.standard_normal((3000, d)).astype(np.float32)
    with Gallery(path, embedding_size=d) as writer:
        for start in range(0, len(rows), 30):
            writer.enroll(f"q{start // 30:03d}", rows[start:start + 30])
    probes = rows[rng.choice(len(rows), 60, replace=False)] + 0.6 * rng.standard_normal((60, d)) / np.sqrt(d)
    with Gallery(path, create=False, index="ann") as ann, Gallery(path, create=False, index="exact") as exact:
        assert [r[0].name for r in ann.identify(probes, threshold=-1.0)] == \
            [r[0].name for r in exact.identify(probes, threshold=-1.0)]
        top = ann.identify(probes[:1], top_k=3, threshold=-1.0)[0]
        assert [m.score for m in top] == [m.score for m in exact.identify(probes[:1], top_k=3, threshold=-1.0)[0]]
        assert ann.index_info()["kind"] == "ann" and exact.index_info()["kind"] == "exact"
        coded = ann._local.ann
        with Gallery(path, create=False) as other:
            other.enroll("late", rows[:1] * -1.0)
        assert ann.identify(-rows[:1], threshold=0.99)[0][0].name == "late"
        assert ann._local.ann is coded and coded.rows == len(rows) + 1  # encoded the new row only
        with Gallery(path, create=False) as other:
            other.remove("late")
        assert ann.identify(-rows[:1], threshold=0.99) == [[]]  # a removal rebuilds the codes
    with Gallery(path, create=False) as auto:  # below ANN_MIN_ROWS, "auto" searches exactly
        assert auto.index_info()["kind"] == "exact"


def test_approximate_index_learns_its_centroids_again_as_the_gallery_grows(tmp_path):
    """Below MIN_TRAIN_ROWS every row is rescored (exact answers); at 4x the rows the centroids were learnt from, the
    product quantizer is learnt again and every row re-encoded, so early centroids do not serve a grown gallery."""
    pytest.importorskip("faiss", reason="faiss-cpu not installed (btnet-edge[ann], in the dev extra)")
    from btnet_edge.gallery import ann as ann_module

    d, rng = 64, np.random.default_rng(5)
    path = tmp_path / "grow.db"
    small = rng.standard_normal((ann_module.MIN_TRAIN_ROWS // 2, d)).astype(np.float32)
    with Gallery(path, embedding_size=d) as writer:
        writer.enroll("first", small)
    with Gallery(path, create=False, index="ann") as ann:
        assert ann.identify(small[3:4], threshold=0.99)[0][0].name == "first"
        coded = ann._local.ann
        assert coded.codes is None and coded.rows == len(small)  # too few rows to learn centroids from
        more = rng.standard_normal((ann_module.MIN_TRAIN_ROWS, d)).astype(np.float32)
        with Gallery(path, create=False) as other:
            other.enroll("second", more)
        assert ann.identify(more[7:8], threshold=0.99)[0][0].name == "second"
        assert coded.codes is not None and coded.trained_on == len(small) + len(more) == coded.rows
        learnt = coded.codes
        grown = rng.standard_normal((3 * coded.trained_on, d)).astype(np.float32)
        with Gallery(path, create=False) as other:
            other.enroll("third", grown)
        assert ann.identify(grown[11:12], threshold=0.99)[0][0].name == "third"
        assert coded.codes is not learnt and coded.trained_on == coded.rows == len(small) + len(more) + len(grown)
        assert coded.codes.ntotal == coded.rows


def test_rescoring_keeps_each_identitys_best_row_and_breaks_ties_by_id():
    from btnet_edge.gallery.index import ExactIndex

    rng = np.random.default_rng(2)
    rows = _unit(rng, 40)
    owners = np.arange(40) % 7 + 10  # identities 10..16, several rows each
    rows[5] = rows[12]  # rows 5 (identity 15) and 12 (identity 15) equal: one identity, one score
    rows[3] = rows[8]  # identities 13 and 11 tie exactly: the lower id ranks first
    index = ExactIndex(D)
    index.append(np.arange(1, 41), owners, rows)
    index.regroup()
    probe = rows[8]
    candidates = np.array([3, 8, 8, 5, 12, 20, 33, -1, 40, 99])  # doubles, FAISS's -1 filler, out of range
    ranked = index.rescore(probe, candidates, top_k=4)
    kept = [3, 8, 5, 12, 20, 33]
    expected: dict[int, float] = {}
    for r in kept:
        expected[int(owners[r])] = max(expected.get(int(owners[r]), -2.0), float(rows[r] @ probe))
    order = sorted(expected, key=lambda i: (-expected[i], i))[:4]
    assert list(ranked.identity_ids) == order and order[:2] == [11, 13]
    np.testing.assert_allclose(ranked.scores, [expected[i] for i in order], rtol=1e-6)
    assert all(isinstance(i, int) for i in ranked.identity_ids)
    assert index.rescore(probe, np.array([-1, 50]), 3).identity_ids == ()
