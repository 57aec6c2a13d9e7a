"""The deadline holds for any FORWARD_TIMEOUT_SECONDS: the answer comes within it plus the documented
margin, whatever CIJ or Key Vault do (hang, trickle, ask for a long Retry-After)."""

from __future__ import annotations

import asyncio
import time

import pytest

import shared.keyvault  # noqa: F401  (imported at cold start, before any deadline runs)
from shared.forwarder import DEADLINE_MARGIN_SECONDS
from tests.conftest import call, new_event


async def just_after_a_whole_second() -> None:
    """Wait until the loop's clock is just past a whole second: a timeout rounded up to the next
    whole second (what aiohttp does to timeouts of 5 s or more) would then overshoot by ~0.9 s."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(1.05 - loop.time() % 1)


async def timed(route: str, body: object) -> tuple[int, float]:
    started = time.monotonic()
    response = await call(route, body)
    return response.status_code, time.monotonic() - started


@pytest.mark.parametrize("route", ["events", "events/batch"])
async def test_a_deadline_of_five_seconds_or_more_is_not_rounded_up(monkeypatch, static_env, route):
    monkeypatch.setenv("FORWARD_TIMEOUT_SECONDS", "5.5")
    static_env.default = "hang"
    await just_after_a_whole_second()
    status, elapsed = await timed(route, new_event() if route == "events" else [new_event()])
    assert status in (504, 200)
    assert 5.5 <= elapsed <= 5.5 + DEADLINE_MARGIN_SECONDS, f"answered after {elapsed:.3f} s"


async def test_a_long_retry_after_from_cij_does_not_stretch_the_deadline(monkeypatch, static_env):
    monkeypatch.setenv("FORWARD_TIMEOUT_SECONDS", "1")
    static_env.default = "503:3000"
    status, elapsed = await timed("events", new_event())
    assert status == 503 and elapsed <= 1 + DEADLINE_MARGIN_SECONDS


async def test_reading_the_target_counts_against_the_deadline(monkeypatch, kv_env):
    monkeypatch.setenv("FORWARD_TIMEOUT_SECONDS", "1")
    kv_env.fault = "hang"  # Key Vault never answers: nothing cached yet
    status, elapsed = await timed("events", new_event())
    assert status == 503
    assert elapsed <= 1 + DEADLINE_MARGIN_SECONDS, f"answered after {elapsed:.3f} s"
