"""The package's PyTorch weights as ``weights.npz`` (no pickle), for the PyTorch backend and training.

Keys: ``trunk.<state-dict key>`` for the whole trunk and ``branch_<r>.<key>`` for each
branch's own layers. Read with ``allow_pickle=False``.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .._deps import require
from ..errors import PackageError

REFERENCE_WEIGHTS = "weights.npz"


def save_reference_weights(net, path: str | Path) -> None:
    arrays = {f"trunk.{k}": v.detach().cpu().numpy() for k, v in net.trunk.state_dict().items()}
    for r in net.resolutions:
        state = net.branch(r).state_dict()
        arrays.update({f"branch_{r}.{k}": state[k].detach().cpu().numpy() for k in net.branch_keys(r)})
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def btnet_from_package(package):
    """Rebuild the PyTorch BTNet of a verified :class:`~btnet_edge.package.loader.ModelPackage`."""
    torch = require("torch", extra="export")
    from ..models.btnet import BTNet

    manifest = package.manifest
    if REFERENCE_WEIGHTS not in manifest.files:
        raise PackageError(f"package {package.folder} has no {REFERENCE_WEIGHTS} (exported by an older btnet-edge); "
                           "re-export it to use the PyTorch backend or training")
    net = BTNet(manifest.architecture, [b.resolution for b in manifest.branches])
    try:
        with np.load(io.BytesIO(package.read_verified(REFERENCE_WEIGHTS)), allow_pickle=False) as data:
            arrays = {k: torch.from_numpy(np.array(data[k])) for k in data.files}
    except (ValueError, OSError, TypeError) as exc:  # object arrays (pickle), a damaged zip, non-numeric data
        raise PackageError(f"package {package.folder}: {REFERENCE_WEIGHTS} is not a plain numeric npz ({exc}); "
                           "export the package again") from None
    net.trunk.load_state_dict({k[6:]: v for k, v in arrays.items() if k.startswith("trunk.")}, strict=True)
    net.init_branches_from_trunk()
    for r in net.resolutions:
        prefix = f"branch_{r}."
        own = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
        state = net.branch(r).state_dict()
        state.update(own)
        net.branch(r).load_state_dict(state, strict=True)
    return net.eval()
