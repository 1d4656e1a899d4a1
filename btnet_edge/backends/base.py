"""The one backend interface: load a graph, run feeds, close.

Backends know nothing about faces. Subclasses override ``_load``, ``_infer`` and
``_close``; callers use ``load``/``infer``/``close`` or a ``with`` block.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from ..errors import BackendError

log = logging.getLogger(__name__)
_B = TypeVar("_B", bound="Backend")  # load() and `with` give back the subclass itself


@dataclass(frozen=True)
class TensorSpec:
    """Name, element type and shape of a graph input or output (-1 or a name for dynamic axes)."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]


class Backend(ABC):
    """Runs one graph. ``infer(feeds)`` maps input names to arrays and returns output arrays by name."""

    name: str = "base"

    def __init__(self, model_path: str | Path) -> None:
        self.model_path = Path(model_path)
        self._loaded = False
        self.runs = 0  # graph executions so far: the Recognizer's batching is asserted with it

    def load(self: _B) -> _B:
        if not self._loaded:
            self._load()
            self._loaded = True
        return self

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self._loaded:
            self.load()
        expected = {spec.name for spec in self.inputs}
        if set(feeds) != expected:
            raise BackendError(
                f"{self.model_path.name}: feeds {sorted(feeds)} do not match the graph inputs {sorted(expected)}"
            )
        self.runs += 1
        return self._infer(feeds)

    def close(self) -> None:
        if self._loaded:
            self._close()
            self._loaded = False

    def __enter__(self: _B) -> _B:
        return self.load()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    @abstractmethod
    def inputs(self) -> list[TensorSpec]:
        """Graph inputs (available after ``load``)."""

    @property
    @abstractmethod
    def outputs(self) -> list[TensorSpec]:
        """Graph outputs (available after ``load``)."""

    @abstractmethod
    def _load(self) -> None: ...

    @abstractmethod
    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def _close(self) -> None:  # noqa: B027 - an optional hook: most backends hold nothing to release
        """Release resources; the default has none."""
