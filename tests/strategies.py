"""Hypothesis generators of what apps may send, shared by the property tests, and their settings."""

from __future__ import annotations

import json
import unicodedata
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from shared.events import MAX_TOKEN_CHARS, OpenEvent

SEEDED = settings(
    derandomize=True,
    database=None,
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FIELDS = ("TrackingId", "DeviceToken", "PushNotificationStatus")

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
