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


@dataclass(frozen=True)
class Copy:
    """A device-to-device copy: an implant written at an aligned address, moved to where the segment reads it.

    Only for trunk segments whose implant rows start at an offset TensorRT cannot bind (not a
    multiple of 256 bytes): a copy on the device has no alignment rule.
    """

    source: Slot
    target: Slot


@dataclass
class FrameLayout:
    """What one call uploads, launches (and copies) and downloads, in order."""

    uploads: dict[int, Slot]  # resolution -> its crops in the CROPS buffer
    launches: list[Launch | Copy]
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
        """Most faces per call at ``resolution``: the smallest profile max of the engines its faces pass through.

        A branch's faces also fill the trunk's ``implant_<r>`` input (merged), or their share of the
        segment's merged input (segments: its max less the previous segment's); a target may give
        the trunk a smaller max than the branch.
        """
        first = self.resolutions[0]
        if self.form == "merged":
            trunk = self.folder.entry("trunk")
            name = next(t.name for t in self.folder.trunk_inputs if t.resolution == resolution)
            trunk_max = trunk.profile(name).max[0]
        else:
            segment_max = {}
            for link in self.folder.segments:
                segment_max[link.resolution] = self.folder.entry(link.engine).profile(link.input).max[0]
            index = self.resolutions.index(resolution)
            previous = segment_max[self.resolutions[index - 1]] if index else 0
            trunk_max = segment_max[resolution] - previous
        if resolution == first:
            return trunk_max
        branch = self.folder.entry(f"branch_{resolution}")
        return min(branch.profile(branch.inputs[0]).max[0], trunk_max)

    def fits(self, counts: Mapping[int, int]) -> bool:
        """True when one call holds ``counts`` faces per resolution (else split them: :meth:`chunks`)."""
        return all(int(counts.get(r, 0)) <= self.max_faces[r] for r in self.resolutions)

    def chunks(self, counts: Mapping[int, int]) -> list[dict[int, slice]]:
        """Calls that hold ``counts`` between them: per call, the slice of each resolution's faces it takes."""
        calls = max([-(-int(counts.get(r, 0)) // self.max_faces[r]) for r in self.resolutions] + [1])
        return [{r: slice(k * self.max_faces[r], (k + 1) * self.max_faces[r]) for r in self.resolutions}
                for k in range(calls)]

    def _capacities(self) -> dict[str, int]:
        crops = sum(_aligned(self.max_faces[r] * r * r * 3) for r in self.resolutions)
        capacity = {CROPS: crops, EMBEDDING: _aligned(sum(self.max_faces.values()) * self.embedding_size * 4)}
        rows = self.max_faces[self.resolutions[0]]
        for r in self.resolutions[1:]:
            per_face = int(np.prod(self.implant_shape[r])) * 4
            rows = rows + self.max_faces[r] if self.form != "merged" else self.max_faces[r]
            capacity[self._implant_buffer(r)] = _aligned(rows * per_face)
            if self.form != "merged" and per_face % ALIGN_BYTES:  # implant rows may start unaligned: staged
                capacity[self._stage_buffer(r)] = _aligned(self.max_faces[r] * per_face)
        return capacity

    @staticmethod
    def _stage_buffer(resolution: int) -> str:
        return f"stage_{resolution}"

    def _implant_buffer(self, resolution: int) -> str:
        return f"implant_{resolution}" if self.form == "merged" else f"merged_{resolution}"

    def layout(self, counts: Mapping[int, int]) -> FrameLayout:
        """The layout for ``counts`` faces per resolution (missing resolutions: none)."""
        counts = {r: int(counts.get(r, 0)) for r in self.resolutions}
        for r, n in counts.items():
            if n > self.max_faces[r]:
                raise BackendError(f"{n} faces at {r} px exceed the engines' profile max {self.max_faces[r]} in one "
                                   "call; split them (LayoutPlanner.chunks) or rebuild with a larger max")
        uploads, offset = {}, 0
        for r in self.resolutions:
            uploads[r] = Slot(CROPS, offset, (counts[r], r, r, 3), "uint8")
            offset += _aligned(uploads[r].nbytes)
        launches: list[Launch | Copy] = []
        for r in self.resolutions[1:]:
            if counts[r]:
                entry = self.folder.entry(f"branch_{r}")
                target = self._implant_slot(r, counts)
                if target.offset % ALIGN_BYTES:  # TensorRT refuses the address: write aligned, copy on the device
                    staged = Slot(self._stage_buffer(r), 0, target.shape, target.dtype)
                    launches.append(Launch(entry.name, {entry.inputs[0]: uploads[r]}, {entry.outputs[0]: staged}))
                    launches.append(Copy(staged, target))
                else:
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

    def _segment_launches(self, image: Slot, counts: Mapping[int, int], download: Slot) -> list[Launch | Copy]:
        launches: list[Launch | Copy] = []
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


__all__ = ["ALIGN_BYTES", "CROPS", "EMBEDDING", "Copy", "FrameLayout", "Launch", "LayoutPlanner", "Slot"]
