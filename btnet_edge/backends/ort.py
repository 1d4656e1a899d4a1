"""ONNX Runtime backend: CPU by default (the embedded default), CUDA provider when asked and present."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .._deps import require
from ..errors import BackendError
from .base import Backend, TensorSpec

log = logging.getLogger(__name__)

_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int64)": "int64",
              "tensor(int32)": "int32"}
_ORT_TYPES["tensor(uint8)"] = "uint8"  # engines' graphs that take uint8 crops (engines/input_graph.py)


def ort_providers(device: str = "cpu") -> list[str]:
    """Execution providers for ``device`` ("cpu" or "cuda"), failing clearly when CUDA is absent."""
    ort = require("onnxruntime")
    available = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "cuda":
        if "CUDAExecutionProvider" not in available:
            raise BackendError(
                f"ONNX Runtime has no CUDA provider here (available: {', '.join(available)}); "
                "install onnxruntime-gpu, or run on the CPU (--device cpu; device='cpu' in the API)"
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    raise BackendError(f"unknown device {device!r} for ONNX Runtime; use 'cpu' or 'cuda'")


class OrtBackend(Backend):
    """One ``onnxruntime.InferenceSession``; ``threads`` sets intra-op threads (0: ONNX Runtime decides).

    ``spin`` False (the default) stops idle worker threads from spinning after a run:
    the pipeline chains sessions (detector, branches, trunk), and on a small CPU the
    previous session's spinning threads steal cores from the next one (measured on 2
    cores: the r50 7 px path took 305 ms instead of 234 ms; docs/benchmarks.md).
    """

    name = "onnxruntime"

    def __init__(self, model_path: str | Path | bytes, device: str = "cpu", threads: int = 0,
                 providers: Sequence[str] | None = None, spin: bool = False,
                 read_model: Callable[[], bytes] | None = None,
                 read_file: Callable[[str], bytes] | None = None) -> None:
        # read_model: returns the (verified) model bytes at load time; model_path then only names it.
        # read_file: the (verified) bytes of an external data file the model names (ModelPackage.read_verified).
        self._read_model = read_model
        self._read_file = read_file
        self._model_bytes = model_path if isinstance(model_path, bytes) else None
        super().__init__("<in-memory model>" if isinstance(model_path, bytes) else model_path)
        self.device = device
        self.threads = threads
        self._providers = list(providers) if providers else None
        self.spin = spin
        self._session: Any = None  # an onnxruntime.InferenceSession once loaded (onnxruntime has no stubs)

    def _load(self) -> None:
        ort = require("onnxruntime")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # our own session only; no global log level change
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.spin else "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "1" if self.spin else "0")
        if self.threads:
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
        providers = self._providers or ort_providers(self.device)
        if self._read_model is not None:
            source: bytes | str = self._read_model()  # held only while the session is built
        else:
            source = self._model_bytes if self._model_bytes is not None else str(self.model_path)
        external = self._external_data(source) if isinstance(source, bytes) else {}
        if external:
            names = sorted(external)
            options.add_external_initializers_from_files_in_memory(
                names, [external[n] for n in names], [len(external[n]) for n in names])
        try:
            self._session = ort.InferenceSession(source, sess_options=options, providers=providers)
        except Exception as exc:  # ONNX Runtime raises its own untyped errors
            raise BackendError(f"ONNX Runtime cannot load {self.model_path}: {exc}") from exc

    def _external_data(self, model: bytes) -> dict[str, bytes]:
        """The files a model built from bytes keeps weights in, from ``read_file``: never from the current folder,
        where ONNX Runtime would look for them."""
        from ..package.onnx_proto import OnnxFormatError, summarize

        try:
            names = summarize(model).external_files
        except OnnxFormatError:
            return {}  # not parseable here: ONNX Runtime reports it
        if not names:
            return {}
        if self._read_file is None:
            raise BackendError(f"{self.model_path}: the model keeps weights in external data "
                               f"({', '.join(sorted(names))}) "
                               "and was given as bytes with no verified source for them; load it from a package")
        ort = require("onnxruntime")
        if not hasattr(ort.SessionOptions, "add_external_initializers_from_files_in_memory"):
            raise BackendError(f"{self.model_path}: external data from memory needs a newer onnxruntime "
                               f"(this is {ort.__version__}); pip install -U onnxruntime")
        return {name: self._read_file(name) for name in sorted(names)}

    def _specs(self, nodes: list) -> list[TensorSpec]:
        return [TensorSpec(n.name, _ORT_TYPES.get(n.type, n.type), tuple(d if d is not None else -1 for d in n.shape))
                for n in nodes]

    @property
    def inputs(self) -> list[TensorSpec]:
        self.load()
        return self._specs(self._session.get_inputs())

    @property
    def outputs(self) -> list[TensorSpec]:
        self.load()
        return self._specs(self._session.get_outputs())

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [o.name for o in self._session.get_outputs()]
        try:
            results = self._session.run(names, {k: np.ascontiguousarray(v) for k, v in feeds.items()})
        except Exception as exc:
            shapes = {k: tuple(v.shape) for k, v in feeds.items()}
            raise BackendError(f"ONNX Runtime failed on {self.model_path.name} with inputs {shapes}: {exc}") from exc
        return dict(zip(names, results))

    def _close(self) -> None:
        self._session = None
