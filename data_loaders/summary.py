"""The one-line summary every command prints (or prints as JSON with --json)."""

from __future__ import annotations

import sys
from typing import Any

import orjson


def format_summary(command: str, fields: dict[str, Any]) -> str:
    parts = []
    for key, value in fields.items():
        if isinstance(value, dict):
            value = ",".join(f"{k}={v}" for k, v in value.items()) or "0"
        elif isinstance(value, float):
            value = f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
        elif isinstance(value, int):
            value = f"{value:,}"
        parts.append(f"{key}={value}")
    return f"{command}: " + " ".join(parts)


def print_summary(command: str, fields: dict[str, Any], as_json: bool = False, err: bool = False) -> None:
    """err: on stderr, for commands whose stdout carries data (it must stay parseable)."""
    if as_json:
        text = orjson.dumps({"command": command, **fields}, default=str).decode()
    else:
        text = format_summary(command, fields)
    print(text, file=sys.stderr if err else sys.stdout)
