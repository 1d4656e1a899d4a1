"""Checkpoint import: a trunk file plus optional per-resolution branch files (authors' format).

Files are read with ``torch.load(weights_only=True)``: no code in a checkpoint runs.
The authors save each branch as a full network whose "frozen" trunk layers had
trainable BN, so their trunk copies can drift from the 112 trunk: we measure the
drift and always use the 112 trunk (one shared trunk, stored once).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._deps import require
from ..errors import CheckpointError
from ..package.loader import sha256_of as file_sha256

log = logging.getLogger(__name__)

_CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "backbone", "net")
_PREFIXES = ("module.", "backbone.", "model.")
DRIFT_TOLERANCE = 1e-6


def load_state_dict_file(path: str | Path) -> dict[str, Any]:
    """Tensors of a checkpoint file, unwrapped from common containers and ``module.`` prefixes."""
    torch = require("torch", extra="export")
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, ...
        text = str(exc)
        if "weights_only" in text or "Unsupported global" in text:
            raise CheckpointError(
                f"{path} holds pickled Python objects (a whole model?), which we do not unpickle for safety. "
                "Re-save its weights with torch.save(model.state_dict(), 'weights.pth') and pass that file."
            ) from None
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (truncated or another format): "
                              f"{text.splitlines()[0] if text else type(exc).__name__}") from None
    for key in _CONTAINER_KEYS:
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors (found {type(obj).__name__})")
    state = dict(obj)
    for prefix in _PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _depth_hint(keys: list[str]) -> str:
    if any(k.startswith("dw_conv.") for k in keys) and any(k.startswith("gdconv.") for k in keys):
        return " The file looks like MobileFaceNet (dw_conv, gdconv): try --arch mobilefacenet."
    depths: dict[int, int] = {}
    for key in keys:
        match = re.match(r"layer(\d)\.(\d+)\.", key)
        if match:
            stage, block = int(match.group(1)), int(match.group(2))
            depths[stage] = max(depths.get(stage, 0), block + 1)
    if not depths:
        return ""
    known = {(2, 2, 2, 2): "r18", (3, 4, 6, 3): "r34", (3, 4, 14, 3): "r50", (3, 13, 30, 3): "r100"}
    layout = tuple(depths.get(i, 0) for i in range(1, 5))
    name = known.get(layout)
    return f" The file's blocks per stage are {list(layout)}" + (f": try --arch {name}." if name else ".")


def check_and_load(module: Any, state: Mapping[str, Any], source: str, required: list[str] | None = None) -> None:
    """Load ``state`` into ``module``; every key in ``required`` (default: all) must be present and fit."""
    own = module.state_dict()
    required = list(own) if required is None else required
    missing = [k for k in required if k not in state]
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}" for k in required
             if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    unexpected = [k for k in state if k not in own]
    if missing or wrong or (required is not None and len(required) == len(own) and unexpected):
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[:3]})")
        if wrong:
            parts.append(f"{len(wrong)} shape mismatches (e.g. {wrong[:2]})")
        if unexpected and len(required) == len(own):
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})")
        raise CheckpointError(f"{source} does not fit this architecture: {'; '.join(parts)}.{_depth_hint(list(state))}")
    merged = dict(own)
    merged.update({k: state[k] for k in required})
    module.load_state_dict(merged, strict=True)


@dataclass
class BranchDrift:
    """How far a branch file's copy of the trunk layers differs from the 112 trunk."""

    resolution: int
    compared: int = 0
    differing: int = 0
    max_abs_diff: float = 0.0
    worst_key: str = ""
    differing_kinds: dict[str, int] = field(default_factory=dict)
    embedding_cosine_min: float | None = None
    embedding_cosine_mean: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


def measure_drift(net: Any, resolution: int, branch_state: Mapping[str, Any], seed: int = 0) -> BranchDrift:
    """Compare the trunk layers after the implant point in ``branch_state`` with ``net.trunk``.

    Also runs the branch through both tails on random faces and reports the cosine
    between the two embeddings: what using the shared trunk costs this branch.
    """
    torch = require("torch", extra="export")
    net.eval()
    start = net.implant_index(resolution) + 1
    tail_keys = net.trunk.unit_keys(start, None)
    trunk_state = net.trunk.state_dict()
    drift = BranchDrift(resolution)
    for key in tail_keys:
        if key not in branch_state or key.endswith("num_batches_tracked"):
            continue
        a, b = branch_state[key].double(), trunk_state[key].double()
        if a.shape != b.shape:
            continue
        drift.compared += 1
        diff = float((a - b).abs().max()) if a.numel() else 0.0
        if diff > DRIFT_TOLERANCE:
            drift.differing += 1
            kind = key.rsplit(".", 1)[-1]
            drift.differing_kinds[kind] = drift.differing_kinds.get(kind, 0) + 1
        if diff > drift.max_abs_diff:
            drift.max_abs_diff, drift.worst_key = diff, key
    if drift.compared and drift.differing:
        from ..models.registry import create_trunk

        shadow = create_trunk(net.arch, 112)  # a second trunk holding the branch file's copy of the tail
        shadow_state = dict(trunk_state)
        shadow_state.update({k: branch_state[k] for k in tail_keys if k in branch_state})
        shadow.load_state_dict(shadow_state, strict=True)
        shadow.eval()
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            x = torch.randn(16, 3, resolution, resolution, generator=generator)
            feature = net.run_branch(resolution, x)
            shared = net.trunk.run(feature, start)
            own = shadow.run(feature, start)
            cosine = torch.nn.functional.cosine_similarity(shared, own, dim=1)
        drift.embedding_cosine_min = float(cosine.min())
        drift.embedding_cosine_mean = float(cosine.mean())
    return drift


def import_checkpoints(net: Any, trunk: str | Path | None, branches: Mapping[int, str | Path]) -> dict[str, Any]:
    """Load the trunk and branch files into ``net``; return the import report for the manifest."""
    report: dict[str, Any] = {"trunk": None, "branches": {}}
    net.eval()  # the drift measurement runs the network: train-mode BN would rewrite its statistics
    if trunk is not None:
        state = load_state_dict_file(trunk)
        check_and_load(net.trunk, state, str(trunk))
        net.init_branches_from_trunk()
        report["trunk"] = {"file": Path(trunk).name, "sha256": file_sha256(trunk)}
    for resolution, path in sorted(branches.items(), reverse=True):
        if resolution not in net.resolutions:
            raise CheckpointError(f"--branch {resolution}={path}: {resolution} px is not among the package's "
                                  f"resolutions {net.resolutions}; add it to --resolutions")
        state = load_state_dict_file(path)
        check_and_load(net.branch(resolution), state, str(path), required=net.branch_keys(resolution))
        drift = measure_drift(net, resolution, state)
        entry = {"file": Path(path).name, "sha256": file_sha256(path), "drift": drift.as_dict()}
        if drift.compared == 0:
            entry["note"] = "the file holds only the branch's own layers; no trunk copy to compare"
        elif drift.differing:
            log.warning("branch %d px: %d of %d trunk tensors in %s differ from the 112 trunk (max |diff| %.3g at %s); "
                        "the package uses the 112 trunk", resolution, drift.differing, drift.compared,
                        Path(path).name, drift.max_abs_diff, drift.worst_key)
        report["branches"][str(resolution)] = entry
    report["trunk_copy_used"] = ("the 112 px trunk for every resolution: branch files contribute only their own "
                                 "layers (stem .. implant block); their copies of later trunk layers are compared, "
                                 "not used")
    return report
