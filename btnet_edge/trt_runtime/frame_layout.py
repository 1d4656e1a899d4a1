"""Where every tensor of one frame lives on the device: buffers, byte offsets, shapes, and the launch order.

The layout is pure arithmetic over the engine plan and the faces per resolution,
shared by the TensorRT runner and the ONNX Runtime IOBinding runner that proves
it on the CPU (same plan, same offsets). The rules it encodes:

- one ``crops`` buffer holds the uint8 crops of every resolution back to back,
  so one host-to-device copy uploads the frame;
- merged trunk: branch ``r`` writes its implant straight into the trunk's
  ``implant_<r>`` input buffer (offset 0), and the trunk runs once, inputs
  with no faces given as batch 0 (min-0 profiles);
- trunk segments: segment ``k`` reads ``merged_<r>``, whose first rows are the
  previous segment's output (offset 0) and whose next rows are branch ``r``'s
  implant (offset = previous rows x bytes per face): the concatenation costs
  nothing; a segment with no rows is not launched;
- the embeddings land in one ``embedding`` buffer: one device-to-host copy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..errors import BackendError
from .engine_folder import EngineFolder

ALIGN_BYTES = 256  # cudaMalloc's alignment; TensorRT wants aligned tensor addresses
CROPS = "crops"
EMBEDDING = "embedding"


def _aligned(nbytes: int) -> int:
    return -(-nbytes // ALIGN_BYTES) * ALIGN_BYTES


@dataclass(frozen=True)
class Slot:
    """One tensor: ``shape`` of ``dtype`` at byte ``offset`` of device buffer ``buffer``."""

    buffer: str
    offset: int
    shape: tuple[int, ...]
    dtype: str

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize


@dataclass(frozen=True)
class Launch:
    """One engine execution: its inputs and outputs bound to slots."""

    engine: str
    inputs: Mapping[str, Slot]
    outputs: Mapping[str, Slot]


@dataclass
class FrameLayout:
    """What one call uploads, launches and downloads."""

    uploads: dict[int, Slot]  # resolution -> its crops in the CROPS buffer
    launches: list[Launch]
    download: Slot  # the embeddings, in trunk order (112, then each implant's resolution)
    counts: dict[int, int]
    upload_bytes: int = 0


class LayoutPlanner:
    """Buffer capacities from the plan's profiles, and the layout of each call."""

    def __init__(self, folder: EngineFolder) -> None:
        if not folder.uint8:
            raise BackendError("device-resident inference needs engines built with input_format = \"uint8_bgr\" "
                               f"(this plan has {folder.input_format!r}); rebuild with a current target")
        self.folder = folder
        self.trunk_inputs = [(t.name, t.shape, t.resolution) for t in folder.trunk_inputs]
        self.resolutions = folder.resolutions  # 112 first: the trunk's output order
        self.form = folder.trunk_form
        self.embedding_size = folder.embedding_size
        self.implant_shape = {r: shape for _, shape, r in self.trunk_inputs[1:]}
        self.max_faces = {r: self._max_batch(r) for r in self.resolutions}
        self.capacity = self._capacities()

    def _max_batch(self, resolution: int) -> int:
        """Most faces per call at ``resolution``: the profile max of the engine that takes its crops."""
        if resolution != self.resolutions[0]:
            name = f"branch_{resolution}"
        else:
            name = "trunk" if self.form == "merged" else self.folder.segments[0].engine
        entry = self.folder.entry(name)
        return entry.profile(entry.inputs[0]).max[0]

    def _capacities(self) -> dict[str, int]:
        crops = sum(_aligned(self.max_faces[r] * r * r * 3) for r in self.resolutions)
        capacity = {CROPS: crops, EMBEDDING: _aligned(sum(self.max_faces.values()) * self.embedding_size * 4)}
        rows = self.max_faces[self.resolutions[0]]
        for r in self.resolutions[1:]:
            per_face = int(np.prod(self.implant_shape[r])) * 4
            rows = rows + self.max_faces[r] if self.form != "merged" else self.max_faces[r]
            capacity[self._implant_buffer(r)] = _aligned(rows * per_face)
        return capacity

    def _implant_buffer(self, resolution: int) -> str:
        return f"implant_{resolution}" if self.form == "merged" else f"merged_{resolution}"

    def layout(self, counts: Mapping[int, int]) -> FrameLayout:
        """The layout for ``counts`` faces per resolution (missing resolutions: none)."""
        counts = {r: int(counts.get(r, 0)) for r in self.resolutions}
        for r, n in counts.items():
            if n > self.max_faces[r]:
                raise BackendError(f"{n} faces at {r} px exceed the engines' profile max {self.max_faces[r]}; "
                                   "split the batch or rebuild with a larger max in the target")
        uploads, offset = {}, 0
        for r in self.resolutions:
            uploads[r] = Slot(CROPS, offset, (counts[r], r, r, 3), "uint8")
            offset += _aligned(uploads[r].nbytes)
        launches = []
        for r in self.resolutions[1:]:
            if counts[r]:
                entry = self.folder.entry(f"branch_{r}")
                target = self._implant_slot(r, counts)
                launches.append(Launch(entry.name, {entry.inputs[0]: uploads[r]}, {entry.outputs[0]: target}))
        total = sum(counts.values())
        download = Slot(EMBEDDING, 0, (total, self.embedding_size), "float32")
        if self.form == "merged":
            if total:
                entry = self.folder.entry("trunk")
                inputs = {self.trunk_inputs[0][0]: uploads[self.resolutions[0]]}
                inputs.update({name: self._implant_slot(r, counts) for name, _, r in self.trunk_inputs[1:]})
                launches.append(Launch("trunk", inputs, {entry.outputs[0]: download}))
        else:
            launches += self._segment_launches(uploads[self.resolutions[0]], counts, download)
        return FrameLayout(uploads, launches, download, counts, upload_bytes=offset)

    def _implant_slot(self, resolution: int, counts: Mapping[int, int]) -> Slot:
        """Where branch ``resolution`` writes: its trunk input (merged) or the rows after the trunk's own."""
        shape = self.implant_shape[resolution]
        if self.form == "merged":
            return Slot(self._implant_buffer(resolution), 0, (counts[resolution], *shape), "float32")
        before = self._rows_before(resolution, counts)
        return Slot(self._implant_buffer(resolution), before * int(np.prod(shape)) * 4,
                    (counts[resolution], *shape), "float32")

    def _rows_before(self, resolution: int, counts: Mapping[int, int]) -> int:
        """Faces that reach segment ``resolution`` from the trunk's earlier entry points."""
        index = self.resolutions.index(resolution)
        return sum(counts[r] for r in self.resolutions[:index])

    def _segment_launches(self, image: Slot, counts: Mapping[int, int], download: Slot) -> list[Launch]:
        launches = []
        for link in self.folder.segments:
            r = link.resolution
            rows = self._rows_before(r, counts) + counts[r]
            if r == self.resolutions[0]:
                source = image
            else:
                source = Slot(self._implant_buffer(r), 0, (rows, *self.implant_shape[r]), "float32")
            if not rows:
                continue  # nothing reaches this segment: no launch
            index = self.resolutions.index(r)
            if index + 1 < len(self.resolutions):
                following = self.resolutions[index + 1]
                target = Slot(self._implant_buffer(following), 0, (rows, *self.implant_shape[following]), "float32")
            else:
                target = download
            launches.append(Launch(link.engine, {link.input: source}, {link.output: target}))
        return launches


__all__ = ["ALIGN_BYTES", "CROPS", "EMBEDDING", "FrameLayout", "Launch", "LayoutPlanner", "Slot"]
