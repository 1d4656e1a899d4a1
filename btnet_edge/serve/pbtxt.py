"""Protobuf text format (Triton's config.pbtxt), the small subset model configs use: write and parse.

Writing: nested dicts and lists become ``key: value``, ``key { ... }`` and repeated
``key [ {...}, {...} ]``; :class:`Enum` values are written bare (``TYPE_FP32``). Parsing
returns every field as a list (protobuf fields may repeat), so a validator can tell a
missing field from an empty one. No protobuf runtime is needed.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..errors import ConfigError

_TOKEN = re.compile(r'\s*(?:(#[^\n]*)|("(?:[^"\\]|\\.)*")|([{}\[\]:,])|([A-Za-z_][\w.]*)|(-?[\d.]+(?:[eE][-+]?\d+)?))')


class Enum(str):
    """An enum value: written without quotes."""


def to_pbtxt(message: dict[str, Any], indent: int = 0) -> str:
    pad = "  " * indent
    lines = []
    for key, value in message.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            inner = ",\n".join(f"{pad}  {{\n{to_pbtxt(v, indent + 2)}\n{pad}  }}" for v in value)
            lines.append(f"{pad}{key} [\n{inner}\n{pad}]")
        elif isinstance(value, dict):
            lines.append(f"{pad}{key} {{\n{to_pbtxt(value, indent + 1)}\n{pad}}}")
        elif isinstance(value, list):
            lines.append(f"{pad}{key}: [ {', '.join(_scalar(v) for v in value)} ]")
        else:
            lines.append(f"{pad}{key}: {_scalar(value)}")
    return "\n".join(lines)


def _scalar(value: Any) -> str:
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def parse_pbtxt(text: str) -> dict[str, list]:
    """``{field: [values]}``; nested messages are dicts of the same form. Syntax errors name the offset."""
    tokens = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            rest = text[pos:].lstrip()
            if not rest:
                break
            pos = len(text) - len(rest)
            raise ConfigError(f"config.pbtxt: cannot read {text[pos:pos + 20]!r} at offset {pos}")
        pos = m.end()
        if m.group(1):
            continue
        kind = "str" if m.group(2) else "punct" if m.group(3) else "ident" if m.group(4) else "num"
        tokens.append((kind, m.group(m.lastindex), pos))
    message, _ = _message(tokens, 0, closing=None)
    return message


def _message(tokens: list, i: int, closing: str | None) -> tuple[dict[str, list], int]:
    out: dict[str, list] = {}
    while i < len(tokens):
        kind, value, pos = tokens[i]
        if kind == "punct" and value == closing:
            return out, i + 1
        if kind != "ident":
            raise ConfigError(f"config.pbtxt: expected a field name at offset {pos}, found {value!r}")
        i += 1
        if i < len(tokens) and tokens[i][1] == ":":
            i += 1
        values, i = _value(tokens, i)
        out.setdefault(value, []).extend(values)
    if closing is not None:
        raise ConfigError(f"config.pbtxt: missing {closing!r} at the end")
    return out, i


def _value(tokens: list, i: int) -> tuple[list, int]:
    if i >= len(tokens):
        raise ConfigError("config.pbtxt: a field has no value at the end of the file")
    kind, value, pos = tokens[i]
    if value == "{":
        message, i = _message(tokens, i + 1, "}")
        return [message], i
    if value == "[":
        items, i = [], i + 1
        while tokens[i][1] != "]":
            item, i = _value(tokens, i)
            items.extend(item)
            if tokens[i][1] == ",":
                i += 1
        return items, i + 1
    if kind == "str":
        return [json.loads(value)], i + 1
    if kind == "num":
        return [float(value) if any(c in value for c in ".eE") else int(value)], i + 1
    if kind == "ident":
        return [{"true": True, "false": False}.get(value, Enum(value))], i + 1
    raise ConfigError(f"config.pbtxt: unexpected {value!r} at offset {pos}")
