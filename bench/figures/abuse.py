"""What the abuse protections cost per event: verifying a Firebase App Check token with the keys
cached (a token seen for the first time, and one seen before), and the per-device rate limit with
its table full (every event a new device, evicting)."""

from __future__ import annotations

import statistics
import time
import uuid
from typing import Any

from bench.figure import Bench, Result
from shared.appcheck import AppCheck
from shared.ratelimit import MAX_DEVICES, DeviceLimiter
from shared.settings import load
from tests.fakes import jwks as firebase
from tests.fakes.servers import Served

MAX_TOKENS = 1000  # App Check tokens signed per round (signing is the slow part of the set-up)


def _devices(count: int) -> list[str]:
    """`count` device tokens like APNs ones (64 hex digits), none hashed yet."""
    return [uuid.uuid4().hex + uuid.uuid4().hex for _ in range(count)]


def limiter_us(events: int) -> float:
    """Microseconds per DeviceLimiter.acquire once MAX_DEVICES devices are remembered, each event
    from a new device (the dearest case: a miss and an eviction every time)."""
    limiter = DeviceLimiter(per_minute=60, burst=120)
    for device in _devices(MAX_DEVICES):
        limiter.acquire(device)
    fresh = _devices(events)
    started = time.perf_counter()
    for device in fresh:
        limiter.acquire(device)
    return (time.perf_counter() - started) / events * 1e6


async def appcheck_us(count: int) -> tuple[float, float]:
    """Microseconds per App Check check of `count` distinct valid tokens with the keys already
    cached: each token the first time (a signature check), then each again (remembered)."""
    fake = firebase.FakeJwks("key-1")
    served = await Served(fake.app()).start()
    settings = load(
        {
            "APP_CHECK_MODE": "enforce",
            "APP_CHECK_PROJECT_NUMBER": firebase.PROJECT_NUMBER,
            "APP_CHECK_JWKS_URL": served.url.rstrip("/") + firebase.JWKS_PATH,
        }
    )
    checker = AppCheck(settings)
    try:
        await checker.check(firebase.token())  # reads the keys
        tokens = [firebase.token() for _ in range(count)]
        elapsed = []
        for _ in ("first", "again"):
            started = time.perf_counter()
            for token in tokens:
                await checker.check(token)
            elapsed.append((time.perf_counter() - started) / count * 1e6)
        assert fake.requests == 1 and not checker.failures, "the benchmark's tokens must all pass"
    finally:
        await checker.close()
        await served.stop()
    return elapsed[0], elapsed[1]


async def measure(bench: Bench) -> Result:
    """Both costs, median over the rounds."""
    count = min(bench.events, MAX_TOKENS)
    first, again, limiter = [], [], []
    for r in range(bench.rounds):
        bench.say(f"round {r + 1}/{bench.rounds}: App Check verification and the device rate limit ...")
        costs = await appcheck_us(count)
        first.append(costs[0])
        again.append(costs[1])
        limiter.append(limiter_us(max(bench.events, 10_000)))
    return {
        "appcheck_us_per_event": round(statistics.median(first), 1),
        "appcheck_repeat_us_per_event": round(statistics.median(again), 1),
        "ratelimit_us_per_event": round(statistics.median(limiter), 2),
    }


def lines(r: dict[str, Any]) -> list[str]:
    """The costs, and the limiter's against the relay's own time per event."""
    limiter = f"{r['ratelimit_us_per_event']:.2f} µs per event"
    if r.get("relay_eps"):
        per_event_us = 1e6 / r["relay_eps"]
        share = r["ratelimit_us_per_event"] / per_event_us
        limiter += f" ({share:.1%} of the relay's {per_event_us:.0f} µs per event)"
    return [
        f"App Check (monitor or enforce), keys cached: {r['appcheck_us_per_event']:.1f} µs per request "
        f"for a token seen the first time (RS256 signature), {r['appcheck_repeat_us_per_event']:.1f} µs "
        "for one seen before; a batch's events share one check",
        f"device rate limit, table full ({MAX_DEVICES:,} devices), a new device each event: {limiter}",
    ]
