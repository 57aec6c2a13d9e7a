"""Whatever an app (or anyone holding the key) sends — bodies of many tiny values, deep nesting,
non-finite or huge numbers, bad encodings, any Content-Type — each request gets a documented
answer, fast, and costs bounded memory before it is refused. Drawn by Hypothesis, both routes,
through the functions as the host calls them."""

from __future__ import annotations

import json
import time
import tracemalloc
import uuid

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shared.events import MAX_BATCH_BYTES, MAX_EVENT_BYTES
from tests.conftest import call, sensitive

TOKEN = "hostile-requests-" + "5a" * 20
DOCUMENTED = {202, 400, 413, 415, 429, 502, 503, 504}
FAST = 1.5  # seconds: refusals take milliseconds; generous for a loaded 2-core CI machine
# Peak memory above the baseline for one request: a small multiple of the route's cap (the body,
# its text and the decoded value), never the blow-up of many tiny values.
MEMORY = {"events": 2 * 1024 * 1024, "events/batch": 12 * 1024 * 1024}


def event(**extra: object) -> dict[str, object]:
    return {"TrackingId": str(uuid.uuid4()), "DeviceToken": TOKEN, "PushNotificationStatus": 1, **extra}


def tiny_values(value: bytes, count: int) -> bytes:
    return b"[" + b",".join([value] * count) + b"]"


def in_event(raw: bytes) -> bytes:
    """A valid event with `raw` (any JSON text, or not) as the value of an extra member."""
    return json.dumps(event()).encode()[:-1] + b', "extra": ' + raw + b"}"


def nested(depth: int, opening: bytes, closing: bytes) -> bytes:
    return opening * depth + b"1" + closing * depth


numbers = st.sampled_from(
    [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999999", b"1e-999999", b"9" * 101, b"9" * 5000,
     b"-" + b"1" * 200, b"0." + b"0" * 200 + b"1", b"1E400", b"12.5e01234567890"]
)  # fmt: skip
bodies = st.one_of(
    st.tuples(
        st.sampled_from([b"1", b'""', b"[]", b"{}", b"null", b'"a,[{"', b"0.5", b'{"a":[]}']),
        st.integers(1, 300_000),
    ).map(lambda t: tiny_values(*t)),
    st.tuples(
        st.integers(1, 300_000), st.sampled_from([(b"[", b"]"), (b'{"a":', b"}"), (b'[{"b":[', b"]}]")])
    ).map(lambda t: nested(t[0], *t[1])),
    numbers.map(in_event),
    numbers.map(lambda n: b"[" + in_event(n) + b"]"),
    st.integers(0, 900_000).map(lambda n: in_event(b'"' + b"x" * n + b'"')),
    st.integers(0, 300_000).map(lambda n: in_event(b'"' + b'\\"' * n + b'"')),
    st.integers(1, 2000).map(lambda n: json.dumps([event() for _ in range(n)]).encode()),
    st.binary(max_size=4096),
    st.sampled_from([b"", b"\xef\xbb\xbf{}", b"\xff\xfe", b"\x00" * 100, b'{"a":1,"a":2}']),
    st.builds(lambda: json.dumps(event()).encode()),
)
header_values = st.one_of(st.text(max_size=64), st.integers(0, 20_000).map(lambda n: "e" * n))
extra_headers = st.dictionaries(
    st.sampled_from(
        [
            "X-Firebase-AppCheck",
            "Content-Length",
            "Transfer-Encoding",
            "Content-Encoding",
            "Accept",
            "X-Extra",
        ]
    ),
    header_values,
    max_size=4,
)
content_types = st.one_of(
    st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain", "", "*/*"]),
    st.text(max_size=200),
)


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.large_base_example,
    ],
)
@given(
    route=st.sampled_from(["events", "events/batch"]),
    body=bodies,
    content_type=content_types,
    extra=extra_headers,
)
@example(route="events/batch", body=tiny_values(b"{}", 250_000), content_type="application/json", extra={})
@example(route="events/batch", body=tiny_values(b"[]", 250_000), content_type="application/json", extra={})
@example(route="events", body=in_event(b"NaN"), content_type="application/json", extra={})
@example(
    route="events/batch", body=b"[" + in_event(b"1e999") + b"]", content_type="application/json", extra={}
)
async def test_any_request_gets_a_documented_answer_fast_and_in_bounded_memory(
    static_env, route, body, content_type, extra
):
    sensitive(TOKEN)
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        started = time.monotonic()
        response = await call(route, body, headers={**extra, "Content-Type": content_type})
        elapsed = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    status = response.status_code
    if route == "events/batch" and status == 200:
        statuses = {r["status"] for r in json.loads(response.get_body())["results"]}
        assert statuses <= DOCUMENTED, statuses
    else:
        assert status in DOCUMENTED, (status, response.get_body()[:300])
        if status != 202:
            assert response.mimetype == "application/problem+json"
            assert json.loads(response.get_body())["status"] == status
    if status >= 500:
        assert response.headers["Retry-After"].isascii() and response.headers["Retry-After"].isdigit()
    cap = MAX_BATCH_BYTES if route == "events/batch" else MAX_EVENT_BYTES
    if len(body) > cap:
        assert status in (413, 415)  # the media type is judged first
    assert elapsed <= FAST, f"{elapsed:.2f} s for {len(body)} bytes"
    assert peak <= MEMORY[route], f"peak {peak / 1e6:.1f} MB for {len(body)} bytes"
    if b"NaN" in body or b"Infinity" in body or b"e999" in body or b"E400" in body:
        assert status in (400, 413, 415) or (
            status == 200 and all(r["status"] == 400 for r in json.loads(response.get_body())["results"])
        ), "a non-finite number was accepted"


async def test_the_batch_cap_fits_100_of_the_largest_events_and_not_twice_that(static_env):
    sensitive(TOKEN)
    items = [event(DeviceToken="t" * 4096, PushNotificationStatus="Clicked") for _ in range(100)]
    body = json.dumps(items, indent=2).encode()
    assert len(body) <= MAX_BATCH_BYTES < len(json.dumps(items * 2).encode())
    response = await call("events/batch", body)
    assert response.status_code == 200
    assert {r["status"] for r in json.loads(response.get_body())["results"]} == {202}
