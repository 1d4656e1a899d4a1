"""The torch modules that become the package's ONNX graphs.

``BranchGraph``: r px face -> implant feature map. ``MergedTrunkGraph``: one input
per entry point; batches are concatenated inside the graph at each implant point so
the trunk runs once for all faces (DESIGN.md). ``FusedGraph``: branch + trunk tail.
"""

from __future__ import annotations

import torch
from torch import nn

from ..models.btnet import TRUNK_RESOLUTION, BTNet


def image_input_name(resolution: int) -> str:
    return f"image_{resolution}"


def implant_name(resolution: int) -> str:
    return f"implant_{resolution}"


EMBEDDING_NAME = "embedding"


class BranchGraph(nn.Module):
    def __init__(self, net: BTNet, resolution: int) -> None:
        super().__init__()
        self.net, self.resolution = net, resolution

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net.run_branch(self.resolution, image)


class MergedTrunkGraph(nn.Module):
    """forward(image_112, implant_r1, implant_r2, ...) with r1 > r2 > ...: embeddings in input order."""

    def __init__(self, net: BTNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor, *implants: torch.Tensor) -> torch.Tensor:
        trunk = self.net.trunk
        start = 0
        x = image
        for resolution, implant in zip(self.net.resolutions, implants):
            stop = self.net.implant_index(resolution) + 1
            x = torch.cat([trunk.run(x, start, stop), implant], dim=0)
            start = stop
        return trunk.run(x, start)

    def entry_names(self) -> list[str]:
        return [image_input_name(TRUNK_RESOLUTION)] + [implant_name(r) for r in self.net.resolutions]


class FusedGraph(nn.Module):
    def __init__(self, net: BTNet, resolution: int) -> None:
        super().__init__()
        self.net, self.resolution = net, resolution

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net.embed(image, self.resolution)
