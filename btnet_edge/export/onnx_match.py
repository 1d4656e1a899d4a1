"""Match an ONNX layer sequence to one of our trunks and recover its state dict.

Our side is a *template*: the layers of the torch module in forward order, each with
the state-dict prefix it fills. The two sequences are walked together. A BatchNorm
that the ONNX exporter folded into the convolution (or Gemm) before it is rebuilt as
an identity BN that adds the folded bias: the function is unchanged, and
``folded`` lists where that happened.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import CheckpointError
from .onnx_graph import Layer, OnnxGraph

_WEIGHTED = ("conv", "gemm")


@dataclass(frozen=True)
class Expected:
    """One layer of our template: ``kind``, the state-dict prefix it fills, its module and its unit."""

    kind: str
    key: str = ""
    module: Any = None
    unit: str = ""


@dataclass
class Matched:
    """What the match recovered: the state dict (numpy), folded BN prefixes, implant points seen."""

    state: dict[str, np.ndarray] = field(default_factory=dict)
    folded: list[tuple[str, str]] = field(default_factory=list)  # (BN prefix, layer it was folded into)
    implants: dict[str, str] = field(default_factory=dict)  # graph input -> unit it follows


def _iresnet_template(net) -> list[Expected]:
    out = [Expected("conv", "conv1", net.conv1, "stem"), Expected("bn", "bn1", net.bn1, "stem"),
           Expected("prelu", "prelu", net.prelu, "stem")]
    for unit in net.units[1:-1]:
        block, p = unit.module, unit.name + "."
        out += [Expected("block", unit=unit.name), Expected("bn", p + "bn1", block.bn1, unit.name),
                Expected("conv", p + "conv1", block.conv1, unit.name), Expected("bn", p + "bn2", block.bn2, unit.name),
                Expected("prelu", p + "prelu", block.prelu, unit.name),
                Expected("conv", p + "conv2", block.conv2, unit.name),
                Expected("bn", p + "bn3", block.bn3, unit.name), Expected("shortcut", unit=unit.name)]
        if block.downsample is not None:
            out += [Expected("conv", p + "downsample.0", block.downsample[0], unit.name),
                    Expected("bn", p + "downsample.1", block.downsample[1], unit.name)]
        out.append(Expected("add", unit=unit.name))
    return [*out, Expected("bn", "bn2", net.bn2, "head"), Expected("flatten", unit="head"),
            Expected("gemm", "fc", net.fc, "head"), Expected("bn", "features", net.features, "head")]


def _conv_bn_act(prefix: str, seq, act: str, unit: str) -> list[Expected]:
    return [Expected("conv", prefix + ".0", seq[0], unit), Expected("bn", prefix + ".1", seq[1], unit),
            Expected(act, unit=unit)]


def _mobilefacenet_template(net) -> list[Expected]:
    dw = net.dw_conv
    out = [*_conv_bn_act("conv1", net.conv1, "relu6", "conv1"),
           Expected("conv", "dw_conv.depthwise", dw.depthwise, "dw_conv"),
           Expected("bn", "dw_conv.bn1", dw.bn1, "dw_conv"),
           Expected("relu", unit="dw_conv"), Expected("conv", "dw_conv.pointwise", dw.pointwise, "dw_conv"),
           Expected("bn", "dw_conv.bn2", dw.bn2, "dw_conv"), Expected("relu", unit="dw_conv")]
    for unit in net.units[2:-1]:
        block, p = unit.module, unit.name + ".conv"
        layers = (_conv_bn_act(p + ".0", block.conv[0], "relu6", unit.name)
                  + _conv_bn_act(p + ".1", block.conv[1], "relu6", unit.name)
                  + [Expected("conv", p + ".2", block.conv[2], unit.name),
                     Expected("bn", p + ".3", block.conv[3], unit.name)])
        if block.use_res_connect:
            layers = [Expected("block", unit=unit.name), *layers, Expected("shortcut", unit=unit.name),
                      Expected("add", unit=unit.name)]
        out += layers
    return out + _conv_bn_act("conv2", net.conv2, "relu6", "head") + [
        Expected("conv", "gdconv.depthwise", net.gdconv.depthwise, "head"),
        Expected("bn", "gdconv.bn", net.gdconv.bn, "head"), Expected("conv", "conv3", net.conv3, "head"),
        Expected("bn", "bn", net.bn, "head"), Expected("flatten", unit="head")]


def layer_template(net, family: str, stop_unit: str | None = None) -> list[Expected]:
    """Our layers in forward order, up to and including the unit ``stop_unit`` (a branch's implant block)."""
    full = _iresnet_template(net) if family == "iresnet" else _mobilefacenet_template(net)
    if stop_unit is None:
        return full
    last = max(i for i, e in enumerate(full) if e.unit == stop_unit)
    return full[: last + 1]


class _Matcher:
    def __init__(self, graph: OnnxGraph, layers: list[Layer], arch: str) -> None:
        self.graph, self.layers, self.arch = graph, layers, arch
        self.pos, self.pending_bias, self.previous = 0, None, None
        self.result = Matched()

    def fail(self, expected: Expected, found: str) -> CheckpointError:
        where = f"unit {expected.unit}" + (f" ({expected.key})" if expected.key else "")
        return CheckpointError(f"{self.graph.path.name} does not match {self.arch} at {where}: expected "
                               f"{expected.kind}, found {found}")

    def next_layer(self) -> Layer | None:
        while self.pos < len(self.layers) and self.layers[self.pos].kind == "implant":
            self.result.implants[self.layers[self.pos].implant] = self.previous.unit if self.previous else ""
            self.pos += 1
        return self.layers[self.pos] if self.pos < len(self.layers) else None

    def run(self, template: list[Expected]) -> Matched:
        for expected in template:
            layer = self.next_layer()
            if expected.kind == "bn" and (layer is None or layer.kind != "bn"):
                self.folded_bn(expected, layer)
            elif layer is None:
                raise self.fail(expected, "the end of the graph")
            elif layer.kind != expected.kind:
                raise self.fail(expected, f"{layer.kind} ({layer.describe()})")
            else:
                getattr(self, f"load_{expected.kind}", lambda _expected, _layer: None)(expected, layer)
                self.pos += 1
            self.previous = expected
        rest = self.next_layer()
        if rest is not None:
            raise CheckpointError(f"{self.graph.path.name} continues after {self.arch}'s last layer with "
                                  f"{rest.kind} ({rest.describe()}); the graph is not a supported {self.arch}")
        return self.result

    def put(self, key: str, value: np.ndarray, module_tensor) -> None:
        value = np.asarray(value, dtype=np.float32)
        if tuple(value.shape) != tuple(module_tensor.shape):
            raise CheckpointError(f"{self.graph.path.name} does not match {self.arch} at {key}: shape "
                                  f"{tuple(value.shape)} in the ONNX, {tuple(module_tensor.shape)} expected")
        self.result.state[key] = value

    def load_conv(self, e: Expected, layer: Layer) -> None:
        node, m, g = layer.node, e.module, self.graph
        weight = g.constant(node.input[1], f"{e.key}.weight")
        found = {"strides": list(g.attribute(node, "strides", [1, 1])), "group": int(g.attribute(node, "group", 1)),
                 "dilations": list(g.attribute(node, "dilations", [1, 1])),
                 "pads": list(g.attribute(node, "pads", [0, 0, 0, 0]))}
        wanted = {"strides": list(m.stride), "group": m.groups, "dilations": list(m.dilation),
                  "pads": [m.padding[0], m.padding[1], m.padding[0], m.padding[1]]}
        if g.attribute(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            found["auto_pad"] = g.attribute(node, "auto_pad")
        differ = {k: (found[k], wanted.get(k)) for k in found if found[k] != wanted.get(k)}
        if differ:
            text = ", ".join(f"{k} {a} (expected {b})" for k, (a, b) in differ.items())
            raise CheckpointError(f"{g.path.name} does not match {self.arch} at {e.key} ({layer.describe()}): {text}")
        self.put(e.key + ".weight", weight, m.weight)
        bias = g.constant(node.input[2], f"{e.key}.bias") if len(node.input) > 2 and node.input[2] else None
        self.take_bias(e, bias)

    def load_gemm(self, e: Expected, layer: Layer) -> None:
        node, g = layer.node, self.graph
        if (g.attribute(node, "transA", 0) or g.attribute(node, "alpha", 1.0) != 1.0
                or g.attribute(node, "beta", 1.0) != 1.0):
            raise CheckpointError(f"{g.path.name}: {layer.describe()} uses transA/alpha/beta; "
                                  "only y = x W^T + b is supported")
        weight = g.constant(node.input[1], f"{e.key}.weight")
        self.put(e.key + ".weight", weight if g.attribute(node, "transB", 0) else weight.T, e.module.weight)
        bias = g.constant(node.input[2], f"{e.key}.bias") if len(node.input) > 2 and node.input[2] else None
        self.take_bias(e, bias)

    def take_bias(self, e: Expected, bias: np.ndarray | None) -> None:
        """Our layer's own bias if it has one; else the bias waits for the BN that follows (folded BN)."""
        channels = e.module.weight.shape[0]
        if bias is not None:
            bias = np.broadcast_to(np.asarray(bias, np.float32).reshape(-1), (channels,))
        if e.module.bias is not None:
            self.put(e.key + ".bias", bias if bias is not None else np.zeros(channels, np.float32), e.module.bias)
            self.pending_bias = None
        else:
            self.pending_bias = bias

    def load_bn(self, e: Expected, layer: Layer) -> None:
        g, node = self.graph, layer.node
        scale, beta, mean, var = (np.asarray(g.constant(n, f"{e.key} parameters"), np.float64) for n in node.input[1:5])
        eps = float(g.attribute(node, "epsilon", 1e-5))
        if self.pending_bias is not None:  # a conv bias before a real BN: BN(x + b) shifts the mean
            mean = mean - self.pending_bias
        var = var + eps - e.module.eps  # same output with our epsilon
        if (var <= 0).any():
            raise CheckpointError(f"{g.path.name}: {layer.describe()} has epsilon {eps} and variances that "
                                  f"cannot be expressed with epsilon {e.module.eps}")
        self.put_bn(e, scale, beta, mean, var)

    def put_bn(self, e: Expected, scale, beta, mean, var) -> None:
        m = e.module
        self.put(e.key + ".weight", scale, m.weight)
        self.put(e.key + ".bias", beta, m.bias)
        self.put(e.key + ".running_mean", mean, m.running_mean)
        self.put(e.key + ".running_var", var, m.running_var)
        self.result.state[e.key + ".num_batches_tracked"] = np.zeros((), np.int64)
        self.pending_bias = None

    def folded_bn(self, e: Expected, layer: Layer | None) -> None:
        if self.previous is None or self.previous.kind not in _WEIGHTED:
            raise self.fail(e, "no BatchNormalization" + (f" but {layer.kind} ({layer.describe()})" if layer else ""))
        n = e.module.num_features
        beta = self.pending_bias if self.pending_bias is not None else np.zeros(n)
        # Identity BN: (x - 0) / sqrt((1 - eps) + eps) * 1 + beta.
        self.put_bn(e, np.ones(n), beta, np.zeros(n), np.full(n, 1.0 - e.module.eps))
        self.result.folded.append((e.key, self.previous.key))

    def load_prelu(self, e: Expected, layer: Layer) -> None:
        slope = self.graph.constant(layer.node.input[1], f"{e.key}.weight")
        self.put(e.key + ".weight", np.asarray(slope).reshape(-1), e.module.weight)


def match_layers(graph: OnnxGraph, layers: list[Layer], template: list[Expected], arch: str) -> Matched:
    """Walk ``layers`` (from the graph) and ``template`` (ours) together; raise naming the first difference."""
    return _Matcher(graph, layers, arch).run(template)
