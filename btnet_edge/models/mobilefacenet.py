"""MobileFaceNet with the state-dict names of foamliu/MobileFaceNet (the fixture checkpoint).

112 -> 56 after conv1 -> 28 after features.0 -> 14 after features.5 -> 7 after
features.12 (../shared/fixtures/README.md). Built for ``input_size`` r < 112, every
downsampling step whose trunk output is at least r px gets stride 1, as for IResNet.
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import ArchConfig, register_model
from .units import UnitNetwork

# (expansion t, channels c, repeats n, first stride s)
_SETTINGS = ((2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1))


class ConvBNReLU(nn.Sequential):
    """Conv (no bias) + BN + ReLU6; keys ``.0`` and ``.1``."""

    def __init__(self, in_planes: int, out_planes: int, kernel_size: int = 3, stride: int = 1, groups: int = 1) -> None:
        padding = (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(in_planes, out_planes, kernel_size, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(out_planes),
            nn.ReLU6(inplace=True),
        )


class DepthwiseSeparableConv(nn.Module):
    """Depthwise 3x3 + BN + ReLU, pointwise 1x1 + BN + ReLU."""

    def __init__(self, planes: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(planes, planes, kernel_size=3, padding=1, groups=planes, bias=False)
        self.pointwise = nn.Conv2d(planes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.depthwise(x)))
        return self.relu(self.bn2(self.pointwise(x)))


class GDConv(nn.Module):
    """Global depthwise 7x7 conv (no padding) + BN: 7x7 map -> 1x1."""

    def __init__(self, planes: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(planes, planes, kernel_size=7, padding=0, groups=planes, bias=False)
        self.bn = nn.BatchNorm2d(planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.depthwise(x))


class InvertedResidual(nn.Module):
    """MobileNetV2 block; residual when stride is 1 and widths match."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        self.conv = nn.Sequential(
            ConvBNReLU(inp, hidden, kernel_size=1),
            ConvBNReLU(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class _Head(nn.Module):
    """View of conv2 -> gdconv -> conv3 -> bn -> flatten (owns no parameters)."""

    def __init__(self, net: MobileFaceNet) -> None:
        super().__init__()
        self._net = [net]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self._net[0]
        return torch.flatten(net.bn(net.conv3(net.gdconv(net.conv2(x)))), 1)


class MobileFaceNet(UnitNetwork):
    """MobileFaceNet (1.0 M parameters, 128-d embedding) for ``input_size`` px faces."""

    def __init__(self, input_size: int = 112, embedding_size: int = 128) -> None:
        super().__init__()
        self.input_size = input_size

        def stride_for(trunk_out: int) -> int:
            return 1 if input_size < 112 and trunk_out >= input_size else 2

        self.conv1 = ConvBNReLU(3, 64, stride=stride_for(56))
        self.dw_conv = DepthwiseSeparableConv(64)
        units: list[tuple[str, nn.Module, int]] = [("conv1", self.conv1, 56), ("dw_conv", self.dw_conv, 56)]
        blocks, channels, size = [], 64, 56
        for t, c, n, s in _SETTINGS:
            for i in range(n):
                stride = s if i == 0 else 1
                if stride == 2:
                    size //= 2
                    stride = stride_for(size)
                blocks.append(InvertedResidual(channels, c, stride, t))
                units.append((f"features.{len(blocks) - 1}", blocks[-1], size))
                channels = c
        self.features = nn.Sequential(*blocks)
        self.conv2 = ConvBNReLU(channels, 512, kernel_size=1)
        self.gdconv = GDConv(512)
        self.conv3 = nn.Conv2d(512, embedding_size, kernel_size=1)
        self.bn = nn.BatchNorm2d(embedding_size)
        units.append(("head", _Head(self), 0))
        self.set_units(units)

    def head_prefixes(self) -> list[str]:
        return ["conv2.", "gdconv.", "conv3.", "bn."]


@register_model(
    ArchConfig(
        name="mobilefacenet",
        family="mobilefacenet",
        embedding_size=128,
        mean=(0.485 * 255, 0.456 * 255, 0.406 * 255),
        std=(0.229 * 255, 0.224 * 255, 0.225 * 255),
        flip_tta=True,
        description="MobileFaceNet (foamliu), RGB ImageNet mean/std, flip TTA",
    ),
    aliases=("mfn",),
)
def mobilefacenet(input_size: int = 112) -> MobileFaceNet:
    """MobileFaceNet as in foamliu/MobileFaceNet."""
    return MobileFaceNet(input_size=input_size)
