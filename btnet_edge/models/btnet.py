"""BTNet: one trunk at 112 px plus a branch per resolution, implanted into the trunk.

The branch of resolution r is the architecture built for r px input (stride 1 where
the trunk would shrink the face below r), cut after its implant block; the trunk
resumes at the next block. Branches start from the trunk's own weights.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import nn

from ..errors import ConfigError
from .registry import arch_config, create_trunk, resolve_name
from .units import UnitNetwork

log = logging.getLogger(__name__)

TRUNK_RESOLUTION = 112


class BTNet(nn.Module):
    """Trunk plus branches; ``embed(x, r)`` runs the r px path end to end (PyTorch reference)."""

    def __init__(self, arch: str, resolutions: Sequence[int] = (28, 14, 7)) -> None:
        super().__init__()
        self.arch = resolve_name(arch)
        self.config = arch_config(self.arch)
        self.trunk: UnitNetwork = create_trunk(self.arch, TRUNK_RESOLUTION)
        available = self.trunk.implant_resolutions()
        wanted = sorted({int(r) for r in resolutions}, reverse=True)
        bad = [r for r in wanted if r not in available]
        if bad or not wanted:
            raise ConfigError(f"resolutions {bad or list(resolutions)} are not implant points of {self.arch}; "
                              f"choose from {available}")
        self.resolutions: list[int] = wanted  # largest first: the order the trunk meets the implants
        self.branches = nn.ModuleDict({str(r): create_trunk(self.arch, r) for r in wanted})
        self.init_branches_from_trunk()

    def implant_index(self, resolution: int) -> int:
        return self.trunk.implant_index(resolution)

    def branch(self, resolution: int) -> UnitNetwork:
        return self.branches[str(resolution)]

    def branch_keys(self, resolution: int) -> list[str]:
        """State-dict keys of the branch's own part (stem .. implant block)."""
        return self.branch(resolution).unit_keys(0, self.implant_index(resolution) + 1)

    def init_branches_from_trunk(self, resolutions: Sequence[int] | None = None) -> None:
        """Copy the trunk's weights into each branch (the authors' initialization).

        A branch built with stride 1 may lack a shortcut conv that the trunk has
        (layer1.0.downsample when r <= 56): those trunk tensors are simply not used.
        """
        trunk_state = self.trunk.state_dict()
        for r in resolutions or self.resolutions:
            branch = self.branch(r)
            own = branch.state_dict()
            shared = {k: v for k, v in trunk_state.items() if k in own and own[k].shape == v.shape}
            missing = sorted(set(own) - set(shared))
            if missing:
                raise ConfigError(f"branch {r}: trunk lacks {missing[:3]}")
            branch.load_state_dict(shared, strict=True)

    def run_branch(self, resolution: int, x: torch.Tensor) -> torch.Tensor:
        """Face at r px -> the feature map implanted into the trunk."""
        return self.branch(resolution).run(x, 0, self.implant_index(resolution) + 1)

    def run_trunk_from(self, resolution: int, x: torch.Tensor) -> torch.Tensor:
        """Trunk from the entry point of ``resolution`` (112: the image) to the embedding."""
        start = 0 if resolution == TRUNK_RESOLUTION else self.implant_index(resolution) + 1
        return self.trunk.run(x, start)

    def embed(self, x: torch.Tensor, resolution: int = TRUNK_RESOLUTION) -> torch.Tensor:
        """Embedding of faces at ``resolution`` px (x already normalized, NCHW)."""
        if resolution != TRUNK_RESOLUTION:
            x = self.run_branch(resolution, x)
        return self.run_trunk_from(resolution, x)

    def implant_shape(self, resolution: int) -> tuple[int, int, int]:
        """C, H, W of the feature map at the implant point of ``resolution``."""
        with torch.no_grad():
            was_training = self.training
            self.eval()
            out = self.run_branch(resolution, torch.zeros(1, 3, resolution, resolution))
            self.train(was_training)
        return tuple(out.shape[1:])  # type: ignore[return-value]

    def parameter_counts(self) -> dict[str, object]:
        """Trunk parameters and each branch's own parameters (the part it adds)."""
        total = sum(p.numel() for p in self.trunk.parameters())
        branches = {str(r): self.branch(r).unit_parameter_count(0, self.implant_index(r) + 1) for r in self.resolutions}
        return {"trunk": total, "branches": branches}


def calibrate_batchnorm(net: BTNet, seed: int, batches: int = 2, batch_size: int = 8) -> None:
    """Give random weights realistic BN statistics, so activations stay in range through deep trunks.

    Random-weight packages are for latency and plumbing; without this, eval-mode BN
    (mean 0, var 1) lets activations grow by orders of magnitude over 50 layers.
    """
    generator = torch.Generator().manual_seed(seed)
    momenta = {}
    for module in net.trunk.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            momenta[module] = module.momentum
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration batches
    net.trunk.train()
    with torch.no_grad():
        for _ in range(batches):
            net.trunk(torch.randn(batch_size, 3, TRUNK_RESOLUTION, TRUNK_RESOLUTION, generator=generator))
    for module, momentum in momenta.items():
        module.momentum = momentum
    net.eval()
    net.init_branches_from_trunk()


def random_btnet(arch: str, resolutions: Sequence[int], seed: int = 0) -> BTNet:
    """A seeded random BTNet: same seed, same weights, on any machine."""
    torch.manual_seed(seed)
    net = BTNet(arch, resolutions)
    calibrate_batchnorm(net, seed)
    return net.eval()
