"""Resumable training state: state dicts and plain values in a pickle-free file (state_file.py).

A checkpoint holds the trained part of each branch, the optimizer, the AMP scaler, the
sampler's random state and the loss history, so ``--resume`` continues the step count
exactly; it refuses a checkpoint made for other branches or another trunk.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CheckpointError
from .state_file import load_state, save_state

if TYPE_CHECKING:  # no import cycle at run time
    from .distill import BranchDistiller

CHECKPOINT_FORMAT = "btnet-edge-branch-training"
CHECKPOINT_NAME = "last.npz"


def save_checkpoint(path: Path, distiller: BranchDistiller, sampler: dict, step: int, total: int,
                    history: list, meta: dict) -> None:
    """State dicts and plain values only, no pickle; written atomically."""
    torch = distiller.torch
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": CHECKPOINT_FORMAT, "step": step, "total_steps": total, "meta": meta,
               "branches": distiller.branch_states(), "optimizer": distiller.optimizer.state_dict(),
               "scaler": distiller.scaler.state_dict(), "sampler": sampler,
               "torch_rng": torch.get_rng_state(), "history": history}
    save_state(path, payload, torch)


def load_checkpoint(path: Path, distiller: BranchDistiller, sampler: dict,
                    meta: dict) -> tuple[int, list, dict]:
    """Restore a run; refuses a checkpoint of other branches, another trunk, or other batches.

    ``sampler``: this run's seed, global batch, training faces and total steps; the batches are a
    function of these and the step, so they must match (the number of processes may differ).
    Returns (step, history, meta).
    """
    torch = distiller.torch
    payload = load_state(path, torch)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a train-branches checkpoint")
    for key in ("resolutions", "trunk_sha256"):
        if payload["meta"].get(key) != meta.get(key):
            raise CheckpointError(f"checkpoint {path} was made for {key} {payload['meta'].get(key)}, this run has "
                                  f"{meta.get(key)}; use another --checkpoints folder or drop --resume")
    saved = payload.get("sampler") or {}
    for key, value in sampler.items():
        if saved.get(key) != value:
            raise CheckpointError(f"checkpoint {path} was made with {key} {saved.get(key)}, this run has {value} "
                                  "(the global batch is processes x --batch-size); resume with the same data, seed, "
                                  "global batch and --steps/--epochs, or drop --resume")
    distiller.load_branch_states(payload["branches"])
    distiller.optimizer.load_state_dict(payload["optimizer"])
    distiller.scaler.load_state_dict(payload["scaler"])
    torch.set_rng_state(payload["torch_rng"])
    return int(payload["step"]), list(payload["history"]), dict(payload["meta"])
