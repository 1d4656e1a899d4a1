"""One place that imports the heavy optional dependencies.

Modules import only numpy and OpenCV at the top; torch, onnx, tensorrt and cuda
are loaded through :func:`require` inside the function that needs them, so the
runtime works without them and a missing one names the pip extra to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependencyError

_HINTS = {
    "torch": 'pip install "btnet-edge[export]"  (CPU build: pip install torch==2.13.0)',
    "onnx": 'pip install "btnet-edge[export]"',
    "onnxruntime": "pip install onnxruntime  (or onnxruntime-gpu for the CUDA provider)",
    "tensorrt": (
        "on Jetson, TensorRT comes with JetPack (sudo apt install nvidia-tensorrt "
        "python3-libnvinfer); on a desktop GPU, pip install tensorrt from NVIDIA's index "
        "(see docs/tensorrt.md)"
    ),
    "tensorrt_rtx": "pip install tensorrt-rtx-cu12  (TensorRT for RTX, from PyPI: x86-64 Linux and Windows)",
    "cuda": 'pip install "btnet-edge[trt]"  (cuda-python, for device memory)',
    "pycuda": "pip install pycuda  (needs the CUDA toolkit to compile)",
    "matplotlib": 'pip install "btnet-edge[plot]"',
    "ray": 'pip install "btnet-edge[serve]"  (Ray Serve)',
    "psycopg": 'pip install "btnet-edge[postgres]"  (the PostgreSQL client; the server needs pgvector >= 0.5)',
    "faiss": 'pip install "btnet-edge[ann]"  (faiss-cpu, for approximate search of large galleries)',
    "usearch": "pip install usearch  (only bench-gallery --libraries, which compares it with FAISS)",
}


def require(name: str, extra: str | None = None) -> ModuleType:
    """Import ``name`` or raise :class:`MissingDependencyError` saying how to get it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        root = name.split(".")[0]
        hint = _HINTS.get(root) or (f'pip install "btnet-edge[{extra}]"' if extra else f"pip install {root}")
        raise MissingDependencyError(f"{name} is needed here but cannot be imported ({exc}). "
                                     f"Install it: {hint}") from None


def available(name: str) -> bool:
    """True when ``name`` imports; never raises."""
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True
