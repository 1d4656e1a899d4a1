"""insightface RecordIO datasets (``train.rec`` + ``train.idx``) read and written without mxnet.

The format is dmlc-core's RecordIO as insightface packs MS1MV2/MS1MV3, Glint360K and
WebFace: each record is ``uint32 magic 0xced7230a``, ``uint32 lrec`` (upper 3 bits a
continuation flag, lower 29 the length), the payload, zero padding to 4 bytes. A payload
that contains the magic at a 4-byte boundary is split there into parts flagged 1 (first),
2 (middle), 3 (last); the reader joins them with the magic put back. The payload is an
IRHeader (``<IfQQ``: flag, label, id, id2), then ``flag`` float32 labels when flag > 0,
then the image bytes (an aligned 112x112 JPEG). ``train.idx`` is text, ``key<TAB>offset``
per line. In insightface's files record 0 holds no image: its label array gives the key
range of the images, [1, label[0]).

Only the standard library and numpy: no pickle anywhere, reads via ``os.pread`` so that
decoding threads share one file descriptor.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputImageError

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_HEAD = struct.Struct("<II")  # magic, lrec
IR_HEADER = struct.Struct("<IfQQ")  # flag, label, id, id2
_LENGTH_MASK = (1 << 29) - 1


class RecordIOError(InputImageError):
    """A RecordIO file cannot be used (missing, truncated, or its index does not fit it)."""


class BadRecord(Exception):
    """One record is damaged (wrong magic, bad header, undecodable image): counted and skipped."""


@dataclass(frozen=True)
class IRHeader:
    flag: int
    label: float | tuple[float, ...]
    id: int
    id2: int


def pack_record(header: IRHeader, image: bytes) -> bytes:
    """IRHeader (+ label array when it has several values) + image bytes: one record's payload."""
    if isinstance(header.label, (tuple, list)):
        labels = header.label
        head = IR_HEADER.pack(len(labels), 0.0, header.id, header.id2) + np.asarray(labels, "<f4").tobytes()
    else:
        head = IR_HEADER.pack(0, float(header.label), header.id, header.id2)
    return head + bytes(image)


def unpack_record(payload: bytes) -> tuple[IRHeader, bytes]:
    """(header, image bytes) of a payload; BadRecord when it is too short for what its header says."""
    if len(payload) < IR_HEADER.size:
        raise BadRecord(f"payload of {len(payload)} bytes is shorter than the {IR_HEADER.size}-byte IRHeader")
    flag, label, id1, id2 = IR_HEADER.unpack_from(payload)
    start = IR_HEADER.size
    if flag > 0:
        end = start + 4 * flag
        if end > len(payload):
            raise BadRecord(f"IRHeader says {flag} labels, the payload holds {(len(payload) - start) // 4}")
        labels = tuple(float(v) for v in np.frombuffer(payload, "<f4", count=flag, offset=start))
        return IRHeader(flag, labels, id1, id2), payload[end:]
    return IRHeader(flag, float(label), id1, id2), payload[start:]


def _frames(payload: bytes) -> list[tuple[int, bytes]]:
    """(cflag, part) frames of one payload, split where the magic sits at a 4-byte boundary (as dmlc)."""
    frames, start = [], 0
    for i in range(0, len(payload) // 4 * 4, 4):
        if payload[i:i + 4] == _MAGIC_BYTES:
            frames.append((1 if start == 0 else 2, payload[start:i]))
            start = i + 4
    frames.append((3 if start else 0, payload[start:]))
    return frames


def read_index(idx_path: str | Path) -> dict[int, int]:
    """{key: byte offset} from a ``.idx`` file (``key<TAB>offset`` per line)."""
    idx_path = Path(idx_path)
    if not idx_path.is_file():
        raise RecordIOError(f"index file not found: {idx_path} (insightface datasets ship train.rec with train.idx)")
    index: dict[int, int] = {}
    with open(idx_path, encoding="ascii", errors="replace") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            parts = line.split()
            try:
                key, offset = int(parts[0]), int(parts[1])
            except (IndexError, ValueError):
                raise RecordIOError(f"{idx_path}:{line_no}: expected 'key<TAB>offset', found {line.strip()[:60]!r}") \
                    from None
            index[key] = offset
    if not index:
        raise RecordIOError(f"{idx_path} lists no records")
    return index


class RecordIOReader:
    """Random access to the records of a ``.rec`` through its ``.idx``; safe to share between threads."""

    def __init__(self, rec_path: str | Path, idx_path: str | Path | None = None) -> None:
        self.path = Path(rec_path)
        if not self.path.is_file():
            raise RecordIOError(f"RecordIO file not found: {self.path}")
        self.idx_path = Path(idx_path) if idx_path else self.path.with_suffix(".idx")
        self.index = read_index(self.idx_path)
        self.size = self.path.stat().st_size
        self._fd: int | None = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        beyond = [(k, o) for k, o in self.index.items() if o + _HEAD.size > self.size]
        if beyond:
            key, offset = min(beyond, key=lambda kv: kv[1])
            self.close()
            raise RecordIOError(f"{self.path} is truncated: record {key} starts at offset {offset}, the file ends at "
                                f"{self.size} bytes ({len(beyond)} records of {self.idx_path.name} lie past the end); "
                                "copy the file again")
        last_key = max(self.index, key=lambda k: self.index[k])
        try:
            self.read(last_key)  # the last record must be whole: a cut-off copy fails now, naming the offset
        except BadRecord:
            pass  # a damaged last record is one bad record, not a truncated file
        except RecordIOError:
            self.close()
            raise

    @property
    def keys(self) -> list[int]:
        return sorted(self.index)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RecordIOReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _pread(self, length: int, offset: int) -> bytes:
        if self._fd is None:
            raise RecordIOError(f"{self.path} is closed")
        data = os.pread(self._fd, length, offset)
        if len(data) < length:
            raise RecordIOError(f"{self.path} is truncated: the record at offset {offset} needs {length} bytes, the "
                                f"file ends at {self.size}; copy the file again")
        return data

    def read(self, key: int) -> bytes:
        """The payload of record ``key`` (parts joined). BadRecord for a wrong magic; RecordIOError if cut off."""
        if key not in self.index:
            raise KeyError(f"record {key} is not in {self.idx_path}")
        offset = start = self.index[key]
        parts: list[bytes] = []
        while True:
            magic, lrec = _HEAD.unpack(self._pread(_HEAD.size, offset))
            if magic != MAGIC:
                raise BadRecord(f"record {key} at offset {offset}: magic {magic:#010x}, expected {MAGIC:#010x}")
            cflag, length = lrec >> 29, lrec & _LENGTH_MASK
            if offset + _HEAD.size + length > self.size:
                raise RecordIOError(f"{self.path} is truncated: record {key} at offset {offset} needs {length} bytes, "
                                    f"the file ends at {self.size}; copy the file again")
            parts.append(self._pread(length, offset + _HEAD.size) if length else b"")
            offset += _HEAD.size + (length + 3) // 4 * 4
            if cflag in (0, 3):
                if cflag == 3 and len(parts) < 2:
                    raise BadRecord(f"record {key} at offset {start}: a last part without a first")
                return _MAGIC_BYTES.join(parts)
            if len(parts) > 1 and cflag == 1:
                raise BadRecord(f"record {key} at offset {start}: a second first part")


class RecordIOWriter:
    """Writes ``.rec`` + ``.idx`` (used by the tests and to pack folders of aligned crops)."""

    def __init__(self, rec_path: str | Path, idx_path: str | Path | None = None) -> None:
        self.rec_path = Path(rec_path)
        self.idx_path = Path(idx_path) if idx_path else self.rec_path.with_suffix(".idx")
        # held open across write() calls, closed by close() / the with block; "x": never over an existing dataset
        self._rec = open(self.rec_path, "xb")  # noqa: SIM115
        self._idx = open(self.idx_path, "x", encoding="ascii")  # noqa: SIM115

    def write(self, key: int, payload: bytes) -> None:
        self._idx.write(f"{key}\t{self._rec.tell()}\n")
        for cflag, part in _frames(payload):
            self._rec.write(_HEAD.pack(MAGIC, (cflag << 29) | len(part)))
            self._rec.write(part)
            self._rec.write(b"\0" * ((4 - len(part) % 4) % 4))

    def close(self) -> None:
        self._rec.close()
        self._idx.close()

    def __enter__(self) -> RecordIOWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_face_dataset(rec_path: str | Path, faces: Iterable[np.ndarray], labels: Sequence[int] | None = None,
                       quality: int = 95) -> int:
    """An insightface-style dataset: record 0 with the image key range, then one JPEG face per record.

    ``faces``: aligned BGR uint8 crops (112x112 in insightface's datasets). Returns the count.
    """
    import cv2

    encoded: list[bytes] = []
    for face in faces:
        ok, buffer = cv2.imencode(".jpg", face, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise InputImageError(f"cannot encode a face of shape {face.shape} as JPEG")
        encoded.append(buffer.tobytes())
    labels = list(labels) if labels is not None else list(range(len(encoded)))
    with RecordIOWriter(rec_path) as writer:
        count = len(encoded)
        writer.write(0, pack_record(IRHeader(2, (float(count + 1), float(count + 1)), 0, 0), b""))
        for key, (image, label) in enumerate(zip(encoded, labels), start=1):
            writer.write(key, pack_record(IRHeader(0, float(label), key, 0), image))
    return len(encoded)
