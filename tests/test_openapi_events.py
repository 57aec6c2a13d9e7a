"""openapi.yaml's Event schema accepts exactly what shared/events.py accepts, and the batch bounds agree."""

from __future__ import annotations

import sys
import unicodedata
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.events import MAX_BATCH_EVENTS, MAX_TOKEN_CHARS, InvalidEvent, validate_event
from tests.openapi_spec import GUID, SPEC, resolve, validator

PROPERTIES = settings(derandomize=True, database=None, max_examples=400, deadline=None)


EVENT = SPEC["components"]["schemas"]["Event"]
EVENT_VALIDATOR = validator(EVENT)
TOKEN = EVENT["properties"]["DeviceToken"]


def accepted_by_code(obj: Any) -> bool:
    try:
        validate_event(obj)
    except InvalidEvent:
        return False
    return True


def test_device_token_characters_agree_with_the_validator_for_every_code_point():
    """`[^\\p{C}\\p{Z}]`, read with Python's Unicode database, is exactly what the validator allows."""
    assert TOKEN["pattern"] == r"^[^\p{C}\p{Z}]+$"
    assert (TOKEN["minLength"], TOKEN["maxLength"]) == (1, MAX_TOKEN_CHARS)
    base = {"TrackingId": GUID, "PushNotificationStatus": 1}
    disagree = [
        hex(code)
        for code in range(sys.maxunicode + 1)
        if accepted_by_code({**base, "DeviceToken": chr(code)})
        != (unicodedata.category(chr(code))[0] not in "CZ")
    ]
    assert disagree == []


def test_device_token_length_bounds_agree():
    base = {"TrackingId": GUID, "PushNotificationStatus": 1}
    for length, ok in ((0, False), (1, True), (MAX_TOKEN_CHARS, True), (MAX_TOKEN_CHARS + 1, False)):
        event = {**base, "DeviceToken": "a" * length}
        assert accepted_by_code(event) is ok is EVENT_VALIDATOR.is_valid(event), length


# Characters Python's Unicode database (14.0) has assigned: the Rust validator may know newer ones.
ASSIGNED = st.characters(codec="utf-8").filter(lambda c: unicodedata.category(c) != "Cn")
STATUS_WORDS = ("opened", "clicked", "0", "1")


@st.composite
def any_case(draw: st.DrawFn) -> str:
    word = draw(st.sampled_from(STATUS_WORDS))
    variants = {"k": ("k", "K", "\u212a")}  # KELVIN SIGN lower-cases to "k"
    return "".join(draw(st.sampled_from(variants.get(c, (c.lower(), c.upper())))) for c in word)


tracking_ids = st.one_of(
    st.uuids().map(str),
    st.uuids().map(lambda u: str(u).upper()),
    st.just("00000000-0000-0000-0000-000000000000"),
    st.uuids().map(lambda u: str(u)[:-1] + "g"),
    st.uuids().map(lambda u: "{" + str(u) + "}"),
    st.uuids().map(lambda u: str(u) + "\n"),
    st.uuids().map(lambda u: u.hex),
    st.text(ASSIGNED, max_size=40),
    st.integers(),
    st.none(),
)
device_tokens = st.one_of(
    st.text(ASSIGNED, min_size=1, max_size=30),
    st.text(st.characters(codec="ascii"), max_size=30),
    st.from_regex(r"\A[0-9a-f]{64}\Z"),
    st.integers(),
    st.lists(st.text(max_size=3), max_size=2),
)
statuses = st.one_of(
    st.sampled_from([0, 1, 2, -1, True, False, 0.0, 1.5, None, "", "2", " 1", "1 ", "opened\n", "Open"]),
    any_case(),
    st.integers(),
    st.text(ASSIGNED, max_size=8),
)
events = st.dictionaries(
    st.sampled_from(["TrackingId", "DeviceToken", "PushNotificationStatus", "Extra"]),
    st.one_of(tracking_ids, device_tokens, statuses),
    max_size=4,
) | st.fixed_dictionaries(
    {"TrackingId": tracking_ids, "DeviceToken": device_tokens, "PushNotificationStatus": statuses}
)


@PROPERTIES
@given(events)
def test_the_event_schema_accepts_exactly_what_the_validator_accepts(event):
    assert EVENT_VALIDATOR.is_valid(event) == accepted_by_code(event), event


@PROPERTIES
@given(st.sampled_from(["TrackingId", "DeviceToken", "PushNotificationStatus"]), st.data())
def test_each_field_varied_alone_is_judged_alike_by_schema_and_validator(field, data):
    event = {"TrackingId": GUID, "DeviceToken": "t0k3n", "PushNotificationStatus": 1}
    event[field] = data.draw(
        {"TrackingId": tracking_ids, "DeviceToken": device_tokens, "PushNotificationStatus": statuses}[field]
    )
    assert EVENT_VALIDATOR.is_valid(event) == accepted_by_code(event), event


@PROPERTIES
@given(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5), st.lists(st.integers())))
def test_non_objects_are_refused_by_both(value):
    assert not EVENT_VALIDATOR.is_valid(value) and not accepted_by_code(value)


@settings(derandomize=True, database=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(any_case())
def test_status_words_in_any_letter_case_agree(word):
    event = {"TrackingId": GUID, "DeviceToken": "t", "PushNotificationStatus": word}
    assert EVENT_VALIDATOR.is_valid(event) == accepted_by_code(event), word


def test_batch_request_bounds_match_the_code():
    schema = resolve(SPEC["paths"]["/events/batch"]["post"]["requestBody"]["content"]["application/json"])
    assert (schema["schema"]["minItems"], schema["schema"]["maxItems"]) == (1, MAX_BATCH_EVENTS)
