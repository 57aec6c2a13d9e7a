"""Property tests of the parsers' robustness (shared/events.py): any bytes and any JSON end in a
refusal or an event, never another exception; non-finite and over-long numbers are refused anywhere;
the value count taken before decoding never undercounts. Seeded, bounded."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.events import (
    MAX_NUMBER_CHARS,
    BadRequest,
    InvalidEvent,
    count_tokens,
    parse_batch,
    parse_event,
)
from tests.strategies import SEEDED, content_types, json_values, serialise, styles, valid_events


@SEEDED
@given(st.binary(max_size=2048), content_types)
def test_any_bytes_with_any_content_type_raise_only_bad_request(body, content_type):
    for parse in (parse_event, parse_batch):
        try:
            parse(body, content_type)
        except BadRequest:
            pass


@SEEDED
@given(json_values, content_types, styles)
def test_any_json_value_raises_only_bad_request(value, content_type, style):
    for parse in (parse_event, parse_batch):
        try:
            parse(serialise(value, style), content_type)
        except BadRequest:
            pass


@settings(derandomize=True, database=None, max_examples=40, deadline=None)
@given(st.integers(1, 40_000), st.sampled_from([(b"[", b"]"), (b'{"a":', b"}"), (b'{"TrackingId":[', b"]}")]))
def test_deep_nesting_is_a_bad_request_not_a_crash(depth, brackets):
    opening, closing = brackets
    body = opening * depth + b"1" + closing * depth
    for parse in (parse_event, parse_batch):
        try:
            parse(body, "application/json")
        except BadRequest:
            pass


NON_FINITE = [
    "NaN",
    "Infinity",
    "-Infinity",
    "1e999",
    "-1E400",
    "12.5e01234567890",
    "1" * (MAX_NUMBER_CHARS + 1),
]


def values(value: Any) -> int:
    """How many JSON values (and object keys) `value` holds, itself included."""
    if isinstance(value, dict):
        return 1 + sum(1 + values(item) for item in value.values())
    if isinstance(value, list):
        return 1 + sum(values(item) for item in value)
    return 1


@SEEDED
@given(valid_events(), json_values, st.sampled_from(NON_FINITE), st.booleans())
def test_a_non_finite_or_over_long_number_anywhere_is_refused(sent, holder, number, batched):
    event, _ = sent
    marker = "__number__"
    # the number goes into an ignored member, somewhere inside an arbitrary JSON value
    nested: Any = marker
    for container in (holder if isinstance(holder, list | dict) else [],):
        nested = [container, marker] if isinstance(container, list) else {**container, "n": marker}
    text = json.dumps({**event, "Ignored": nested}).replace(json.dumps(marker), number, 1)
    body = f"[{text}]" if batched else text
    try:
        result = parse_batch(body.encode()) if batched else parse_event(body.encode())
    except InvalidEvent as exc:
        assert [e.field for e in exc.errors] == ["body"]
        return
    assert batched and isinstance(result[0], InvalidEvent), f"accepted {number} in {body[:200]}"


@SEEDED
@given(json_values, styles, st.data())
def test_the_count_before_decoding_refuses_only_what_holds_too_many_values(value, style, data):
    body, held = serialise(value, style), values(value)
    limit = data.draw(st.integers(0, 3 * held + 2))
    over = count_tokens(body, limit) > limit
    if held > limit:
        assert over, "a body with too many values passed the count"
    if 2 * held + 1 <= limit:  # a string counts once more than its value: never more than that
        assert not over, "a body well within the limit was refused"
