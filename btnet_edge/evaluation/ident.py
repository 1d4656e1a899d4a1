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
from ..pipeline.sources import IMAGE_SUFFIXES
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
    crop: bool = False  # the image is the face (QMUL-SurvFace, TinyFace): resized, not aligned


UNMATED = "\0unmated"  # identity of unmated probes (no gallery identity can have it)


def _crop_record(path: Path, identity: str) -> FaceRecord | None:
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        log.warning("cannot decode %s: left out", path)
        return None
    h, w = image.shape[:2]
    return FaceRecord(str(path), identity, image, np.zeros((5, 2)), float(w), float(h), crop=True)


def _mat_list(path: Path, names_key: str, ids_key: str) -> list[tuple[str, str]]:
    """(file name, identity) pairs from a QMUL-SurvFace ``*_img_ID_pairs.mat``."""
    from .._deps import require

    require("scipy")  # pip install scipy: only QMUL-SurvFace's .mat lists need it
    from scipy.io import loadmat

    if not path.is_file():
        raise InputImageError(f"{path} not found: QMUL-SurvFace's Face_Identification_Test_Set holds it")
    try:
        meta = loadmat(str(path))
        names = [str(np.asarray(v).reshape(-1)[0]) for v in meta[names_key].reshape(-1)]
        ids = [str(int(v)) for v in np.asarray(meta[ids_key]).reshape(-1)]
    except Exception as exc:  # another layout, a v7.3 (HDF5) file, damage
        raise InputImageError(f"{path}: expected the arrays {names_key} and {ids_key} ({type(exc).__name__}: {exc})") \
            from None
    if len(names) != len(ids):
        raise InputImageError(f"{path}: {len(names)} images for {len(ids)} ids")
    return list(zip(names, ids))


def survface_sets(root: str | Path) -> tuple[list[FaceRecord], list[FaceRecord]]:
    """(gallery, probes) of QMUL-SurvFace's 1:N protocol: ``Face_Identification_Test_Set/`` with ``gallery/``,
    ``mated_probe/``, ``unmated_probe/`` and the two ``*_img_ID_pairs.mat`` files (as the authors read them)."""
    base = Path(root) / "Face_Identification_Test_Set"
    if not base.is_dir():
        base = Path(root)
    for folder in ("gallery", "mated_probe", "unmated_probe"):
        if not (base / folder).is_dir():
            raise InputImageError(f"{base / folder} is not a folder: give the QMUL-SurvFace root (the folder holding "
                                  "Face_Identification_Test_Set/)")
    gallery = [_crop_record(base / "gallery" / name, ident)
               for name, ident in _mat_list(base / "gallery_img_ID_pairs.mat", "gallery_set", "gallery_ids")]
    mated = [_crop_record(base / "mated_probe" / name, ident) for name, ident in
             _mat_list(base / "mated_probe_img_ID_pairs.mat", "mated_probe_set", "mated_probe_ids")]
    unmated = [_crop_record(p, UNMATED) for p in sorted((base / "unmated_probe").iterdir())
               if p.suffix.lower() in IMAGE_SUFFIXES]
    return [r for r in gallery if r], [r for r in mated + unmated if r]


def tinyface_sets(root: str | Path) -> tuple[list[FaceRecord], list[FaceRecord]]:
    """(gallery, probes) of TinyFace's 1:N protocol: ``Testing_Set/`` with ``Gallery_Match/``, ``Probe/`` (files
    ``<identity>_<n>.jpg``) and ``Gallery_Distractor/`` (each distractor a gallery entry of its own)."""
    base = Path(root) / "Testing_Set"
    if not base.is_dir():
        base = Path(root)
    for folder in ("Gallery_Match", "Probe"):
        if not (base / folder).is_dir():
            raise InputImageError(f"{base / folder} is not a folder: give the TinyFace root (the folder holding "
                                  "Testing_Set/)")

    def listed(folder: str) -> list[Path]:
        path = base / folder
        return sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir() else []

    gallery = [_crop_record(p, p.stem.split("_")[0]) for p in listed("Gallery_Match")]
    gallery += [_crop_record(p, f"\0distractor/{p.stem}") for p in listed("Gallery_Distractor")]
    probes = [_crop_record(p, p.stem.split("_")[0]) for p in listed("Probe")]
    return [r for r in gallery if r], [r for r in probes if r]


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
            crops = np.stack([_at(self.records[i], r) for i in indices])
            for i, emb in zip(indices, self.recognizer.embed(crops, r)):
                self.cache[(i, r)] = emb
        return np.stack([self.cache[(i, r)] for i, r in enumerate(resolutions)])


def _at(record: FaceRecord, size: int) -> np.ndarray:
    """The face at ``size`` px: aligned from the photo, or the crop resized (area down, cubic up)."""
    if not record.crop:
        return align_face(record.image, record.kps, size)
    larger = max(record.image.shape[:2]) > size
    return cv2.resize(record.image, (size, size), interpolation=cv2.INTER_AREA if larger else cv2.INTER_CUBIC)


def _resolutions(records: Sequence[FaceRecord], all_resolutions: Sequence[int], indicator: str,
                 rounding: str) -> list[int]:
    return [choose_resolution(face_size(f.width, f.height, indicator), all_resolutions, rounding) for f in records]


def evaluate_ident(recognizer, gallery: Sequence[FaceRecord], probes: Sequence[FaceRecord],
                   fpirs: Sequence[float] = FPIR_TARGETS, closed_set: bool = False) -> dict:
    """One row per indicator x rounding policy, with the counts behind them.

    ``closed_set`` (TinyFace, whose probes all have a mate): without unmated probes the
    open-set figures are None and the rows carry rank-1/5/10/20 identification rates (CMC).
    """
    names = sorted({f.identity for f in gallery})
    mated = [f for f in probes if f.identity in names]
    unmated = [f for f in probes if f.identity not in names]
    if not gallery or not mated or (not unmated and not closed_set):
        raise InputImageError(f"open-set identification needs gallery faces, mated and unmated probes; found "
                              f"{len(gallery)} gallery, {len(mated)} mated and {len(unmated)} unmated (a probe is "
                              "unmated when its identity has no gallery folder)")
    true_index = np.array([names.index(f.identity) for f in mated])
    searches = list(mated) + list(unmated)
    gallery_embedder, probe_embedder = _Embedder(recognizer, gallery), _Embedder(recognizer, searches)
    resolutions = recognizer.manifest.resolutions
    rows: list[dict] = []
    for indicator in INDICATORS:
        for rounding in ROUNDINGS:
            g_res = _resolutions(gallery, resolutions, indicator, rounding)
            p_res = _resolutions(searches, resolutions, indicator, rounding)
            g_emb = gallery_embedder.get(g_res)
            owners = np.array([f.identity for f in gallery])
            prototypes = l2_normalize(np.stack([g_emb[owners == n].mean(axis=0) for n in names]))
            similarity = probe_embedder.get(p_res) @ prototypes.T
            sim_mated, sim_unmated = similarity[: len(mated)], similarity[len(mated):]
            used = {str(r): p_res.count(r) for r in resolutions if p_res.count(r)}
            mate = sim_mated[np.arange(len(mated)), true_index]
            place = (sim_mated > mate[:, None]).sum(axis=1)  # how many gallery entries score above the mate
            cmc = {str(k): round(float(np.mean(place < k)), 6) for k in (1, 5, 10, 20)}
            if not unmated:
                rows.append({"indicator": indicator, "rounding": rounding,
                             "tpir20_at_fpir": {str(t): None for t in fpirs}, "auc": None,
                             "tpir1_at_fpir": {str(t): None for t in fpirs}, "rank_k": cmc,
                             "probe_resolutions": used})
                continue
            fpir, tpir, _ = metrics.open_set_curve(sim_mated, true_index, sim_unmated, rank=TABLE_RANK)
            rows.append({"rank_k": cmc,
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
    def pct(value) -> str:
        return "n/a" if value is None else f"{100 * value:.2f}"

    if rows and rows[0]["auc"] is None:  # closed set (TinyFace): rank-k identification rates
        ranks = list(rows[0]["rank_k"])
        head = ["indicator", "rounding"] + [f"rank-{k}" for k in ranks]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for row in rows:
            lines.append("| " + " | ".join([row["indicator"], row["rounding"]]
                                           + [pct(row["rank_k"][k]) for k in ranks]) + " |")
        return "\n".join(lines)
    for row in rows:
        cells = [row["indicator"], row["rounding"]] + [pct(row["tpir20_at_fpir"][f]) for f in fpirs]
        cells += [pct(row["auc"])] + [pct(row["tpir1_at_fpir"][f]) for f in fpirs]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
