"""Parsing and validation of the open events apps send, single and batched."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _json_string
from typing import Any, NamedTuple

MAX_EVENT_BYTES = 64 * 1024
MAX_BATCH_EVENTS = 100
MAX_TOKEN_CHARS = 4096
# The largest event the contract allows, as apps send it (a 4096-character token, the longest status
# word, indented JSON) is under 4.3 KB; real ones (APNs, FCM tokens) are 150-300 bytes. A batch item
# may take 8 KiB, room for a few extra members: 100 of them are 800 KiB, and no more is read.
MAX_BATCH_ITEM_BYTES = 8 * 1024
MAX_BATCH_BYTES = MAX_BATCH_EVENTS * MAX_BATCH_ITEM_BYTES
# Structure is bounded before decoding: a body holds at most this many tokens (strings, keys
# included, and the `[`, `{` and `,` outside them: an upper bound of its values), so many tiny
# values cannot cost more than a real body does. A real event has 9.
MAX_EVENT_TOKENS = 256
MAX_BATCH_TOKENS = MAX_BATCH_EVENTS * MAX_EVENT_TOKENS
MAX_NUMBER_CHARS = 100  # a number literal longer than this is refused, wherever it is

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


class _Refused(ValueError):
    """A value the decoder refuses while decoding; `reason` completes "body ..."."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _Refused("has a duplicate key")
    return obj


def _non_finite(literal: str) -> Any:
    raise _Refused("has a number that is not finite (NaN or Infinity)")


def _float(literal: str) -> float:
    value = float(literal) if len(literal) <= MAX_NUMBER_CHARS else math.inf
    if not math.isfinite(value):  # 1e999 decodes to infinity
        raise _Refused(f"has a number that is not finite or longer than {MAX_NUMBER_CHARS} characters")
    return value


def _int(literal: str) -> int:
    if len(literal) > MAX_NUMBER_CHARS:
        raise _Refused(f"has a number longer than {MAX_NUMBER_CHARS} characters")
    return int(literal)


# Built once: json.loads(..., object_pairs_hook=...) would build a decoder for every body.
_DECODER = json.JSONDecoder(
    object_pairs_hook=_reject_duplicates, parse_constant=_non_finite, parse_float=_float, parse_int=_int
)


def count_tokens(body: bytes, limit: int) -> int:
    """Count the strings (keys included), `[`, `{` and `,` of a JSON body without decoding it: an
    upper bound of its values, compared with `limit` by the caller. Plain byte counts first; only a
    body they put over `limit` is counted again with its strings set aside (escapes removed, then
    split on the quotes that remain), so that brackets and commas inside strings do not count; that
    split is cheap, as it is made only when there are at most `limit` strings. Linear, C-speed."""
    structure = body.count(b"[") + body.count(b"{") + body.count(b",") + 1
    if structure + body.count(b'"') // 2 <= limit:  # nearly every body: nothing is allocated
        return structure + body.count(b'"') // 2
    unescaped = body.replace(b"\\\\", b"").replace(b'\\"', b"") if b"\\" in body else body
    strings = unescaped.count(b'"') // 2
    if strings > limit:
        return strings
    outside = b"".join(unescaped.split(b'"')[::2])  # commas and brackets inside strings do not count
    return strings + outside.count(b"[") + outside.count(b"{") + outside.count(b",") + 1


def check_media_type(content_type: str | None) -> None:
    """Accept a missing Content-Type or any JSON media type; refuse the rest."""
    if not content_type or content_type == "application/json":  # what nearly every app sends
        return
    media = content_type.split(";", 1)[0].strip().lower()
    if media not in _JSON_TYPES and not (media.startswith("application/") and media.endswith("+json")):
        raise UnsupportedMediaType(media)


# The detail for an empty body, the way a body sent without Content-Length (chunked) arrives.
EMPTY_BODY = "is empty; send the JSON with a Content-Length header (a chunked upload arrives empty)"


def decode_json(body: bytes, limit: int, max_tokens: int = MAX_EVENT_TOKENS) -> Any:
    """Decode a JSON body within `limit` bytes and `max_tokens` tokens (both checked before
    decoding), refusing anything ambiguous, malformed or non-finite."""
    if len(body) > limit:
        raise PayloadTooLarge(limit)
    if not body:  # also how a chunked upload arrives: the host passes on no body without Content-Length
        raise InvalidEvent(FieldError("body", EMPTY_BODY))
    if len(body) > max_tokens and count_tokens(body, max_tokens) > max_tokens:
        raise InvalidEvent(FieldError("body", f"has more than {max_tokens} values"))
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidEvent(FieldError("body", "is not valid UTF-8")) from None
    try:
        return _DECODER.decode(text)
    except RecursionError:
        raise InvalidEvent(FieldError("body", "is nested too deeply")) from None
    except _Refused as exc:  # duplicate keys, non-finite or oversized numbers
        raise InvalidEvent(FieldError("body", exc.reason)) from None
    except ValueError:  # JSONDecodeError
        raise InvalidEvent(FieldError("body", "is not valid JSON")) from None


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
    items = decode_json(body, MAX_BATCH_BYTES, MAX_BATCH_TOKENS)
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
