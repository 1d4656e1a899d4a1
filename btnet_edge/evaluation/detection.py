"""Detection recall and precision per face-size bucket, against WIDER FACE-format ground truth.

WIDER FACE's annotation file (wider_face_val_bbx_gt.txt) lists, per image: its path
relative to the images folder, the face count N, then N lines
``x y w h blur expression illumination invalid occlusion pose`` (an image with no face
has N = 0 and one line of zeros). Boxes flagged invalid are ignored: finding them is
neither a hit nor a false box. A detection matches the unmatched ground-truth box it
overlaps most if their IoU reaches ``iou_threshold`` (0.5, WIDER's own rule); detections
are taken best score first. Sizes are a box's long side in px.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputImageError
from ..pipeline.detectors._nms import box_iou

log = logging.getLogger(__name__)

SIZE_BUCKETS_PX = (0, 10, 16, 24, 40)  # lower edges: <10, 10-16, 16-24, 24-40, 40+
DEFAULT_IOU = 0.5


@dataclass(frozen=True)
class GroundTruth:
    """One image: its path, face boxes (N, 4) x1,y1,x2,y2 and which are ignored (N,) bool."""

    path: Path
    boxes: np.ndarray
    ignore: np.ndarray


def read_wider(annotations: str | Path, images: str | Path) -> list[GroundTruth]:
    """Parse a WIDER FACE bbx_gt file; image paths are resolved under ``images``."""
    annotations, images = Path(annotations), Path(images)
    if not annotations.is_file():
        raise InputImageError(f"annotation file {annotations} does not exist (e.g. wider_face_split/"
                              "wider_face_val_bbx_gt.txt)")
    lines = [line.strip() for line in annotations.read_text().splitlines()]
    lines = [line for line in lines if line]
    out: list[GroundTruth] = []
    i = 0
    try:
        while i < len(lines):
            name, count = lines[i], int(lines[i + 1])
            rows = [lines[i + 2 + k].split() for k in range(max(count, 1))]
            i += 2 + max(count, 1)
            rows = rows[:count]
            values = np.array([[float(v) for v in row[:4]] for row in rows], np.float32).reshape(-1, 4)
            invalid = np.array([len(row) > 7 and row[7] == "1" for row in rows], bool)
            boxes = np.hstack([values[:, :2], values[:, :2] + values[:, 2:]])
            ignore = invalid | (values[:, 2] <= 0) | (values[:, 3] <= 0)
            out.append(GroundTruth(images / name, boxes, ignore))
    except (IndexError, ValueError) as exc:
        raise InputImageError(f"{annotations}: not in WIDER FACE bbx_gt format near line {i + 1} ({exc}); "
                              "expected: image path, face count, then 'x y w h ...' per face") from None
    return out


def write_wider(items: Iterable[tuple[str, np.ndarray] | tuple[str, np.ndarray, np.ndarray]],
                target: str | Path) -> Path:
    """Write (relative image path, boxes x1,y1,x2,y2[, ignored (N,) bool]) as a WIDER FACE bbx_gt file (ignored
    boxes carry WIDER's ``invalid`` flag, so reading the file back ignores them too)."""
    lines = []
    for name, boxes, *flags in items:
        ignored = flags[0] if flags else np.zeros(len(boxes), bool)
        lines += [name, str(len(boxes))]
        rows = [f"{x1:.1f} {y1:.1f} {x2 - x1:.1f} {y2 - y1:.1f} 0 0 0 {int(bad)} 0 0"
                for (x1, y1, x2, y2), bad in zip(boxes, ignored)]
        lines += rows or ["0 0 0 0 0 0 0 0 0 0"]
    target = Path(target)
    target.write_text("\n".join(lines) + "\n")
    return target


def long_sides(boxes: np.ndarray) -> np.ndarray:
    return np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])


def match(det_boxes: np.ndarray, det_scores: np.ndarray, gt: np.ndarray, ignore: np.ndarray,
          iou_threshold: float = DEFAULT_IOU) -> tuple[np.ndarray, np.ndarray]:
    """(gt_hit (G,) bool, det_state (D,) int: 1 true, 0 false, -1 on an ignored box).

    A free face is matched before an ignored box (as COCO matches before its crowd regions), so an ignored
    neighbour that overlaps a face cannot take that face's detection.
    """
    hit = np.zeros(len(gt), bool)
    state = np.zeros(len(det_boxes), np.int64)
    for d in np.argsort(-det_scores, kind="stable"):
        if not len(gt):
            break
        iou = box_iou(det_boxes[d], gt)
        free = np.where(hit | ignore, -1.0, iou)
        j = int(np.argmax(free))
        if free[j] >= iou_threshold:
            hit[j] = True
            state[d] = 1
        elif ignore.any() and iou[ignore].max() >= iou_threshold:
            state[d] = -1
    return hit, state


def _bucket(sizes: np.ndarray, edges: tuple[float, ...]) -> np.ndarray:
    return np.searchsorted(np.asarray(edges[1:], np.float64), sizes, side="right")


def bucket_names(edges: tuple[float, ...] = SIZE_BUCKETS_PX) -> list[str]:
    names = []
    for i, low in enumerate(edges):
        high = edges[i + 1] if i + 1 < len(edges) else None
        names.append(f"<{high}" if low == 0 else (f"{low}+" if high is None else f"{low}-{high}"))
    return names


def evaluate_detection(detector, items: Iterator[tuple[np.ndarray, GroundTruth]], total: int | None = None,
                       iou_threshold: float = DEFAULT_IOU, edges: tuple[float, ...] = SIZE_BUCKETS_PX,
                       progress: bool = True) -> dict:
    """Recall per ground-truth size bucket, precision per detection size bucket, false boxes and time per frame."""
    from tqdm.auto import tqdm

    n = len(edges)
    gt_count, gt_hit, det_count, det_true = (np.zeros(n, np.int64) for _ in range(4))
    frames, false_boxes, seconds = 0, 0, 0.0
    detector.pass_seconds.clear()
    for image, truth in tqdm(items, total=total, unit="image", desc="eval-detect", disable=not progress):
        start = time.perf_counter()
        found = detector.detect(image)
        seconds += time.perf_counter() - start
        boxes = np.array([f.bbox for f in found], np.float32).reshape(-1, 4)
        scores = np.array([f.score for f in found], np.float32)
        hit, state = match(boxes, scores, truth.boxes, truth.ignore, iou_threshold)
        valid = ~truth.ignore
        np.add.at(gt_count, _bucket(long_sides(truth.boxes[valid]), edges), 1)
        np.add.at(gt_hit, _bucket(long_sides(truth.boxes[valid & hit]), edges), 1)
        counted = state >= 0
        np.add.at(det_count, _bucket(long_sides(boxes[counted]), edges), 1)
        np.add.at(det_true, _bucket(long_sides(boxes[state == 1]), edges), 1)
        false_boxes += int((state == 0).sum())
        frames += 1
    rows = []
    for i, name in enumerate(bucket_names(edges)):
        rows.append({
            "bucket_px": name,
            "faces": int(gt_count[i]),
            "recall": round(float(gt_hit[i] / gt_count[i]), 4) if gt_count[i] else None,
            "detections": int(det_count[i]),
            "precision": round(float(det_true[i] / det_count[i]), 4) if det_count[i] else None,
        })
    frames = max(frames, 1)
    return {
        "rows": rows,
        "overall": {"faces": int(gt_count.sum()), "recall": round(float(gt_hit.sum() / max(gt_count.sum(), 1)), 4),
                    "detections": int(det_count.sum()),
                    "precision": round(float(det_true.sum() / max(det_count.sum(), 1)), 4),
                    "false_boxes_per_image": round(false_boxes / frames, 3)},
        "images": frames,
        "ms_per_image": round(seconds * 1e3 / frames, 2),
        "ms_per_pass": {k: round(v * 1e3 / frames, 2) for k, v in detector.pass_seconds.items()},
        "iou_threshold": iou_threshold,
    }


def format_table(result: dict) -> str:
    lines = [f"{'size px':>8} {'faces':>6} {'recall':>7} {'dets':>6} {'precision':>9}"]
    for row in result["rows"]:
        recall = "-" if row["recall"] is None else f"{row['recall']:.3f}"
        precision = "-" if row["precision"] is None else f"{row['precision']:.3f}"
        lines.append(f"{row['bucket_px']:>8} {row['faces']:>6} {recall:>7} {row['detections']:>6} {precision:>9}")
    o = result["overall"]
    lines.append(f"{'all':>8} {o['faces']:>6} {o['recall']:7.3f} {o['detections']:>6} {o['precision']:9.3f}")
    passes = ", ".join(f"{k} {v:.1f}" for k, v in result["ms_per_pass"].items())
    lines.append(f"{result['images']} images, {o['false_boxes_per_image']} false boxes per image, "
                 f"{result['ms_per_image']:.1f} ms per image (per pass: {passes})")
    return "\n".join(lines)


def plot_buckets(result: dict, out: str | Path, title: str) -> Path:
    """Bars of recall and precision per size bucket (needs matplotlib)."""
    from .._deps import require

    require("matplotlib", extra="plot")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .plots import save_figure

    names = [r["bucket_px"] for r in result["rows"]]
    x = np.arange(len(names))
    figure = Figure(figsize=(6.4, 3.8), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    for offset, key, colour in ((-0.2, "recall", "C0"), (0.2, "precision", "C1")):
        values = [r[key] if r[key] is not None else 0.0 for r in result["rows"]]
        axes.bar(x + offset, values, width=0.4, color=colour, label=key)
    axes.set_xticks(x, [f"{n}\n({r['faces']})" for n, r in zip(names, result["rows"])])
    axes.set_xlabel("face size, long side in px (faces)")
    axes.set_ylim(0, 1.05)
    axes.grid(True, axis="y", alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    axes.set_title(title, fontsize=9)
    return save_figure(figure, out, "detection plot")
