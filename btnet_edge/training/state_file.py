"""A pickle-free file for nested training state: arrays in an ``.npz``, structure as JSON inside it.

``torch.save`` writes pickle even for state dicts; we write no pickle in any format, so
checkpoints are encoded here and read back with ``np.load(allow_pickle=False)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CheckpointError

_STRUCTURE = "__structure__"


def save_state(path: Path, state: Any, torch: Any) -> None:
    """Write ``state`` (dicts, lists, tuples, scalars, strings, tensors, arrays) atomically."""
    arrays: dict[str, np.ndarray] = {}

    def encode(obj: Any) -> Any:
        if isinstance(obj, torch.Tensor):
            arrays[f"a{len(arrays)}"] = obj.detach().cpu().numpy()
            return {"tensor": f"a{len(arrays) - 1}"}
        if isinstance(obj, np.ndarray):
            arrays[f"a{len(arrays)}"] = obj
            return {"array": f"a{len(arrays) - 1}"}
        if isinstance(obj, dict):
            return {"dict": [[type(k).__name__, k, encode(v)] for k, v in obj.items()]}
        if isinstance(obj, (list, tuple)):
            return {"tuple" if isinstance(obj, tuple) else "list": [encode(v) for v in obj]}
        if isinstance(obj, (bool, int, float, str)) or obj is None:
            return {"value": obj}
        if isinstance(obj, (np.integer, np.floating)):
            return {"value": obj.item()}
        raise CheckpointError(f"cannot store a {type(obj).__name__} in a training checkpoint")

    structure = json.dumps(encode(state))
    arrays[_STRUCTURE] = np.frombuffer(structure.encode(), dtype=np.uint8)
    from ..safe_io import atomic_path

    with atomic_path(path, "training checkpoint") as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


def load_state(path: Path, torch: Any) -> Any:
    """Read a file written by :func:`save_state`; tensors come back as CPU tensors."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: np.array(data[k]) for k in data.files}
        structure = json.loads(arrays.pop(_STRUCTURE).tobytes().decode())
    except Exception as exc:  # damaged zip, missing structure, foreign file
        raise CheckpointError(f"cannot read checkpoint {path} ({exc}); delete it or drop --resume") from None
    key_types = {"int": int, "str": str, "float": float, "bool": bool}

    def decode(node: dict) -> Any:
        (kind, value), = node.items()
        if kind == "tensor":
            return torch.from_numpy(arrays[value])
        if kind == "array":
            return arrays[value]
        if kind == "dict":
            return {key_types[t](k): decode(v) for t, k, v in value}
        if kind == "list":
            return [decode(v) for v in value]
        if kind == "tuple":
            return tuple(decode(v) for v in value)
        return value

    return decode(structure)
