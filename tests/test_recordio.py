"""insightface RecordIO without mxnet: round trip, split records, bad records skipped, truncation named."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest

from btnet_edge.training.data import AREA_ONLY, Augmentation, Degradation, GlobalBatches, RecordFaces
from btnet_edge.training.recordio import (
    MAGIC,
    IRHeader,
    RecordIOError,
    RecordIOReader,
    RecordIOWriter,
    pack_record,
    read_index,
    unpack_record,
)


def test_a_dataset_round_trips_with_the_insightface_layout(crowd_faces, crowd_rec):
    index = read_index(crowd_rec.with_suffix(".idx"))
    assert sorted(index) == list(range(len(crowd_faces) + 1))  # record 0 + one per face
    with RecordIOReader(crowd_rec) as reader:
        header, image = unpack_record(reader.read(0))
        assert header.flag == 2 and header.label == (len(crowd_faces) + 1.0,) * 2 and image == b""
        header, image = unpack_record(reader.read(5))
        assert header == IRHeader(0, 4.0, 5, 0)  # label = the face's place, id = its key
    source = RecordFaces(crowd_rec)
    assert len(source) == len(crowd_faces) > 50
    for i in (0, 17, len(source) - 1):
        face = source.get(i)
        assert face.shape == (112, 112, 3) and face.dtype == np.uint8
        assert np.abs(face.astype(int) - crowd_faces[i]).mean() < 3.0  # JPEG q95 of the same face


def test_a_payload_holding_the_magic_is_split_and_joined_as_dmlc_does(tmp_path):
    magic = struct.pack("<I", MAGIC)
    payload = pack_record(IRHeader(3, (1.0, 2.0, 3.0), 9, 1), b"ab" + b"cd" + magic + b"x" * 8 + magic + b"tail!")
    assert payload.index(magic) % 4 == 0  # at a 4-byte boundary: the writer must split there
    with RecordIOWriter(tmp_path / "s.rec") as writer:
        writer.write(0, payload)
        writer.write(1, b"plain")
    raw = (tmp_path / "s.rec").read_bytes()
    flags = [struct.unpack_from("<I", raw, i + 4)[0] >> 29 for i in range(0, len(raw) - 4, 4)
             if struct.unpack_from("<I", raw, i)[0] == MAGIC]
    assert flags == [1, 2, 3, 0]  # first, middle, last part, then the plain record
    with RecordIOReader(tmp_path / "s.rec") as reader:
        assert reader.read(0) == payload and reader.read(1) == b"plain"
        header, image = unpack_record(reader.read(0))
        assert header.label == (1.0, 2.0, 3.0) and image.endswith(b"tail!")


def _copy(rec, tmp_path):
    data = bytearray(rec.read_bytes())
    out = tmp_path / "train.rec"
    out.write_bytes(data)
    out.with_suffix(".idx").write_text(rec.with_suffix(".idx").read_text())
    return out, data, read_index(rec.with_suffix(".idx"))


def test_bad_records_are_counted_and_replaced_never_fatal(crowd_rec, tmp_path):
    rec, data, index = _copy(crowd_rec, tmp_path)
    data[index[3]:index[3] + 4] = b"\0\0\0\0"  # wrong magic
    start = index[8] + 8 + 24  # record 8's JPEG bytes: garbage
    data[start:start + 64] = bytes(64)
    rec.write_bytes(data)
    source = RecordFaces(rec)
    assert source.get(2) is None and source.get(7) is None and source.get(1) is not None  # keys 3, 8
    batches = GlobalBatches(source, np.arange(len(source)), len(source) // 2, (14,), None, AREA_ONLY, seed=0,
                            workers=1)
    try:
        for step in range(2):
            batch = batches.get(step)
            assert len(batch.faces) == len(source) // 2
        assert batches.bad_records == {2, 7}
    finally:
        batches.close()


def test_a_truncated_file_is_an_error_naming_the_offset(crowd_rec, tmp_path):
    rec, data, index = _copy(crowd_rec, tmp_path)
    last = max(index.values())
    rec.write_bytes(data[:last + 100])  # the last record cut short
    with pytest.raises(RecordIOError, match=f"offset {last}"):
        RecordFaces(rec)
    rec.write_bytes(data[:index[10] + 2])  # the index points past the end
    with pytest.raises(RecordIOError, match=f"offset {index[10]}"):
        RecordFaces(rec)


def test_ranks_take_contiguous_shares_of_the_same_global_batch(crowd_rec):
    source = RecordFaces(crowd_rec)
    aug = Augmentation()
    one = GlobalBatches(source, np.arange(len(source)), 8, (14, 7), aug, Degradation(), seed=3, workers=2)
    two = [GlobalBatches(source, np.arange(len(source)), 4, (14, 7), aug, Degradation(), seed=3, rank=r, world=2,
                         workers=1) for r in range(2)]
    try:
        for step in (0, 1, one.steps_per_epoch + 1):  # the second epoch has another order
            whole = one.get(step)
            parts = [b.get(step) for b in two]
            assert np.array_equal(whole.faces, np.concatenate([p.faces for p in parts]))
            for r in (14, 7):
                assert np.array_equal(whole.small[r], np.concatenate([p.small[r] for p in parts]))
        assert not np.array_equal(one.global_indices(0), one.global_indices(one.steps_per_epoch))
        again = GlobalBatches(source, np.arange(len(source)), 8, (14, 7), aug, Degradation(), seed=3, workers=1)
        assert np.array_equal(again.get(1).faces, one.get(1).faces)  # a function of (seed, step) alone: resumable
    finally:
        for b in [one, *two]:
            b.close()


def test_the_small_view_is_the_same_face_with_a_random_kernel(crowd_faces):
    degradation = Degradation()
    kernels = {"area": cv2.INTER_AREA, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}
    seen = set()
    for seed in range(12):
        face = crowd_faces[seed]
        small = degradation.apply(face, 14, np.random.default_rng(seed))
        match = [name for name, k in kernels.items()
                 if np.array_equal(small, cv2.resize(face, (14, 14), interpolation=k))]
        assert match, seed  # exactly one of the kernels applied to this face: the same face, made small
        seen.add(match[0])
    assert len(seen) >= 2  # drawn at random, not one fixed kernel
    blurred = Degradation(("area",), blur_p=1.0, jpeg_p=1.0).apply(crowd_faces[0], 28, np.random.default_rng(0))
    assert blurred.shape == (28, 28, 3)
    assert not np.array_equal(blurred, cv2.resize(crowd_faces[0], (28, 28), interpolation=cv2.INTER_AREA))
    with pytest.raises(ValueError, match="interpolations"):
        Degradation(("lanczos9",))
