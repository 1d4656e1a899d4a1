"""A trunk seen as a sequence of units, so that branches can be cut and implanted.

Every architecture lists its units in order (stem, blocks, head) with the spatial
size each one outputs for a 112 px face and the state-dict prefixes it owns. The
implant point of resolution r is the first unit whose output is r px: the first
block of the stage that produces r (DESIGN.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError


@dataclass(frozen=True)
class Unit:
    """One step of the trunk: ``module(x)``, output ``out_size`` px at 112 (0 for the head)."""

    name: str
    module: nn.Module
    out_size: int
    prefixes: tuple[str, ...]


class UnitNetwork(nn.Module):
    """Base of every trunk: ``units`` in order, ``run(x, start, stop)`` over a slice of them."""

    input_size: int

    def set_units(self, units: list[tuple[str, nn.Module, int]]) -> None:
        owned = []
        for name, module, size in units:
            if name == "stem":
                prefixes = tuple(self.stem_prefixes())
            elif name == "head":
                prefixes = tuple(self.head_prefixes())
            else:
                prefixes = (name + ".",)
            owned.append(Unit(name, module, size, prefixes))
        self._units = owned  # plain attribute: the modules are registered under their own names

    @property
    def units(self) -> list[Unit]:
        return self._units

    def stem_prefixes(self) -> list[str]:
        return ["conv1.", "bn1.", "prelu."]

    def head_prefixes(self) -> list[str]:
        return ["bn2.", "fc.", "features."]

    def run(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        for unit in self._units[start:stop]:
            x = unit.module(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x)

    def implant_index(self, resolution: int) -> int:
        """Index of the unit whose output the branch of ``resolution`` replaces."""
        for index, unit in enumerate(self._units):
            if unit.out_size == resolution:
                return index
        sizes = sorted({u.out_size for u in self._units if 0 < u.out_size < 112})
        raise ConfigError(f"resolution {resolution} px has no implant point in this trunk; choose from {sizes}")

    def implant_resolutions(self) -> list[int]:
        return sorted({u.out_size for u in self._units if 0 < u.out_size < 112}, reverse=True)

    def unit_parameter_count(self, start: int, stop: int | None) -> int:
        """Parameters (trainable and frozen, no buffers) owned by ``units[start:stop]``."""
        prefixes = tuple(p for unit in self._units[start:stop] for p in unit.prefixes)
        return sum(p.numel() for name, p in self.named_parameters() if name.startswith(prefixes))

    def unit_keys(self, start: int, stop: int | None) -> list[str]:
        """State-dict keys (parameters and buffers) owned by ``units[start:stop]``."""
        prefixes = tuple(p for unit in self._units[start:stop] for p in unit.prefixes)
        return [k for k in self.state_dict() if k.startswith(prefixes)]
