"""Per-device rate limit: the token bucket, its memory bound, and 429s on both event routes."""

from __future__ import annotations

import asyncio
import json
import tracemalloc

import pytest

from shared import relay
from shared.ratelimit import DeviceLimiter, RateLimited, make_limiter
from shared.responses import from_error
from shared.settings import load
from tests.conftest import call, new_event, problem, sensitive
from tests.openapi_spec import response_validator


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_device_gets_its_burst_then_one_event_per_interval():
    clock = Clock()
    limiter = DeviceLimiter(per_minute=60, burst=5, clock=clock)
    assert [limiter.acquire("device-a") for _ in range(5)] == [0.0] * 5
    assert limiter.acquire("device-a") == pytest.approx(1.0)  # one token per second comes back
    assert limiter.acquire("device-b") == 0.0  # other devices have their own bucket
    clock.now += 0.5
    assert limiter.acquire("device-a") == pytest.approx(0.5)  # refusals take nothing
    clock.now += 0.5
    assert limiter.acquire("device-a") == 0.0
    assert limiter.acquire("device-a") == pytest.approx(1.0)
    clock.now += 3600  # a quiet device's bucket fills up to the burst, never beyond
    assert [limiter.acquire("device-a") for _ in range(6)][-2:] == [0.0, pytest.approx(1.0)]


def test_the_retry_after_is_whole_seconds_until_a_token_is_back():
    clock = Clock()
    limiter = DeviceLimiter(per_minute=1, burst=1, clock=clock)
    assert limiter.acquire("d") == 0.0
    clock.now += 10
    wait = limiter.acquire("d")
    assert wait == pytest.approx(50.0)
    assert RateLimited(wait).retry_after == 50
    assert RateLimited(0.2).retry_after == 1  # never 0: that would invite an immediate retry


def test_zero_per_minute_turns_the_limit_off():
    assert make_limiter(0, 120) is None
    assert isinstance(make_limiter(60, 120), DeviceLimiter)


def test_memory_stays_bounded_however_many_devices_call():
    limiter = DeviceLimiter(per_minute=60, burst=120, max_devices=20_000)
    tracemalloc.start()
    try:
        for n in range(80_000):
            limiter.acquire(f"device-{n}")
        first, _ = tracemalloc.get_traced_memory()
        for n in range(80_000, 240_000):
            limiter.acquire(f"device-{n}")
        later, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(limiter) == 20_000
    assert later < 20_000 * 300  # a few hundred bytes per device remembered
    assert peak < 20_000 * 450  # also while the table is rebuilt
    assert abs(later - first) < 0.05 * first  # twice as many devices later: no growth


def test_the_least_recently_seen_device_is_forgotten_first():
    clock = Clock()
    limiter = DeviceLimiter(per_minute=60, burst=2, max_devices=100, clock=clock)
    limiter.acquire("abuser")
    limiter.acquire("abuser")
    for n in range(500):  # many other devices, while the abuser keeps sending
        limiter.acquire(f"device-{n}")
        assert limiter.acquire("abuser") > 0
    assert len(limiter) == 100


def test_the_limiter_keeps_no_device_token():
    limiter = DeviceLimiter(per_minute=60, burst=2)
    token = "secret-device-token-" + "ab" * 20
    limiter.acquire(token)
    assert all(isinstance(key, int) for key in limiter._full_at)


def test_429_is_problem_json_with_retry_after():
    reply = from_error(RateLimited(2.3))
    assert reply.status == 429 and reply.headers == {"Retry-After": "3"}
    assert reply.content_type == "application/problem+json"
    assert reply.body["type"] == "urn:cij-push-relay:problem:rate-limited"


def test_the_defaults_are_on_at_limits_no_person_reaches():
    settings = load({})
    assert (settings.device_rate_per_minute, settings.device_rate_burst) == (60, 120)


# --- through the routes -------------------------------------------------------------------------


def device(name: str) -> str:
    token = f"rl-{name}-" + "0123456789abcdef" * 3
    sensitive(token)
    return token


async def test_concurrent_events_from_one_device_get_exactly_the_burst_through(static_env, monkeypatch):
    monkeypatch.setenv("DEVICE_RATE_PER_MINUTE", "0.001")  # nothing refills during the test
    monkeypatch.setenv("DEVICE_RATE_BURST", "7")
    token = device("burst")
    responses = await asyncio.gather(*(call("events", new_event(DeviceToken=token)) for _ in range(300)))
    statuses = [r.status_code for r in responses]
    assert statuses.count(202) == 7 and statuses.count(429) == 293
    assert len(static_env.received) == 7  # refused events never reach CIJ
    refused = next(r for r in responses if r.status_code == 429)
    assert problem(refused)["type"].endswith(":rate-limited") and problem(refused)["status"] == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert (await call("events", new_event(DeviceToken=device("other")))).status_code == 202


async def test_batch_items_over_the_limit_get_429_results_and_are_not_forwarded(static_env, monkeypatch):
    monkeypatch.setenv("DEVICE_RATE_PER_MINUTE", "1")
    monkeypatch.setenv("DEVICE_RATE_BURST", "4")
    token, other = device("batch"), device("batch-other")
    events = [new_event(DeviceToken=token) for _ in range(6)] + [new_event(DeviceToken=other)]
    response = await call("events/batch", events)
    body = json.loads(response.get_body())
    assert response_validator("/events/batch", "post", 200, "application/json").is_valid(body)
    results = body["results"]
    assert [r["status"] for r in results] == [202] * 4 + [429] * 2 + [202]
    for item in results[4:6]:
        assert item["error"]["type"].endswith(":rate-limited")
        assert 1 <= item["retryAfter"] <= 60
    forwarded = {e["TrackingId"] for e in static_env.received}
    assert forwarded == {e["TrackingId"] for e in events[:4] + events[6:]}
    single = await call("events", new_event(DeviceToken=token))  # the routes share the bucket
    assert single.status_code == 429


async def test_with_the_defaults_an_offline_batch_of_100_and_more_opens_pass(static_env):
    token = device("real-phone")
    batch = await call("events/batch", [new_event(DeviceToken=token) for _ in range(100)])
    assert {r["status"] for r in json.loads(batch.get_body())["results"]} == {202}
    singles = [await call("events", new_event(DeviceToken=token)) for _ in range(20)]
    assert [r.status_code for r in singles] == [202] * 20
    assert len(static_env.received) == 120


async def test_zero_turns_the_limit_off_on_the_routes(static_env, monkeypatch):
    monkeypatch.setenv("DEVICE_RATE_PER_MINUTE", "0")
    monkeypatch.setenv("DEVICE_RATE_BURST", "1")
    token = device("unlimited")
    responses = await asyncio.gather(*(call("events", new_event(DeviceToken=token)) for _ in range(150)))
    assert {r.status_code for r in responses} == {202}
    assert relay.current().limiter is None
