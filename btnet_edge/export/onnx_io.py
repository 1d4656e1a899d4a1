"""ONNX export and check steps, each small and testable on its own."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

from .._deps import require

log = logging.getLogger(__name__)

OPSET = 17


def onnx_from_torch(module, example_inputs: Sequence, input_names: Sequence[str], output_names: Sequence[str],
                    path: str | Path, opset: int = OPSET) -> Path:
    """Export ``module`` with a dynamic batch on every input and output (legacy TorchScript exporter).

    ``dynamic_axes`` is built from the same names passed as ``input_names``. The
    legacy exporter is used because it keeps zero-size batches working in
    ONNX Runtime (DESIGN.md).
    """
    torch = require("torch", extra="export")
    path = Path(path)
    dynamic_axes = {name: {0: f"batch_{name}"} for name in (*input_names, *output_names)}
    module.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(module, tuple(example_inputs), str(path), input_names=list(input_names),
                          output_names=list(output_names), dynamic_axes=dynamic_axes, opset_version=opset,
                          do_constant_folding=True, dynamo=False)
    check_onnx(path)
    return path


def check_onnx(path: str | Path) -> None:
    """Run ``onnx.checker`` with full shape inference on the file."""
    onnx = require("onnx", extra="export")
    onnx.checker.check_model(str(path), full_check=True)
