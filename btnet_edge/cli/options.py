"""Option groups and parsers shared between subcommands."""

from __future__ import annotations

import argparse

from ..errors import ConfigError


def parse_resolutions(text: str) -> list[int]:
    """'7,14,28' -> [7, 14, 28] with a clear error."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"resolutions should be comma-separated integers like 7,14,28, found {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise ConfigError(f"resolutions should be positive integers, found {text!r}")
    return values


def parse_branch_file(text: str) -> tuple[int, str]:
    """'14=branch14.pt' -> (14, 'branch14.pt')."""
    resolution, sep, path = text.partition("=")
    if not sep or not resolution.strip().isdigit() or not path:
        raise argparse.ArgumentTypeError(f"--branch takes R=FILE, like 14=branch_14.pt; found {text!r}")
    return int(resolution), path


def parse_triple(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three numbers like 127.5,127.5,127.5; found {text!r}") from None
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected three numbers like 127.5,127.5,127.5; found {text!r}")
    return values  # type: ignore[return-value]
