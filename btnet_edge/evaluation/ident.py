"""Open-set 1:N identification as in QMUL-SurvFace and BTNet's dispatch table.

Gallery and probes are folders of identity subfolders; probes whose identity has no
gallery folder form the unmated set. Every image contributes its main face, a real
detection whose size (indicator) picks the branch (rounding), aligned straight to that
branch's size as the runtime does. Gallery identities are the mean of their
embeddings (the authors' prototypes). Reported for every indicator x rounding policy:
TPIR20 at FPIR 0.3/0.2/0.1 and the area under the TPIR20/FPIR curve (the authors'
table), plus rank-1 TPIR, which a small gallery needs to say anything.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import InputImageError
from ..pipeline.align import align_face
from ..pipeline.dispatch import INDICATORS, ROUNDINGS, choose_resolution, face_size
from ..pipeline.face import Face
from ..pipeline.image import read_image
from ..pipeline.preprocess import l2_normalize
from . import metrics
from .pairs import identity_folders

log = logging.getLogger(__name__)

FPIR_TARGETS = (0.3, 0.2, 0.1)
TABLE_RANK = 20  # QMUL-SurvFace's TPIR20


@dataclass(frozen=True, eq=False)
class FaceRecord:
    """The main face of one image: where it came from, whose it is, its landmarks and box size."""

    source: str
    identity: str
    image: np.ndarray
    kps: np.ndarray
    width: float
    height: float


def collect_faces(recognizer, root: str | Path, face_px: float | None = None,
                  progress: bool = False) -> list[FaceRecord]:
    """Main face of every image under ``root/<identity>/``.

    ``face_px`` shrinks each photo (area interpolation) so that its main face's long side
    is about that many px, as surveillance probes are: the detection on the full photo
    is scaled with it, so a face the detector could not find at that size still counts.
    """
    from tqdm.auto import tqdm

    from ..pipeline.recognizer import main_face

    records = []
    items = [(name, path) for name, files in identity_folders(root).items() for path in files]
    for name, path in tqdm(items, desc=Path(root).name, unit="img", disable=not progress):
        image = read_image(path)
        dets = recognizer.detector.detect(image)
        face = main_face([Face(bbox=d.bbox, kps=d.kps, det_score=d.score, face_size=max(d.width, d.height),
                               resolution=112) for d in dets])
        if face is None:
            log.warning("no face found in %s: left out", path)
            continue
        kps = face.kps.astype(np.float64)
        width, height = float(face.bbox[2] - face.bbox[0]), float(face.bbox[3] - face.bbox[1])
        if face_px is not None and max(width, height) > face_px:
            scale = face_px / max(width, height)
            image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            kps, width, height = kps * scale, width * scale, height * scale
        records.append(FaceRecord(str(path), name, image, kps, width, height))
    return records


class _Embedder:
    """Embeddings per (face, resolution), computed once however many policies ask for them."""

    def __init__(self, recognizer, records: Sequence[FaceRecord]) -> None:
        self.recognizer, self.records = recognizer, records
        self.cache: dict[tuple[int, int], np.ndarray] = {}

    def get(self, resolutions: Sequence[int]) -> np.ndarray:
        todo: dict[int, list[int]] = {}
        for i, r in enumerate(resolutions):
            if (i, r) not in self.cache:
                todo.setdefault(r, []).append(i)
        for r, indices in todo.items():
            crops = np.stack([align_face(self.records[i].image, self.records[i].kps, r) for i in indices])
            for i, emb in zip(indices, self.recognizer.embed(crops, r)):
                self.cache[(i, r)] = emb
        return np.stack([self.cache[(i, r)] for i, r in enumerate(resolutions)])


def _resolutions(records: Sequence[FaceRecord], all_resolutions: Sequence[int], indicator: str,
                 rounding: str) -> list[int]:
    return [choose_resolution(face_size(f.width, f.height, indicator), all_resolutions, rounding) for f in records]


def evaluate_ident(recognizer, gallery: Sequence[FaceRecord], probes: Sequence[FaceRecord],
                   fpirs: Sequence[float] = FPIR_TARGETS) -> dict:
    """One row per indicator x rounding policy, with the counts behind them."""
    names = sorted({f.identity for f in gallery})
    mated = [f for f in probes if f.identity in names]
    unmated = [f for f in probes if f.identity not in names]
    if not gallery or not mated or not unmated:
        raise InputImageError(f"open-set identification needs gallery faces, mated and unmated probes; found "
                              f"{len(gallery)} gallery, {len(mated)} mated and {len(unmated)} unmated (a probe is "
                              "unmated when its identity has no gallery folder)")
    true_index = np.array([names.index(f.identity) for f in mated])
    searches = list(mated) + list(unmated)
    gallery_embedder, probe_embedder = _Embedder(recognizer, gallery), _Embedder(recognizer, searches)
    resolutions = recognizer.manifest.resolutions
    rows = []
    for indicator in INDICATORS:
        for rounding in ROUNDINGS:
            g_res = _resolutions(gallery, resolutions, indicator, rounding)
            p_res = _resolutions(searches, resolutions, indicator, rounding)
            g_emb = gallery_embedder.get(g_res)
            owners = np.array([f.identity for f in gallery])
            prototypes = l2_normalize(np.stack([g_emb[owners == n].mean(axis=0) for n in names]))
            similarity = probe_embedder.get(p_res) @ prototypes.T
            sim_mated, sim_unmated = similarity[: len(mated)], similarity[len(mated):]
            fpir, tpir, _ = metrics.open_set_curve(sim_mated, true_index, sim_unmated, rank=TABLE_RANK)
            used = {str(r): p_res.count(r) for r in resolutions if p_res.count(r)}
            rows.append({
                "indicator": indicator, "rounding": rounding,
                "tpir20_at_fpir": {str(t): round(metrics.tpir_at_fpir(sim_mated, true_index, sim_unmated, t,
                                                                      TABLE_RANK), 6) for t in fpirs},
                "auc": round(metrics.curve_auc(fpir, tpir), 6),
                "tpir1_at_fpir": {str(t): round(metrics.tpir_at_fpir(sim_mated, true_index, sim_unmated, t, 1), 6)
                                  for t in fpirs},
                "probe_resolutions": used,
            })
    counts = {"gallery_identities": len(names), "gallery_faces": len(gallery), "mated_probes": len(mated),
              "unmated_probes": len(unmated),
              "probe_face_size_px": {"min": round(min(max(f.width, f.height) for f in probes), 1),
                                "max": round(max(max(f.width, f.height) for f in probes), 1)}}
    return {"rows": rows, "counts": counts}


def format_table(rows: Sequence[dict]) -> str:
    """The authors' table: indicator, rounding, TPIR20 (%) at each FPIR, AUC (%); rank-1 after it."""
    fpirs = list(rows[0]["tpir20_at_fpir"]) if rows else []
    head = ["indicator", "rounding"] + [f"TPIR20@FPIR={f}" for f in fpirs] + ["AUC"] + [f"TPIR1@{f}" for f in fpirs]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["indicator"], row["rounding"]] + [f"{100 * row['tpir20_at_fpir'][f]:.2f}" for f in fpirs]
        cells += [f"{100 * row['auc']:.2f}"] + [f"{100 * row['tpir1_at_fpir'][f]:.2f}" for f in fpirs]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
