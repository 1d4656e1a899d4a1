"""Report output: the table people read, the JSON the contract fixes, and a plot of latency per resolution."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

from .._deps import require
from .per_resolution import Row

log = logging.getLogger(__name__)

ROW_HEADER = ("res px", "batch", "mode", "p50 ms", "p90 ms", "p99 ms", "faces/s", "baseline p50 ms", "speedup")


def _table(header: Sequence[str], lines: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(header)]
    out = ["  ".join(h.rjust(w) for h, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
    out += ["  ".join(cell.rjust(w) for cell, w in zip(line, widths)) for line in lines]
    return "\n".join(out)


def format_rows(rows: Sequence[Row]) -> str:
    """The per-resolution table: BTNet path vs the upsample-to-112 baseline."""
    lines = [(str(r.resolution), str(r.batch), r.mode, f"{r.p50_ms:.2f}", f"{r.p90_ms:.2f}", f"{r.p99_ms:.2f}",
              f"{r.faces_per_s:.1f}", f"{r.baseline_p50_ms:.2f}", f"{r.speedup:.2f}x") for r in rows]
    return _table(ROW_HEADER, lines)


def format_frames(entries: Sequence[dict]) -> str:
    """Frame entries: stage times per frame and shares; the mixed frame on its own lines."""
    staged = [e for e in entries if e["kind"] != "mixed"]
    out = []
    if staged:
        header = ("source", "frames", "faces", "detect", "align", "branches", "trunk", "gallery", "total ms",
                  "outside models", "outside br+trunk", "fps")
        lines = []
        for e in staged:
            ms = e["ms_per_frame"]
            lines.append((Path(e["source"]).name, str(e["frames"]), f"{e['faces_per_frame']:.1f}",
                          *(f"{ms[s]:.1f}" for s in ("detect", "align", "branches", "trunk", "gallery", "total")),
                          f"{e['share_outside_models']:.1%}", f"{e['share_outside_branches_trunk']:.1%}",
                          f"{e['fps']:.2f}"))
        out.append(_table(header, lines))
        passes = sorted({name for e in staged for name in e.get("detect_ms_per_pass", {})})
        if passes:
            rows = [(Path(e["source"]).name, *(f"{e['detect_ms_per_pass'].get(p, 0.0):.1f}" for p in passes))
                    for e in staged]
            out.append(_table(("detection passes, ms per frame", *passes), rows))
        tracked = [e for e in staged if e.get("track_ms_per_frame") is not None]
        if tracked:
            rows = [(Path(e["source"]).name, f"{e['track_ms_per_frame']:.3f}",
                     f"{e['track_ms_per_frame'] / max(e['ms_per_frame']['total'], 1e-9):.2%}") for e in tracked]
            out.append(_table(("video", "tracking ms per frame", "of recognition"), rows))
        compared = sorted({name for e in staged for name in e.get("compared", {})})
        if compared:
            rows = []
            for e in staged:
                cells = []
                for name in compared:
                    c = e.get("compared", {}).get(name)
                    if c is None:
                        cells += ["-", "-"]
                        continue
                    cells += [f"{c['ms_per_frame']:.1f} ({c['faces_per_frame']:.1f} faces)",
                              "-" if c["ratio"] is None else f"{c['ratio']:.2f}x"]
                rows.append((Path(e["source"]).name, f"{e['ms_per_frame']['total']:.1f} ({e['faces_per_frame']:.1f} "
                             "faces)", *cells))
            head = ("source", "default ms")
            for name in compared:
                head += (f"{name} ms", f"default / {name}")
            out.append(_table(head, rows))
        streams = [e for e in staged if e.get("stream", {}).get("enlarged_pass")]
        if streams:
            from ..pipeline.stream import wait_text

            for e in streams:
                out.append(f"{Path(e['source']).name}: {wait_text({**e['stream'], 'fps': e['stream']['fps_source']})}")
    for e in entries:
        if e["kind"] == "mixed":
            faces = ", ".join(f"{n} x {r} px" for r, n in e["faces_by_resolution"].items())
            out.append(f"mixed frame ({faces}): shared graphs {e['shared_p50_ms']:.2f} ms "
                       f"({e['graph_runs']['shared']} runs) vs one fused call per face "
                       f"{e['fused_per_face_p50_ms']:.2f} ms ({e['graph_runs']['fused_per_face']} runs): "
                       f"{e['speedup']:.2f}x")
    return "\n".join(out)


def format_env(env: dict) -> str:
    cpu, pkg = env["cpu"], env["package"]
    gpus = ", ".join(g.get("name", "?") for g in env["gpu"]) or "none"
    return (f"{pkg['architecture']} ({pkg['weights']} weights) on {env['backend']} {env['backend_version']} "
            f"{env['device']}, {env['threads']} threads | CPU {cpu['model']}, {cpu['physical_cores']} cores | "
            f"GPU {gpus} | load {env['load_average_1m']}")


def write_json(document: dict, path: Path) -> None:
    from ..safe_io import atomic_write_text

    atomic_write_text(path, json.dumps(document, indent=2) + "\n", "benchmark JSON")
    log.info("wrote %s", path)


def plot_rows(rows: Sequence[Row], path: Path, title: str = "") -> None:
    """Bars of p50 latency per resolution, baseline next to each BTNet mode, one panel per batch size."""
    require("matplotlib", extra="plot")
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

    batches = sorted({r.batch for r in rows})
    modes = sorted({r.mode for r in rows}, reverse=True)  # shared before fused
    fig = Figure(figsize=(5.0 * len(batches), 4.0), layout="constrained")
    axes = fig.subplots(1, len(batches), squeeze=False)[0]
    width = 0.8 / (len(modes) + 1)
    for ax, batch in zip(axes, batches):
        mine = [r for r in rows if r.batch == batch]
        resolutions = sorted({r.resolution for r in mine})
        xs = range(len(resolutions))
        base = {r.resolution: r.baseline_p50_ms for r in mine}
        ax.bar([x - 0.4 + width / 2 for x in xs], [base[r] for r in resolutions], width,
               label="baseline (upsample to 112)", color="0.6")
        for k, mode in enumerate(modes):
            by_res = {r.resolution: r for r in mine if r.mode == mode}
            bars = ax.bar([x - 0.4 + width * (k + 1.5) for x in xs],
                          [by_res[r].p50_ms if r in by_res else 0.0 for r in resolutions], width,
                          label=f"BTNet {mode}")
            labels = [f"{by_res[r].speedup:.2f}x" if r in by_res else "" for r in resolutions]
            ax.bar_label(bars, labels=labels, fontsize=7, padding=1)
        ax.set_xticks(list(xs), [f"{r} px" for r in resolutions])
        ax.set_ylabel("p50 latency per batch (ms)")
        ax.set_title(f"batch {batch}")
        ax.set_ylim(0, ax.get_ylim()[1] * 1.08)  # room for the speedup labels
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    from ..safe_io import atomic_path

    with atomic_path(path, "plot") as temp:
        fig.savefig(temp, dpi=120)
    log.info("wrote %s", path)
