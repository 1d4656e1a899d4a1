"""Model definitions (need the ``export`` extra: torch).

Importing this package does not import torch; :func:`create_trunk` does.
"""

from .registry import ArchConfig, arch_config, create_trunk, list_models, resolve_name

__all__ = ["ArchConfig", "arch_config", "create_trunk", "list_models", "resolve_name"]
