"""Reading what sits on the queues: a relay message, or one given up on wrapped in an envelope with
the reason. Described without the device token (only the relay's fingerprint of it)."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from shared.delivery_queue import decode_message
from shared.events import InvalidEvent
from shared.relay import fingerprint

# Keys an envelope may keep the original message under (as an object, JSON text or base64 text).
_ORIGINAL_KEYS = ("message", "original", "originalMessage", "body")
_REASON_KEYS = ("reason", "error", "why")


@dataclass(frozen=True)
class Stored:
    """One queue message as the operator sees it. `original` is the relay message to replay (None
    when the message is not one of the relay's); `reason` why it was given up on, when recorded."""

    original: bytes | None
    reason: str | None
    tracking_id: str | None = None
    device: str | None = None  # fingerprint, never the token
    received_at: str | None = None
    status: int | None = None

    @property
    def key(self) -> tuple[str | None, str | None, int | None]:
        """What identifies one event (the same open of the same notification on the same device):
        the same key twice is one event stored twice, e.g. an app's retry."""
        return (self.tracking_id, self.device, self.status)


def _text(content: str | bytes) -> bytes:
    """The message's bytes: base64-decoded when it is base64 (the host's default encoding)."""
    raw = content.encode() if isinstance(content, str) else content
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        return raw


def _as_relay_message(value: Any) -> bytes | None:
    """`value` as the bytes of a relay message, if it is one (object, JSON text or base64 text)."""
    if isinstance(value, dict):
        candidate = json.dumps(value, separators=(",", ":")).encode()
    elif isinstance(value, str):
        candidate = _text(value)
    else:
        return None
    try:
        decode_message(candidate)
    except InvalidEvent:
        return None
    return candidate


def read(content: str | bytes) -> Stored:
    """Interpret one message's content (as stored, base64 or not)."""
    body = _text(content)
    try:
        data: Any = json.loads(body)
    except ValueError:
        return Stored(None, None)
    original = _as_relay_message(data) if isinstance(data, dict) and "event" in data else None
    reason = None
    if original is None and isinstance(data, dict):
        reason = next((str(data[k]) for k in _REASON_KEYS if isinstance(data.get(k), str | dict)), None)
        original = next(
            (found for k in _ORIGINAL_KEYS if (found := _as_relay_message(data.get(k))) is not None), None
        )
    if original is None:
        return Stored(None, reason)
    event, received_at = decode_message(original)
    device = fingerprint(event.device_token)
    return Stored(original, reason, event.tracking_id, device, received_at, event.status)
