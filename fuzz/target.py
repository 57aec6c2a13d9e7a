"""The fuzz target: any bytes to either parser. A refusal must be a BadRequest; an acceptance must
agree with an independent reading of the body (the standard library's JSON decoder)."""

from __future__ import annotations

import json
import math
from typing import Any

from shared import events


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    assert len({key for key, _ in pairs}) == len(pairs), "accepted a duplicate key"
    return dict(pairs)


def _finite(value: Any, depth: int = 0) -> None:
    """Fail if an accepted body held a number the contract refuses (non-finite, over-long)."""
    if isinstance(value, float):
        assert math.isfinite(value), "accepted a non-finite number"
    elif isinstance(value, int) and not isinstance(value, bool):
        assert len(str(abs(value))) <= events.MAX_NUMBER_CHARS, "accepted an over-long number"
    elif isinstance(value, dict):
        for item in value.values():
            _finite(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _finite(item, depth + 1)


def _reference(body: bytes) -> Any:
    """The body as the standard library reads it (NaN and Infinity included, so they can be caught)."""
    return json.loads(body.decode("utf-8"), object_pairs_hook=_pairs)


def _event_agrees(event: events.OpenEvent, value: Any) -> None:
    assert isinstance(value, dict), "accepted an event that is not an object"
    assert event.tracking_id == value["TrackingId"] and event.device_token == value["DeviceToken"]
    assert event.status in (0, 1)
    assert json.loads(event.upstream_json()) == event.to_upstream(), "what CIJ receives is not the event"


def check(data: bytes) -> None:
    """One input: the first byte picks the route, the rest is the body."""
    if not data:
        return
    batch, body = data[0] & 1, data[1:]
    try:
        result: Any = events.parse_batch(body) if batch else events.parse_event(body)
    except events.BadRequest:
        return
    cap = events.MAX_BATCH_BYTES if batch else events.MAX_EVENT_BYTES
    assert len(body) <= cap, "accepted a body over the cap"
    value = _reference(body)
    _finite(value)
    if not batch:
        _event_agrees(result, value)
        return
    assert isinstance(value, list) and 1 <= len(value) <= events.MAX_BATCH_EVENTS
    assert len(result) == len(value)
    for item, outcome in zip(value, result, strict=True):
        if isinstance(outcome, events.OpenEvent):
            _event_agrees(outcome, item)
        else:
            assert isinstance(outcome, events.InvalidEvent)
