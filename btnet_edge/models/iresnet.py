"""IResNet trunks with the state-dict names of insightface ``arcface_torch`` and the BTNet authors.

Layout (DESIGN.md): conv3x3 -> BN -> PReLU -> layer1..layer4 (each halves the
size at 112 px) -> BN2d -> flatten -> FC -> BN1d. Built for ``input_size`` r < 112,
every downsampling block whose trunk output is at least r px gets stride 1: that
is the authors' branch network (a full network per resolution), of which a branch
uses the prefix up to the implant block.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .registry import ArchConfig, register_model
from .units import UnitNetwork


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    """BN, conv3x3, BN, PReLU, conv3x3(stride), BN, plus shortcut (arcface_torch)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-05)
        self.conv1 = _conv3x3(inplanes, planes)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-05)
        self.prelu = nn.PReLU(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-05)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + identity


class _Stem(nn.Module):
    """View of conv1 -> bn1 -> prelu that owns no parameters (keys stay at the top level)."""

    def __init__(self, net: IResNet) -> None:
        super().__init__()
        self._net = [net]  # a list hides the parent from module registration (no cycle)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self._net[0]
        return net.prelu(net.bn1(net.conv1(x)))


class _Head(nn.Module):
    """View of bn2 -> flatten -> dropout -> fc -> features (BN1d)."""

    def __init__(self, net: IResNet) -> None:
        super().__init__()
        self._net = [net]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self._net[0]
        x = torch.flatten(net.bn2(x), 1)
        return net.features(net.fc(net.dropout(x)))


class IResNet(UnitNetwork):
    """IResNet for ``input_size`` px faces; ``units`` exposes the block sequence for implanting."""

    def __init__(
        self,
        layers: Sequence[int],
        input_size: int = 112,
        widths: Sequence[int] = (64, 128, 256, 512),
        embedding_size: int = 512,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.input_size = input_size
        self.inplanes = widths[0]
        self.conv1 = nn.Conv2d(3, widths[0], kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0], eps=1e-05)
        self.prelu = nn.PReLU(widths[0])
        trunk_size = 112
        stage_sizes = []
        for index, (depth, width) in enumerate(zip(layers, widths), start=1):
            trunk_size //= 2
            stage_sizes.append(trunk_size)
            stride = 1 if trunk_size >= input_size and input_size < 112 else 2
            setattr(self, f"layer{index}", self._make_layer(width, depth, stride))
        self.bn2 = nn.BatchNorm2d(widths[-1], eps=1e-05)
        self.dropout = nn.Dropout(p=dropout, inplace=True)
        self.fc = nn.Linear(widths[-1] * 7 * 7, embedding_size)
        self.features = nn.BatchNorm1d(embedding_size, eps=1e-05)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False  # arcface_torch freezes this scale

        units: list[tuple[str, nn.Module, int]] = [("stem", _Stem(self), 112)]
        for index, size in enumerate(stage_sizes, start=1):
            for block_index, block in enumerate(getattr(self, f"layer{index}")):
                units.append((f"layer{index}.{block_index}", block, size))
        units.append(("head", _Head(self), 0))
        self.set_units(units)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0, 0.1)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        # The authors' rule: a shortcut conv only where the stride or width changes.
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes, eps=1e-05),
            )
        layers = [IBasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [IBasicBlock(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)


_IRESNET = dict(family="iresnet", embedding_size=512, description="insightface IResNet, RGB (x-127.5)/127.5")


@register_model(ArchConfig(name="iresnet18", build_kwargs={"layers": (2, 2, 2, 2)}, **_IRESNET), aliases=("r18",))
@register_model(ArchConfig(name="iresnet34", build_kwargs={"layers": (3, 4, 6, 3)}, **_IRESNET), aliases=("r34",))
@register_model(ArchConfig(name="iresnet50", build_kwargs={"layers": (3, 4, 14, 3)}, **_IRESNET), aliases=("r50",))
@register_model(ArchConfig(name="iresnet100", build_kwargs={"layers": (3, 13, 30, 3)}, **_IRESNET), aliases=("r100",))
def iresnet(input_size: int = 112, layers: Sequence[int] = (3, 4, 14, 3)) -> IResNet:
    """An insightface IResNet of the given depth."""
    return IResNet(layers, input_size=input_size)


@register_model(
    ArchConfig(
        name="test_btnet",
        family="iresnet",
        embedding_size=64,
        build_kwargs={"layers": (1, 2, 2, 1), "widths": (8, 16, 32, 64), "embedding_size": 64},
        description="tiny random IResNet for fast tests; not a face recognizer",
    )
)
def tiny_iresnet(
    input_size: int = 112,
    layers: Sequence[int] = (1, 2, 2, 1),
    widths: Sequence[int] = (8, 16, 32, 64),
    embedding_size: int = 64,
) -> IResNet:
    """A narrow IResNet that keeps CPU tests to seconds."""
    return IResNet(layers, input_size=input_size, widths=widths, embedding_size=embedding_size)
