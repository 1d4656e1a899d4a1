"""ROC plots of eval-pairs (needs the ``plot`` extra: matplotlib, imported when a plot is drawn)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .._deps import require

log = logging.getLogger(__name__)

TRUNK_SIZE = 112


def plot_roc(curves: Sequence[dict], out: str | Path, title: str = "ROC") -> Path:
    """One panel per resolution r: TAR against FAR (log axis) for 112&r and r&r, branch vs upsample.

    ``curves``: dicts with res_a, res_b, method, far, tar (eval-pairs' output). The 112&112
    trunk is drawn in grey in every panel as the ceiling. Written without a display.
    """
    require("matplotlib", extra="plot")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    low = sorted({min(c["res_a"], c["res_b"]) for c in curves if min(c["res_a"], c["res_b"]) < TRUNK_SIZE},
                 reverse=True) or [TRUNK_SIZE]
    columns = min(3, len(low))
    rows = math.ceil(len(low) / columns)
    figure = Figure(figsize=(4.2 * columns, 3.6 * rows), dpi=110)
    FigureCanvasAgg(figure)  # an off-screen canvas: no global backend switch, no display needed
    reference = next((c for c in curves if c["res_a"] == c["res_b"] == TRUNK_SIZE), None)
    for index, r in enumerate(low):
        axes = figure.add_subplot(rows, columns, index + 1)
        lowest = 1.0
        if reference is not None:
            lowest = min(lowest, _draw(axes, reference, "112&112 trunk", "0.6", "-"))
        for curve in curves:
            if min(curve["res_a"], curve["res_b"]) != r or r == TRUNK_SIZE:
                continue
            colour = "C0" if curve["res_a"] == TRUNK_SIZE else "C3"
            style = "--" if curve["method"] == "upsample" else "-"
            label = f"{curve['res_a']}&{curve['res_b']} {curve['method']}"
            lowest = min(lowest, _draw(axes, curve, label, colour, style))
        axes.set_xscale("log")
        axes.set_xlim(lowest / 2, 1.0)
        axes.set_ylim(0.0, 1.01)
        axes.set_title(f"{r} px", fontsize=10)
        axes.set_xlabel("false accept rate", fontsize=8)
        axes.set_ylabel("true accept rate", fontsize=8)
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize=7, loc="lower right")
    figure.suptitle(title, fontsize=11)
    return save_figure(figure, out, "ROC plot")


def save_figure(figure, out: str | Path, what: str) -> Path:
    """Write ``figure`` to ``out`` (folders created) and log it."""
    out = Path(out)
    from ..safe_io import atomic_path

    with atomic_path(out, what) as temp:
        figure.savefig(temp, bbox_inches="tight")
    log.info("%s written to %s", what, out)
    return out


def _draw(axes, curve: dict, label: str, colour: str, style: str) -> float:
    """Plot one curve; returns its lowest positive FAR (a log axis cannot show 0)."""
    far, tar = np.asarray(curve["far"]), np.asarray(curve["tar"])
    keep = far > 0
    axes.plot(far[keep], tar[keep], color=colour, linestyle=style, label=label)
    return float(far[keep].min()) if keep.any() else 1.0


def plot_track_buckets(result: dict, out: str | Path) -> Path:
    """eval-track's share of right names per face-size bucket: each frame's own match against the track's."""
    require("matplotlib", extra="plot")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.0, 3.8), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    buckets = list(dict.fromkeys(row["size_px"] for row in result["buckets"]))
    x = np.arange(len(buckets))
    for offset, (mode, label) in zip((-0.2, 0.2), (("per_frame", "per frame"), ("track", "track aggregate"))):
        shares = {row["size_px"]: row["right_share"] or 0.0 for row in result["buckets"] if row["mode"] == mode}
        axes.bar(x + offset, [shares.get(b, 0.0) for b in buckets], width=0.4, label=label)
    axes.set_xticks(x, [f"{b} px" for b in buckets])
    axes.set_ylim(0, 1)
    axes.set_ylabel("share of faces with the right name")
    axes.set_title(f"synthetic walking clip, {result['frames']} frames")
    axes.legend()
    return save_figure(figure, out, "track plot")


def plot_training(history: Sequence[dict], timing: Sequence[dict], out: str | Path,
                  title: str = "train-branches") -> Path:
    """train-branches' curves: each branch's feature and embedding MSE per step, and faces/s over the run."""
    require("matplotlib", extra="plot")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10.0, 3.8), dpi=110)
    FigureCanvasAgg(figure)
    losses, speed = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    steps = np.arange(1, len(history) + 1)
    keys = sorted({k for row in history for k in row if not k.startswith("cosine")},
                  key=lambda k: (-int(k.rsplit("_", 1)[1]), k))
    for index, key in enumerate(keys):
        kind, r = key.rsplit("_", 1)
        losses.plot(steps, [row.get(key, np.nan) for row in history], color=f"C{index // 2}",
                    linestyle="-" if kind == "feature" else "--", label=f"{r} px {kind}")
    losses.set_yscale("log")
    losses.set_xlabel("step")
    losses.set_ylabel("MSE")
    losses.grid(True, alpha=0.3)
    losses.legend(fontsize=7)
    if timing:
        speed.plot([t["step"] for t in timing], [t["faces_per_s"] for t in timing], marker="o")
    speed.set_xlabel("step")
    speed.set_ylabel("faces / s (all processes)")
    speed.grid(True, alpha=0.3)
    figure.suptitle(title, fontsize=11)
    return save_figure(figure, out, "training plot")
