"""shared/forwarder.py against a loopback CIJ: mirrored answers, retries, deadline, pooling."""

from __future__ import annotations

import asyncio
import email.utils
import math
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.events import OpenEvent
from shared.forwarder import (
    MAX_ATTEMPTS,
    MAX_RETRY_AFTER,
    Forwarder,
    UpstreamMisconfigured,
    UpstreamRejected,
    UpstreamUnavailable,
    backoff,
    parse_retry_after,
)
from shared.target import Target
from tests.conftest import ORG_ID

EVENT = OpenEvent("3f2504e0-4f89-41d3-9a0c-0305e82c3301", "token-1", 1)


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch):
    """Keep the jittered waits short so the retry paths run in milliseconds."""
    monkeypatch.setattr("shared.forwarder.BACKOFF_BASE", 0.01)


@pytest.fixture
async def send(cij):
    forwarder = Forwarder(max_connections=4, timeout=5)
    target = Target(ORG_ID, cij.url)

    async def send_(event=EVENT, deadline=None):
        return await forwarder.send(target, event, deadline)

    send_.forwarder = forwarder
    yield send_
    await forwarder.close()


async def test_202_is_accepted_with_the_exact_body(send, cij):
    assert await send() == 1  # attempts
    assert cij.received == [
        {"TrackingId": EVENT.tracking_id, "DeviceToken": "token-1", "PushNotificationStatus": 1}
    ]
    assert cij.content_types == ["application/json"]


async def test_no_cookie_is_carried_from_one_event_to_the_next(send, cij):
    cij.then("202+cookie", "202")
    by_name = Target(ORG_ID, cij.url.replace("127.0.0.1", "localhost"))  # cookie jars skip IP hosts
    await send.forwarder.send(by_name, EVENT)
    await send.forwarder.send(by_name, EVENT)
    assert cij.cookies == [None, None]  # a cookie CIJ set for one device's event is not replayed


async def test_400_is_rejected_without_retry(send, cij):
    cij.then("400")
    with pytest.raises(UpstreamRejected):
        await send()
    assert cij.requests == 1


@pytest.mark.parametrize("status", ["401", "403", "404", "409", "302"])
async def test_other_4xx_and_3xx_mean_misconfigured_without_retry(send, cij, status):
    cij.then(status)
    with pytest.raises(UpstreamMisconfigured) as info:
        await send()
    assert info.value.upstream_status == int(status) and cij.requests == 1


@pytest.mark.parametrize("status", ["301", "302", "307", "308"])
async def test_redirects_are_not_followed(send, cij, status):
    cij.then(f"{status}+redirect")
    with pytest.raises(UpstreamMisconfigured) as info:  # events go to the checked endpoint or nowhere
        await send()
    assert info.value.upstream_status == int(status) and cij.strays == []


@pytest.mark.parametrize("failure", ["503", "500", "502", "408", "429:0", "reset"])
async def test_transient_failures_are_retried_then_accepted(send, cij, failure):
    cij.then(failure, failure)
    assert await send() == 3
    assert len(cij.received) == 1


@pytest.mark.parametrize(
    ("failure", "status"),
    [("503", 503), ("429", 503), ("500", 502), ("502", 502), ("504", 504), ("408", 504), ("reset", 502)],
)
async def test_exhausted_retries_map_to_5xx_with_retry_after(send, cij, failure, status):
    cij.default = failure
    with pytest.raises(UpstreamUnavailable) as info:
        await send()
    assert info.value.status == status and info.value.retry_after >= 1
    assert cij.requests == MAX_ATTEMPTS


async def test_retry_after_beyond_the_deadline_stops_early_and_is_passed_on(send, cij):
    cij.then("429:30")
    with pytest.raises(UpstreamUnavailable) as info:
        await send()
    assert (info.value.status, info.value.retry_after, cij.requests) == (503, 30, 1)


async def test_no_retry_is_squeezed_into_the_last_moments_of_the_deadline(send, cij, monkeypatch):
    monkeypatch.setattr("shared.forwarder.backoff", lambda attempt: 0.47)
    cij.then("503")
    with pytest.raises(UpstreamUnavailable) as info:  # 0.03 s would be left after the backoff
        await send(deadline=time.monotonic() + 0.5)
    assert (info.value.status, cij.requests) == (503, 1)  # CIJ's own answer, not a made-up timeout


async def test_short_retry_after_is_honoured(send, cij):
    cij.then("503:1")
    started = time.monotonic()
    assert await send() == 2
    assert time.monotonic() - started >= 0.9  # waited as told before the second attempt


async def test_a_hanging_upstream_ends_at_the_deadline_with_504(send, cij):
    cij.default = "hang"
    loop = asyncio.get_running_loop()
    with pytest.raises(UpstreamUnavailable) as info:
        await send(deadline=loop.time() + 0.5)
    assert info.value.status == 504 and cij.requests == 1


async def test_an_expired_deadline_sends_nothing(send, cij):
    with pytest.raises(UpstreamUnavailable):
        await send(deadline=asyncio.get_running_loop().time() - 1)
    assert cij.requests == 0


async def test_connections_are_pooled_and_bounded(send, cij):
    events = [OpenEvent(f"3f2504e0-4f89-41d3-9a0c-{i:012d}", "t", 1) for i in range(200)]
    await asyncio.gather(*(send(e) for e in events))
    assert len(cij.received) == 200
    assert 1 <= len(cij.connections) <= 4  # the pool's limit


async def test_the_session_survives_an_upstream_restart(send, cij):
    await send()
    port = cij.served.port
    await cij.served.stop()
    await cij.served.start(port)
    assert await send() >= 1  # accepted, over a new connection if the pooled one was dead
    assert len(cij.received) == 2


def test_retry_after_parsing():
    assert parse_retry_after("7") == 7
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("99999999") == 3600
    future = email.utils.formatdate(time.time() + 20, usegmt=True)
    assert 18 <= parse_retry_after(future) <= 20
    assert parse_retry_after(email.utils.formatdate(time.time() - 50, usegmt=True)) == 0


@pytest.mark.parametrize(
    "value",
    ["²", "١٢", "２", "𝟗", "-1", "+5", "1.5", "1e3", "NaN", "9" * 5000, "Mon, 01 Jan 0001 00:00:00 +0100",
     "Fri, 31 Dec 9999 23:59:59 -2359", "Tue, 01 Dec 2026 12:00:00", "x" * 100_000],
)  # fmt: skip
def test_retry_after_is_read_as_ascii_digits_or_a_date_and_nothing_else(value):
    seconds = parse_retry_after(value)
    assert seconds is None or (0 <= seconds <= MAX_RETRY_AFTER and math.isfinite(seconds))
    if not value.isascii():
        assert seconds is None  # str.isdigit() takes these; CIJ's header means none of them


@settings(derandomize=True, database=None, max_examples=500, deadline=None)
@given(st.one_of(st.text(), st.from_regex(r"\A[ \t]*[0-9]{1,30}[ \t]*\Z"), st.datetimes().map(str)))
def test_any_retry_after_is_none_or_a_bounded_delay(value):
    seconds = parse_retry_after(value)
    assert seconds is None or (0 <= seconds <= MAX_RETRY_AFTER and math.isfinite(seconds))


def test_backoff_is_jittered_exponential_and_capped(monkeypatch):
    from shared.forwarder import BACKOFF_CAP

    monkeypatch.undo()
    from shared.forwarder import BACKOFF_BASE

    for attempt in range(1, 10):
        samples = [backoff(attempt) for _ in range(200)]
        assert 0 <= min(samples) and max(samples) <= min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt)
    assert len({backoff(3) for _ in range(20)}) > 1
