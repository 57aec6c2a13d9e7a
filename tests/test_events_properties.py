"""Property tests of the event validator (shared/events.py): what is accepted becomes its canonical
form, what is refused names its fields, the fast path agrees with the general one. Seeded, bounded."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from devserver.emulator import follows_contract
from shared.events import (
    MAX_EVENT_BYTES,
    InvalidEvent,
    PayloadTooLarge,
    UnsupportedMediaType,
    decode_json,
    parse_event,
    read_canonical,
    validate_event,
)
from tests.strategies import (
    FIELDS,
    SEEDED,
    bad_values,
    content_types,
    guids,
    json_values,
    serialise,
    status_forms,
    styles,
    tokens,
    valid_events,
)


@SEEDED
@given(
    valid_events(), styles, content_types.filter(lambda t: t in (None, "", "application/json", "text/json"))
)
def test_every_documented_event_is_accepted_as_its_canonical_form(sent, style, content_type):
    event, expected = sent
    assert parse_event(serialise(event, style), content_type) == expected


json_space = st.text(" \t\n\r", max_size=2)
ascii_tokens = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=12)
status_literals = st.sampled_from(["-0", "1.0", "1e0", "01", "true", "null", '"\\u004fpened"', '"1 "'])


def mostly(valid: st.SearchStrategy[Any], invalid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`valid` three times in four, so that whole bodies are often valid."""
    return st.integers(0, 3).flatmap(lambda n: invalid if n == 0 else valid)


@st.composite
def near_canonical_bodies(draw: st.DrawFn) -> bytes:
    """The three members in contract order with any JSON whitespace, each value valid or not."""
    values = (
        json.dumps(draw(mostly(guids, bad_values["TrackingId"]))),
        json.dumps(
            draw(mostly(st.one_of(tokens, ascii_tokens), bad_values["DeviceToken"])),
            ensure_ascii=draw(st.booleans()),
        ),
        draw(
            mostly(
                status_forms().map(lambda form: json.dumps(form[0])),
                st.one_of(bad_values["PushNotificationStatus"].map(json.dumps), status_literals),
            )
        ),
    )
    members = [
        f"{draw(json_space)}{json.dumps(name)}{draw(json_space)}:{draw(json_space)}{value}"
        for name, value in zip(FIELDS, values, strict=True)
    ]
    body = members[0] + "".join(draw(json_space) + "," + member for member in members[1:])
    return f"{draw(json_space)}{{{body}{draw(json_space)}}}{draw(json_space)}".encode()


def _outcome(parse: Any, body: bytes) -> Any:
    try:
        return parse(body)
    except InvalidEvent as exc:
        return exc.errors


@settings(SEEDED, max_examples=600)
@given(near_canonical_bodies())
def test_the_fast_path_agrees_with_the_general_decoder_and_validator(body):
    general = _outcome(lambda raw: validate_event(decode_json(raw, MAX_EVENT_BYTES)), body)
    assert _outcome(parse_event, body) == general
    if read_canonical(body) is not None:  # what the fast path takes, the general path accepts alike
        assert read_canonical(body) == general


@SEEDED
@given(valid_events(), st.data())
def test_breaking_fields_names_exactly_those_fields(sent, data):
    event, _ = sent
    broken = data.draw(st.sets(st.sampled_from(FIELDS), min_size=1))
    for field in broken:
        if data.draw(st.booleans()):
            del event[field]
        else:
            event[field] = data.draw(bad_values[field])
    try:
        parse_event(json.dumps(event).encode())
    except InvalidEvent as exc:
        assert {e.field for e in exc.errors} == broken
    else:
        raise AssertionError(f"accepted {event!r}")


@SEEDED
@given(valid_events(), styles)
def test_the_forwarded_body_round_trips(sent, style):
    _, expected = sent
    upstream = expected.to_upstream()
    assert list(upstream) == list(FIELDS)
    assert type(upstream["PushNotificationStatus"]) is int
    assert follows_contract(upstream)
    assert parse_event(serialise(upstream, style)) == expected
    forwarded = expected.upstream_json()  # the exact bytes CIJ receives
    assert forwarded == json.dumps(upstream, separators=(",", ":")).encode()
    assert json.loads(forwarded) == upstream and parse_event(forwarded) == expected


@SEEDED
@given(valid_events(), st.sampled_from((*FIELDS, "Extra")), json_values)
def test_a_duplicate_member_anywhere_in_the_event_is_refused(sent, key, value):
    event, _ = sent
    text = json.dumps(event)
    duplicated = text[:-1] + (", " if event else "") + f"{json.dumps(key)}: {json.dumps(value)}" + "}"
    if key == "Extra" and "Extra" not in event:
        duplicated = duplicated[:-1] + f", {json.dumps(key)}: 1" + "}"
    try:
        parse_event(duplicated.encode())
    except InvalidEvent as exc:
        assert [(e.field, e.detail) for e in exc.errors] == [("body", "has a duplicate key")]
    else:
        raise AssertionError("a duplicate member was accepted")


@SEEDED
@given(valid_events())
def test_size_cap_is_exact(sent):
    event, expected = sent
    raw = json.dumps(event).encode()
    assume(len(raw) < MAX_EVENT_BYTES)
    padded = raw + b" " * (MAX_EVENT_BYTES - len(raw))
    assert parse_event(padded) == expected
    try:
        parse_event(padded + b" ")
    except PayloadTooLarge:
        pass
    else:
        raise AssertionError("a body over the cap was accepted")


@SEEDED
@given(valid_events(), content_types)
def test_non_json_media_types_are_refused_before_the_body_is_read(sent, content_type):
    media = (content_type or "").split(";", 1)[0].strip().lower()
    is_json = not content_type or (  # no Content-Type: read as JSON
        media in ("application/json", "text/json")
        or (media.startswith("application/") and media.endswith("+json"))
    )
    event, expected = sent
    try:
        result = parse_event(json.dumps(event).encode(), content_type)
    except UnsupportedMediaType:
        assert not is_json
    else:
        assert is_json and result == expected
