"""Command line interface; ``main(argv)`` is the entry point of ``btnet-edge`` and of tools/*.py."""

from .main import main

__all__ = ["main"]
