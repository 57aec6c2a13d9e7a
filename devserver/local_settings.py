"""local.settings.json: its `Values` become environment variables, as Core Tools does."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import StartError

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PATH = ROOT / "local.settings.json"


def read(path: Path, required: bool = False) -> dict[str, str]:
    """The `Values` of a local.settings.json file ({} when an optional one does not exist)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise StartError(f"{path}: no such file") from None
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise StartError(f"{path}: cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise StartError(f"{path}: not valid JSON ({exc})") from None
    values = document.get("Values", {}) if isinstance(document, dict) else None
    if not isinstance(values, dict):
        raise StartError(f'{path}: expected an object with "Values": {{"NAME": "value", ...}}')
    bad = [name for name, value in values.items() if isinstance(value, (dict, list))]
    if bad:
        raise StartError(f"{path}: Values.{bad[0]} must be a string, number or boolean")
    return {name: _text(value) for name, value in values.items() if value is not None}


def _text(value: object) -> str:
    """A setting's value as the host passes it on: JSON booleans as true/false."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def apply(values: dict[str, str]) -> list[str]:
    """Set each value not already in the environment (the environment wins); the names set."""
    applied = [name for name in values if name not in os.environ]
    for name in applied:
        os.environ[name] = values[name]
    return applied
