"""Parity of each exported graph on ONNX Runtime against PyTorch, recorded in the manifest."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Callable

import numpy as np

from ..backends.ort import OrtBackend


def compare_outputs(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """Max absolute error and minimum row cosine (rows flattened) between two batches."""
    if reference.shape != candidate.shape:
        raise ValueError(f"shapes differ: {reference.shape} vs {candidate.shape}")
    if reference.size == 0:
        return {"max_abs_err": 0.0, "min_cosine": 1.0}
    a = reference.reshape(len(reference), -1).astype(np.float64)
    b = candidate.reshape(len(candidate), -1).astype(np.float64)
    denom = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cosine = np.sum(a * b, axis=1) / np.maximum(denom, 1e-12)
    return {"max_abs_err": float(np.abs(a - b).max()), "min_cosine": float(cosine.min())}


def measure_parity(onnx_path: str | Path, torch_fn: Callable[..., object], cases: Sequence[Mapping[str, np.ndarray]],
                   input_order: Sequence[str]) -> dict[str, float]:
    """Run every case through ONNX Runtime and ``torch_fn``; return the worst figures over all cases."""
    torch = __import__("torch")
    worst = {"max_abs_err": 0.0, "min_cosine": 1.0}
    with OrtBackend(onnx_path) as backend:
        output_name = backend.outputs[0].name
        for feeds in cases:
            got = backend.infer(feeds)[output_name]
            with torch.no_grad():
                ref = torch_fn(*(torch.from_numpy(feeds[name]) for name in input_order)).numpy()
            figures = compare_outputs(ref, got)
            worst["max_abs_err"] = max(worst["max_abs_err"], figures["max_abs_err"])
            worst["min_cosine"] = min(worst["min_cosine"], figures["min_cosine"])
    worst["cases"] = len(cases)
    return worst
