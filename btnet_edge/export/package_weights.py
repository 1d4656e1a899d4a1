"""One copy of the weights per package: the PyTorch BTNet is rebuilt from the package's own ONNX files.

``trunk.onnx`` holds the whole trunk and each ``branch_<r>.onnx`` its branch's own
layers. The exporter folds a BatchNorm that follows a convolution into it, which is
exact for inference but loses the BN's own parameters, which training needs (train-
mode BN). Those, and only those, go to ``batchnorm.npz`` (no pickle): a few hundred
KB next to graphs of 8 to 270 MB. Older packages with ``weights.npz`` still load.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Callable

import numpy as np

from .._deps import require
from ..errors import CheckpointError, PackageError
from .onnx_graph import OnnxGraph
from .onnx_match import Matched, layer_template, match_layers

log = logging.getLogger(__name__)

FOLDED_BATCHNORM = "batchnorm.npz"
LEGACY_WEIGHTS = "weights.npz"
_BN_PARAMS = ("weight", "bias", "running_mean", "running_var")


def read_network(path: Path, module, family: str, arch: str, image_input: str, stop_unit: str | None = None,
                 data: bytes | None = None) -> Matched:
    """State dict of ``module`` (a trunk or a branch, up to ``stop_unit``) from the ONNX file at ``path``
    (or from ``data``, its bytes already read and verified)."""
    graph = OnnxGraph(path, data)
    _, layers = graph.walk(image_input)
    return match_layers(graph, layers, layer_template(module, family, stop_unit), arch)


def _graphs(net, trunk, branches):
    """(prefix, module, file, image input, stop unit) for the trunk and each branch."""
    yield "trunk", net.trunk, trunk.file, trunk.inputs[0].name, None
    for info in branches:
        yield f"branch_{info.resolution}", net.branch(info.resolution), info.file, info.input.name, info.implant_after


def save_folded_batchnorm(net, folder: Path, trunk, branches) -> dict[str, int]:
    """Write the parameters of every BN folded in ``folder``'s graphs; return counts per graph."""
    arrays, counts = {}, {}
    for prefix, module, file, image, stop in _graphs(net, trunk, branches):
        matched = read_network(folder / file, module, net.config.family, net.arch, image, stop)
        state = module.state_dict()
        for bn_key, _ in matched.folded:
            arrays.update({f"{prefix}.{bn_key}.{p}": state[f"{bn_key}.{p}"].detach().cpu().numpy() for p in _BN_PARAMS})
        counts[file] = len(matched.folded)
    with open(folder / FOLDED_BATCHNORM, "wb") as handle:
        np.savez(handle, **arrays)
    return counts


def _unfold(matched: Matched, module, saved: dict[str, np.ndarray], prefix: str) -> None:
    """Put the saved BN back and divide its scale out of the layer it was folded into (exact up to rounding)."""
    state = matched.state
    for bn_key, weighted_key in matched.folded:
        names = [f"{prefix}.{bn_key}.{p}" for p in _BN_PARAMS]
        if not all(n in saved for n in names):
            continue  # a package built from a folded ONNX: the identity BN is all there is
        gamma, beta, mean, var = (saved[n].astype(np.float64) for n in names)
        eps = getattr(module.get_submodule(bn_key), "eps", 1e-5)
        scale = gamma / np.sqrt(var + eps)
        safe = np.where(scale == 0, 1.0, scale)  # a zero scale folded the weights to 0: nothing to divide
        weight = state[weighted_key + ".weight"].astype(np.float64)
        state[weighted_key + ".weight"] = (weight / safe.reshape(-1, *([1] * (weight.ndim - 1)))).astype(np.float32)
        if weighted_key + ".bias" in state:
            folded_bias = state[weighted_key + ".bias"].astype(np.float64) + state[f"{bn_key}.bias"]
            state[weighted_key + ".bias"] = ((folded_bias - beta) / safe + mean).astype(np.float32)
        for param, value in zip(_BN_PARAMS, (gamma, beta, mean, var)):
            state[f"{bn_key}.{param}"] = value.astype(np.float32)


def _plain_npz(source: Path | bytes, what: str) -> dict[str, np.ndarray]:
    """Arrays of a numeric npz (no pickle); anything else is a PackageError that says to re-export."""
    try:
        with np.load(io.BytesIO(source) if isinstance(source, bytes) else source, allow_pickle=False) as data:
            return {k: np.array(data[k]) for k in data.files}
    except (ValueError, OSError, TypeError) as exc:  # object arrays (pickle), a damaged zip, non-numeric data
        raise PackageError(f"{what} is not a plain numeric npz ({exc}); export the package again") from None


def btnet_from_graphs(arch: str, folder: Path, trunk, branches, batchnorm: Path | bytes | None,
                      read: Callable[[str], bytes] | None = None):
    """A BTNet whose weights are read from the graphs in ``folder`` and the folded BNs saved in ``batchnorm``.

    ``read(name)``: the bytes of a package file, verified against the manifest (ModelPackage.read_verified),
    so the weights come from exactly the bytes whose hash was checked.
    """
    torch = require("torch", extra="export")
    from ..models.btnet import BTNet

    net = BTNet(arch, [b.resolution for b in branches])
    saved = {} if batchnorm is None else _plain_npz(batchnorm, f"{folder}: {FOLDED_BATCHNORM}")
    for prefix, module, file, image, stop in _graphs(net, trunk, branches):
        matched = read_network(folder / file, module, net.config.family, net.arch, image, stop,
                               None if read is None else read(file))
        if prefix == "trunk":
            expected = {b.output.name: b.implant_after for b in branches}
            if matched.implants != expected:
                raise CheckpointError(f"{file} implants {matched.implants}, the manifest says {expected}")
        _unfold(matched, module, saved, prefix)
        own = module.state_dict()
        state = {k: torch.from_numpy(np.array(v)).to(own[k].dtype) for k, v in matched.state.items()}
        if prefix == "trunk":
            module.load_state_dict(state, strict=True)
            net.init_branches_from_trunk()
        else:
            merged = dict(own)
            merged.update(state)
            module.load_state_dict(merged, strict=True)
    return net.eval()


def legacy_btnet(package):
    """Older packages kept a second copy of every weight in ``weights.npz``."""
    torch = require("torch", extra="export")
    from ..models.btnet import BTNet

    manifest = package.manifest
    net = BTNet(manifest.architecture, [b.resolution for b in manifest.branches])
    arrays = {k: torch.from_numpy(v) for k, v in
              _plain_npz(package.read_verified(LEGACY_WEIGHTS), f"package {package.folder}: {LEGACY_WEIGHTS}").items()}
    net.trunk.load_state_dict({k[6:]: v for k, v in arrays.items() if k.startswith("trunk.")}, strict=True)
    net.init_branches_from_trunk()
    for r in net.resolutions:
        prefix = f"branch_{r}."
        own = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
        state = net.branch(r).state_dict()
        state.update(own)
        net.branch(r).load_state_dict(state, strict=True)
    return net.eval()


def weight_difference(a, b) -> float:
    """Largest absolute difference between two BTNets' parameters and BN statistics."""
    own, other = a.state_dict(), b.state_dict()
    return max(float((own[k].double() - other[k].double()).abs().max()) for k in own
               if own[k].numel() and not k.endswith("num_batches_tracked"))


def btnet_from_package(package):
    """Rebuild the PyTorch BTNet of a verified :class:`~btnet_edge.package.loader.ModelPackage`."""
    manifest = package.manifest
    if LEGACY_WEIGHTS in manifest.files:
        return legacy_btnet(package)
    try:
        batchnorm = package.read_verified(FOLDED_BATCHNORM) if FOLDED_BATCHNORM in manifest.files else None
        return btnet_from_graphs(manifest.architecture, package.folder, manifest.trunk, manifest.branches, batchnorm,
                                 read=package.read_verified)
    except CheckpointError as exc:  # a graph we cannot map back: say which package and why
        raise PackageError(f"cannot rebuild the PyTorch model of {package.folder} from its ONNX files ({exc}); "
                           "re-export the package with this btnet-edge") from None
