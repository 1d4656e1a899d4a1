"""Model registry: one ``@register_model`` function per architecture.

Each entry builds the trunk network for a given input size (112 for the trunk,
r for the branch of resolution r) and carries the preprocessing its weights were
trained with, so that the exporter never guesses it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import ConfigError


@dataclass(frozen=True)
class ArchConfig:
    """What travels with an architecture: preprocessing and embedding size."""

    name: str
    family: str  # "iresnet" or "mobilefacenet"
    embedding_size: int
    color_order: str = "RGB"
    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)  # pixel units, 0..255
    std: tuple[float, float, float] = (127.5, 127.5, 127.5)
    flip_tta: bool = False
    build_kwargs: dict[str, Any] = field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True)
class _Entry:
    config: ArchConfig
    builder: Callable[..., Any]


_REGISTRY: dict[str, _Entry] = {}
_ALIASES: dict[str, str] = {}


def register_model(config: ArchConfig,
                   aliases: tuple[str, ...] = ()) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register ``builder(input_size=112) -> nn.Module`` under ``config.name``."""

    def wrap(builder: Callable[..., Any]) -> Callable[..., Any]:
        if config.name in _REGISTRY:
            raise ValueError(f"model {config.name!r} registered twice")
        _REGISTRY[config.name] = _Entry(config, builder)
        for alias in aliases:
            _ALIASES[alias] = config.name
        return builder

    return wrap


def list_models() -> list[str]:
    """Names accepted by :func:`create_trunk` and ``btnet-edge export --arch``."""
    _ensure_registered()
    return sorted(_REGISTRY)


def resolve_name(name: str) -> str:
    """Canonical architecture name for ``name`` or an alias of it (``r50`` -> ``iresnet50``)."""
    _ensure_registered()
    canonical = _ALIASES.get(name, name)
    if canonical not in _REGISTRY:
        known = ", ".join(sorted(set(_REGISTRY) | set(_ALIASES)))
        raise ConfigError(f"unknown architecture {name!r}; choose one of: {known}")
    return canonical


def arch_config(name: str) -> ArchConfig:
    """The :class:`ArchConfig` of ``name`` (aliases allowed)."""
    return _REGISTRY[resolve_name(name)].config


def create_trunk(name: str, input_size: int = 112) -> Any:
    """Build the network ``name`` for faces of ``input_size`` px (112: the trunk)."""
    entry = _REGISTRY[resolve_name(name)]
    return entry.builder(input_size=input_size, **entry.config.build_kwargs)


def _ensure_registered() -> None:
    # The model modules import torch; importing them here keeps `import btnet_edge` light.
    from . import iresnet, mobilefacenet  # noqa: F401
