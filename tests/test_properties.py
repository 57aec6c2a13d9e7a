"""Property tests of the event validator (shared/events.py), seeded and bounded."""

from __future__ import annotations

import json
import unicodedata
import uuid
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from devserver.emulator import follows_contract
from shared.events import (
    MAX_BATCH_EVENTS,
    MAX_EVENT_BYTES,
    MAX_TOKEN_CHARS,
    BadRequest,
    InvalidEvent,
    OpenEvent,
    PayloadTooLarge,
    UnsupportedMediaType,
    decode_json,
    parse_batch,
    parse_event,
    read_canonical,
    validate_event,
)

SEEDED = settings(
    derandomize=True,
    database=None,
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FIELDS = ("TrackingId", "DeviceToken", "PushNotificationStatus")

# --- generators of what apps may send -------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**40), 10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
content_types = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "",
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "text/json",
            "application/problem+json",
            "application/vnd.app+json;v=2",
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonp",
            ";",
            "application/",
        ]
    ),
    st.text(max_size=40),
)


def _token_char(c: str) -> bool:
    return unicodedata.category(c)[0] not in "CZ"


URLSAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
guids = (
    st.uuids()
    .filter(lambda u: u.int != 0)
    .flatmap(lambda u: st.sampled_from([str(u), str(u).upper(), str(u)[:9] + str(u)[9:].upper()]))
)
tokens = st.one_of(
    st.text(st.characters(codec="utf-8").filter(_token_char), min_size=1, max_size=64),
    st.from_regex(r"\A[0-9a-f]{64}\Z"),  # APNs
    st.tuples(st.text(URLSAFE, min_size=22, max_size=22), st.text(URLSAFE, min_size=100, max_size=140)).map(
        lambda parts: f"{parts[0]}:APA91{parts[1]}"  # FCM
    ),
    st.integers(MAX_TOKEN_CHARS - 2, MAX_TOKEN_CHARS).map(lambda n: "x" * n),
)


@st.composite
def status_forms(draw: st.DrawFn) -> tuple[Any, int]:
    """(what the app sends, the integer CIJ must receive)."""
    value = draw(st.sampled_from([0, 1]))
    form = draw(st.sampled_from(["int", "digit", "word"]))
    if form == "int":
        return value, value
    if form == "digit":
        return str(value), value
    word = "opened" if value else "clicked"
    return "".join(c.upper() if draw(st.booleans()) else c for c in word), value


@st.composite
def valid_events(draw: st.DrawFn) -> tuple[dict[str, Any], OpenEvent]:
    """A valid event as an app may send it (extra members, any order) and the event it must become."""
    tracking_id, token = draw(guids), draw(tokens)
    sent_status, status = draw(status_forms())
    event: dict[str, Any] = {
        "TrackingId": tracking_id,
        "DeviceToken": token,
        "PushNotificationStatus": sent_status,
    }
    extras = draw(
        st.dictionaries(st.text(max_size=10).filter(lambda k: k not in FIELDS), json_values, max_size=3)
    )
    items = list({**event, **extras}.items())
    order = draw(st.permutations(range(len(items))))
    return dict(items[i] for i in order), OpenEvent(tracking_id, token, status)


def serialise(event: Any, draw_style: tuple[bool, int | None]) -> bytes:
    ensure_ascii, indent = draw_style
    return json.dumps(event, ensure_ascii=ensure_ascii, indent=indent).encode()


styles = st.tuples(st.booleans(), st.sampled_from([None, 0, 2]))

bad_values = {
    "TrackingId": st.one_of(
        st.just("00000000-0000-0000-0000-000000000000"),
        st.uuids().map(lambda u: str(u).replace("-", "")),
        st.uuids().map(lambda u: "{" + str(u) + "}"),
        st.uuids().map(lambda u: str(u) + "\n"),
        st.uuids().map(lambda u: " " + str(u)),
        st.uuids().map(lambda u: str(u)[:-1] + "z"),
        st.text(max_size=35),
        st.integers(),
        st.none(),
        st.booleans(),
        st.lists(st.integers(), max_size=2),
    ),
    "DeviceToken": st.one_of(
        st.just(""),
        st.just("x" * (MAX_TOKEN_CHARS + 1)),
        st.tuples(
            st.text(min_size=0, max_size=5), st.characters(codec="utf-8").filter(lambda c: not _token_char(c))
        ).map(lambda t: t[0] + t[1] + "a"),
        st.integers(),
        st.none(),
        st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
    ),
    "PushNotificationStatus": st.one_of(
        st.sampled_from(
            [True, False, None, 2, -1, 1.0, 0.0, 1.5, "2", "", " 1", "1 ", "open", "yes", "opened\n"]
        ),
        st.integers().filter(lambda n: n not in (0, 1)),
        st.text(max_size=8).filter(lambda s: s.lower() not in ("0", "1", "opened", "clicked")),
        st.lists(st.integers(0, 1), max_size=2),
    ),
}


# --- properties -----------------------------------------------------------------------------


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


@SEEDED
@given(
    st.lists(
        st.one_of(valid_events().map(lambda s: s[0]), json_values, st.builds(dict)),
        min_size=1,
        max_size=MAX_BATCH_EVENTS,
    )
)
def test_batch_items_are_judged_one_by_one_in_order(items):
    results = parse_batch(json.dumps(items).encode(), "application/json")
    assert len(results) == len(items)
    for item, result in zip(items, results, strict=True):
        try:
            expected: OpenEvent | None = validate_event(item)
        except InvalidEvent:
            expected = None
        if expected is None:
            assert isinstance(result, InvalidEvent)
        else:
            assert result == expected


@SEEDED
@given(st.integers(MAX_BATCH_EVENTS + 1, 3 * MAX_BATCH_EVENTS))
def test_batches_over_the_count_cap_are_refused_whole(count):
    items = [{"TrackingId": str(uuid.uuid4()), "DeviceToken": "t", "PushNotificationStatus": 1}] * count
    try:
        parse_batch(json.dumps(items).encode())
    except InvalidEvent as exc:
        assert [e.field for e in exc.errors] == ["body"]
    else:
        raise AssertionError("an oversized batch was accepted")
