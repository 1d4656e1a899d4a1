"""Whether each branch of a package was trained, and from what: recorded at export, read by the runtime.

A branch only initialised from the trunk's weights (what ``export --trunk`` writes
without ``--branch`` files) is worse than upsampling the face for the trunk, so the
Recognizer routes faces around it by default. The record lives in the manifest under
``branch_training``; manifests written before it existed are read from their import
report where that tells, and otherwise marked unknown, which the runtime treats as
untrained. Standard library only: the runtime reads it without torch or onnx.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

RECORD_KEY = "branch_training"
ROUTE_POLICIES = ("trained", "all", "none")  # Recognizer(branches=...): which branches faces may use
SOURCES = ("checkpoint", "train-branches", "trunk-init", "random", "unknown")


@dataclass(frozen=True)
class BranchStatus:
    """One branch: ``trained`` True/False, or None when the manifest does not say; ``source`` one of SOURCES."""

    resolution: int
    trained: bool | None
    source: str
    detail: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """Plain words for ``info``."""
        if self.source == "checkpoint":
            return f"trained (imported from {self.detail.get('file')}, sha256 {str(self.detail.get('sha256'))[:12]}…)"
        if self.source == "train-branches":
            return (f"trained by train-branches on {self.detail.get('faces')} faces, {self.detail.get('steps')} "
                    f"steps (from package {self.detail.get('source_package')})")
        if self.source == "trunk-init":
            return ("NOT trained: initialised from the trunk's weights only; faces of this size are upsampled for "
                    "the trunk unless branches='all' (train it: btnet-edge train-branches)")
        if self.source == "random":
            return "random weights (seeded): for latency and plumbing only"
        return ("unknown: the manifest predates per-branch records; treated as untrained (faces are upsampled for "
                "the trunk unless branches='all')")

    def to_json(self) -> dict[str, Any]:
        return {"resolution": self.resolution, "trained": self.trained, "source": self.source, **self.detail}


def export_records(resolutions: Sequence[int], weights: str, import_report: Mapping[str, Any] | None,
                   previous: Sequence[BranchStatus] = ()) -> list[dict[str, Any]]:
    """The ``branch_training`` list an export writes.

    ``import_report``: the checkpoint import (``branches`` per resolution) and, after
    train-branches, its ``training`` record; ``previous``: the source package's statuses,
    kept for branches a train-branches run did not train.
    """
    report = dict(import_report or {})
    training = report.get("training") or {}
    trained_now = {int(r) for r in training.get("resolutions", [])}
    imported = report.get("branches") or {}
    before = {s.resolution: s for s in previous}
    records = []
    for r in resolutions:
        if r in trained_now:
            detail = {"faces": training.get("faces"), "steps": training.get("steps"),
                      "init": training.get("init"), "source_package": training.get("source_package")}
            status = BranchStatus(r, True, "train-branches", detail)
        elif r in before and before[r].source != "unknown":
            status = before[r]
        elif str(r) in imported:
            entry = imported[str(r)]
            status = BranchStatus(r, True, "checkpoint", {"file": entry.get("file"), "sha256": entry.get("sha256")})
        elif weights == "random":
            status = BranchStatus(r, False, "random")
        else:
            status = BranchStatus(r, False, "trunk-init")
        records.append(status.to_json())
    return records


def branch_statuses(manifest) -> list[BranchStatus]:
    """Per branch, largest first: from the manifest's record, else inferred from its import report, else unknown."""
    resolutions = [b.resolution for b in manifest.branches]
    recorded = manifest.extra.get(RECORD_KEY)
    if isinstance(recorded, list):
        by_r = {int(item["resolution"]): item for item in recorded
                if isinstance(item, Mapping) and "resolution" in item}
        out = []
        for r in resolutions:
            item = dict(by_r.get(r, {}))
            trained = item.pop("trained", None)
            source = item.pop("source", "unknown")
            item.pop("resolution", None)
            out.append(BranchStatus(r, trained if isinstance(trained, bool) else None,
                                    source if source in SOURCES else "unknown", item))
        return out
    # An older manifest: only what its import report states for sure.
    report = manifest.extra.get("import_report") or {}
    inferred = {int(k) for k in (report.get("branches") or {})}
    trained_by_run = {int(r) for r in (report.get("training") or {}).get("resolutions", [])}
    out = []
    for r in resolutions:
        if manifest.weights == "random":
            out.append(BranchStatus(r, False, "random"))
        elif r in trained_by_run or r in inferred:
            records = export_records([r], manifest.weights, report)
            item = dict(records[0])
            out.append(BranchStatus(r, True, item.pop("source"), {k: v for k, v in item.items()
                                                                    if k not in ("resolution", "trained")}))
        else:
            out.append(BranchStatus(r, None, "unknown"))
    return out


def routes(statuses: Sequence[BranchStatus], policy: str) -> dict[int, str]:
    """Resolution -> "branch" or "upsample" under ``policy``: trained (default) uses only trained branches.

    Random-weight packages keep their branches: trunk and branches are equally meaningless
    there, and those packages exist to time and test the branch path.
    """
    if policy not in ROUTE_POLICIES:
        from ..errors import ConfigError

        raise ConfigError(f"branches={policy!r}: use one of {ROUTE_POLICIES} (trained: only trained branches, "
                          "all: every branch, none: always upsample for the trunk)")
    if policy == "all":
        return {s.resolution: "branch" for s in statuses}
    if policy == "none":
        return {s.resolution: "upsample" for s in statuses}
    return {s.resolution: "branch" if s.trained or s.source == "random" else "upsample" for s in statuses}
