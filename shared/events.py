"""Parsing and validation of the open events apps send, single and batched."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _json_string
from typing import Any, NamedTuple

MAX_EVENT_BYTES = 64 * 1024
MAX_BATCH_EVENTS = 100
MAX_BATCH_BYTES = MAX_BATCH_EVENTS * MAX_EVENT_BYTES
MAX_TOKEN_CHARS = 4096

# A GUID in 8-4-4-4-12 form: TrackingIds here, the org ID in target.py.
GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_ZERO_GUID = "00000000-0000-0000-0000-000000000000"
_STATUS_WORDS = {"1": 1, "opened": 1, "0": 0, "clicked": 0}
_JSON_TYPES = ("application/json", "text/json")


@dataclass(frozen=True)
class FieldError:
    """One rejected field: where it is and why."""

    field: str
    detail: str


class BadRequest(Exception):
    """The request cannot be accepted as sent (4xx); CIJ is not called."""


class InvalidEvent(BadRequest):
    """The request or one event in it breaks the contract; CIJ is not called."""

    def __init__(self, *errors: FieldError) -> None:
        super().__init__("; ".join(f"{e.field}: {e.detail}" for e in errors))
        self.errors = errors


class PayloadTooLarge(BadRequest):
    """The body exceeds the cap for its route."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"body exceeds {limit} bytes")
        self.limit = limit


class UnsupportedMediaType(BadRequest):
    """The body is declared as something other than JSON."""


class OpenEvent(NamedTuple):
    """A validated push interaction, in the canonical form CIJ receives (immutable)."""

    tracking_id: str
    device_token: str
    status: int

    def to_upstream(self) -> dict[str, Any]:
        """The exact body CIJ receives for this event."""
        return {
            "TrackingId": self.tracking_id,
            "DeviceToken": self.device_token,
            "PushNotificationStatus": self.status,
        }

    def upstream_json(self) -> bytes:
        """`to_upstream()` as compact JSON, byte for byte what json.dumps(..., separators=(",", ":"))
        gives (a property test holds them equal) in a third of its time: it runs for every event."""
        return (
            f'{{"TrackingId":{_json_string(self.tracking_id)},"DeviceToken":{_json_string(self.device_token)},'
            f'"PushNotificationStatus":{self.status:d}}}'
        ).encode()


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate key")
    return obj


# Built once: json.loads(..., object_pairs_hook=...) would build a decoder for every body.
_DECODER = json.JSONDecoder(object_pairs_hook=_reject_duplicates)


def check_media_type(content_type: str | None) -> None:
    """Accept a missing Content-Type or any JSON media type; refuse the rest."""
    if not content_type or content_type == "application/json":  # what nearly every app sends
        return
    media = content_type.split(";", 1)[0].strip().lower()
    if media not in _JSON_TYPES and not (media.startswith("application/") and media.endswith("+json")):
        raise UnsupportedMediaType(media)


# The detail for an empty body, the way a body sent without Content-Length (chunked) arrives.
EMPTY_BODY = "is empty; send the JSON with a Content-Length header (a chunked upload arrives empty)"


def decode_json(body: bytes, limit: int) -> Any:
    """Decode a JSON body within `limit` bytes, refusing anything ambiguous or malformed."""
    if len(body) > limit:
        raise PayloadTooLarge(limit)
    if not body:  # also how a chunked upload arrives: the host passes on no body without Content-Length
        raise InvalidEvent(FieldError("body", EMPTY_BODY))
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidEvent(FieldError("body", "is not valid UTF-8")) from None
    try:
        return _DECODER.decode(text)
    except RecursionError:
        raise InvalidEvent(FieldError("body", "is nested too deeply")) from None
    except ValueError as exc:  # JSONDecodeError, duplicate keys, oversized integers
        reason = "has a duplicate key" if str(exc) == "duplicate key" else "is not valid JSON"
        raise InvalidEvent(FieldError("body", reason)) from None


def _tracking_id(value: Any) -> str:
    if not isinstance(value, str) or not GUID.fullmatch(value):
        raise ValueError("must be a GUID string in 8-4-4-4-12 form")
    if value == _ZERO_GUID:
        raise ValueError("must not be the all-zero GUID (CIJ test sends are not tracked)")
    return value


def _device_token(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("must be a non-empty string")
    if len(value) > MAX_TOKEN_CHARS:
        raise ValueError(f"must be at most {MAX_TOKEN_CHARS} characters")
    # isprintable() is False for control, format, surrogate, unassigned and separator characters
    # except the ASCII space, which is checked separately.
    if not value.isprintable() or " " in value:
        raise ValueError("must not contain whitespace or control characters")
    return value


def _status(value: Any) -> int:
    if type(value) is int and value in (0, 1):  # `type is int`: JSON true must not pass as 1
        return value
    # ASCII only: the Kelvin sign "\u212a" lower-cases to "k" and is not a documented spelling.
    if isinstance(value, str) and value.isascii() and value.lower() in _STATUS_WORDS:
        return _STATUS_WORDS[value.lower()]
    raise ValueError('must be 1, "1" or "Opened" (opened), or 0, "0" or "Clicked" (clicked)')


_FIELDS = (("TrackingId", _tracking_id), ("DeviceToken", _device_token), ("PushNotificationStatus", _status))


def validate_event(obj: Any) -> OpenEvent:
    """Turn one decoded JSON value into an OpenEvent, or raise InvalidEvent naming every bad field."""
    if not isinstance(obj, dict):
        raise InvalidEvent(FieldError("body", "must be a JSON object"))
    try:  # the common case, every field present and valid; otherwise name every bad one below
        return OpenEvent(
            _tracking_id(obj["TrackingId"]),
            _device_token(obj["DeviceToken"]),
            _status(obj["PushNotificationStatus"]),
        )
    except (KeyError, ValueError):
        pass
    values: list[Any] = []
    errors: list[FieldError] = []
    for name, check in _FIELDS:
        if name not in obj:
            errors.append(FieldError(name, "is required"))
            continue
        try:
            values.append(check(obj[name]))
        except ValueError as exc:
            errors.append(FieldError(name, str(exc)))
    if errors:
        raise InvalidEvent(*errors)
    return OpenEvent(*values)


# The shape nearly every app sends: the three members in contract order, an ASCII token with no
# escapes, any JSON whitespace. One compiled pattern reads it in a third of the time the decoder
# and validator take; every other body goes the general way. Bytes that match are always a valid
# event with the same meaning (a property test holds the two ways equal on near-canonical bodies).
_CANONICAL = re.compile(
    (  # each space: optional JSON whitespace; token: printable ASCII but space, quote, backslash
        rf' \{{ "TrackingId" : "({GUID.pattern})" ,'
        rf' "DeviceToken" : "([!#-\[\]-~]{{1,{MAX_TOKEN_CHARS}}})" ,'
        r' "PushNotificationStatus" : (0|1|"(?:0|1|(?i:opened|clicked))") \} '
    ).replace(" ", r"[ \t\n\r]*"),
    re.ASCII,
)
_STATUS_LITERALS = {"1": 1, "0": 0}


def read_canonical(body: bytes) -> OpenEvent | None:
    """The event when `body` has the canonical shape, else None (the general path decides)."""
    # Latin-1 maps each byte to one character and cannot fail; the pattern matches ASCII only.
    match = _CANONICAL.fullmatch(body.decode("latin-1"))
    if match is None or match[1] == _ZERO_GUID:
        return None
    status = _STATUS_LITERALS.get(match[3])
    if status is None:
        status = _STATUS_WORDS[match[3].strip('"').lower()]
    return OpenEvent(match[1], match[2], status)


def parse_event(body: bytes, content_type: str | None = None) -> OpenEvent:
    """Parse the body of `POST /api/events`."""
    check_media_type(content_type)
    if len(body) <= MAX_EVENT_BYTES and (event := read_canonical(body)) is not None:
        return event
    return validate_event(decode_json(body, MAX_EVENT_BYTES))


def parse_batch(body: bytes, content_type: str | None = None) -> list[OpenEvent | InvalidEvent]:
    """Parse the body of `POST /api/events/batch`: each item validated on its own, in order."""
    check_media_type(content_type)
    items = decode_json(body, MAX_BATCH_BYTES)
    if not isinstance(items, list):
        raise InvalidEvent(FieldError("body", "must be a JSON array of events"))
    if not 1 <= len(items) <= MAX_BATCH_EVENTS:
        raise InvalidEvent(FieldError("body", f"must hold 1 to {MAX_BATCH_EVENTS} events"))
    results: list[OpenEvent | InvalidEvent] = []
    for item in items:
        try:
            results.append(validate_event(item))
        except InvalidEvent as exc:
            results.append(exc)
    return results
