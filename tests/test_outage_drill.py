"""The outage drill: CIJ down for the equivalent of three days while thousands of events arrive,
then back — against Azurite, with the `redeliver` queue trigger run as the Functions host runs it
(devserver/queue_trigger.py, host.json's options), time compressed by the relay's own settings.

Scale: one second of the drill stands for 2.4 hours, so the 72-hour outage takes 30 s (longer if
the events take longer to arrive; the figure printed says how long it was). Redeliveries wait at
most 20 s (REDELIVERY_MAX_DELAY_MINUTES; in Azure 30 minutes by default). The storage emulator
takes some 100 queue operations a second on a laptop, and the backlog drains at that real speed
after recovery, which at this scale looks like days: events are kept for fifteen days
(REDELIVERY_MAX_AGE_HOURS, 150 s) so that only the messages made too old on purpose reach the
poison queue. Every event must be delivered exactly once, or be on the poison queue with the
reason; CIJ may receive no more than one probe per CIRCUIT_PROBE_SECONDS while the circuit is
open; after recovery, the backlog drains within the max delay plus the time the queue trigger
needs to work through it (batches of 16, as host.json says).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web

from devserver import queue_trigger
from shared import relay
from shared.delivery_queue import encode_message
from shared.events import validate_event
from tests.conftest import INDEXED, ORG_ID, call, new_event, serving
from tests.fakes.azurite import azurite_fixture  # noqa: F401
from tests.fakes.cij import FakeCIJ
from tests.queue_store import Store, store_fixture  # noqa: F401

HOUR = 1 / 2.4  # drill seconds per hour
OUTAGE_HOURS = 72  # CIJ is down for three days ...
MAX_AGE_HOURS = 360  # ... shorter than REDELIVERY_MAX_AGE_HOURS: nothing stored meanwhile may be lost
MAX_DELAY_SECONDS = 20.0  # REDELIVERY_MAX_DELAY_MINUTES, compressed
DRAIN_SECONDS = 90.0  # what the trigger may take to work through the backlog, beyond the max delay
PROBE_SECONDS = 0.5
EVENTS, SENDERS = 2000, 20
THROTTLED_AFTER_RECOVERY = 5  # CIJ's first answers once back: 429 + Retry-After: 1


class TimedCIJ(FakeCIJ):
    """The CIJ fake, noting when each request arrived."""

    def __init__(self, org_id: str) -> None:
        super().__init__(org_id)
        self.arrivals: list[float] = []

    async def receive(self, request: web.Request) -> web.StreamResponse:
        self.arrivals.append(time.monotonic())
        return await super().receive(request)


@pytest.fixture
async def timed_cij(monkeypatch: pytest.MonkeyPatch):
    async with serving(TimedCIJ(ORG_ID)) as fake:
        monkeypatch.setenv("CIJ_ORG_ID", ORG_ID)
        monkeypatch.setenv("CIJ_PUBLIC_ENDPOINT", fake.url)  # type: ignore[attr-defined]
        monkeypatch.setenv("CIJ_ALLOWED_HOSTS", "127.0.0.1")
        yield fake


def stored(event: dict[str, Any], hours_ago: float) -> str:
    """A relay message received `hours_ago` (drill time) before now, base64 as on the queue."""
    received = datetime.now(UTC) - timedelta(seconds=hours_ago * HOUR)
    return base64.b64encode(encode_message(validate_event(event), received)).decode()


async def test_a_three_day_outage_loses_nothing_spares_cij_and_drains_after(
    monkeypatch: pytest.MonkeyPatch, timed_cij: TimedCIJ, store: Store
):
    cij = timed_cij
    settings = {
        "FORWARD_TIMEOUT_SECONDS": "2",
        "CIRCUIT_FAILURE_THRESHOLD": "10",
        "CIRCUIT_PROBE_SECONDS": str(PROBE_SECONDS),
        "REDELIVERY_MAX_DELAY_MINUTES": str(MAX_DELAY_SECONDS / 60),
        "REDELIVERY_MAX_AGE_HOURS": str(MAX_AGE_HOURS * HOUR / 3600),
        "DEVICE_RATE_PER_MINUTE": "0",  # each sender is one device, sending 100 events
        "AZURE_SDK_LOG_LEVEL": "WARNING",  # thousands of storage requests: not one log record each
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    # host.json's options, with the empty-queue polling interval compressed like the rest.
    options = queue_trigger.options(
        env={"AzureFunctionsJobHost__extensions__queues__maxPollingInterval": "00:00:00.5"}
    )
    assert (options.batch_size, options.max_dequeue_count, options.message_encoding) == (16, 8, "base64")

    senders = [new_event() for _ in range(SENDERS)]  # one device token per sender
    answers: list[tuple[int, str | None]] = []
    sent_ids: list[str] = []
    outage = OUTAGE_HOURS * HOUR

    async def sender(device: dict[str, Any]) -> None:
        step = outage * 0.8 / (EVENTS // SENDERS)  # the events arrive during the first 80 % of it
        for k in range(EVENTS // SENDERS):
            event = new_event(DeviceToken=device["DeviceToken"])
            sent_ids.append(event["TrackingId"])
            response = await call("events", event)
            answers.append((response.status_code, response.headers.get("X-Delivery")))
            await asyncio.sleep(max(0.0, started + (k + 1) * step - time.monotonic()))

    cij.default = "503"
    async with queue_trigger.running(INDEXED, options) as triggers:
        assert triggers == [f"redeliver <- {store.client.queue_name}"]
        started = time.monotonic()
        senders_done = asyncio.gather(*(sender(d) for d in senders))
        # Messages no event of this drill can be: never decoded, or stored longer ago than the max age.
        for junk in (b"not json", b'{"event": {}}', b"\x00\x01"):
            await store.client.send_message(base64.b64encode(junk).decode())
        expired = [new_event(DeviceToken=senders[0]["DeviceToken"]) for _ in range(5)]
        for event in expired:
            await store.client.send_message(stored(event, MAX_AGE_HOURS + 1))
        opened_at = None
        while opened_at is None:
            await asyncio.sleep(0.05)
            if relay.current().circuit.state != "closed":
                opened_at = time.monotonic()
        await senders_done
        await asyncio.sleep(max(0.0, started + outage - time.monotonic()))

        recovered_at = time.monotonic()
        during_outage = [t for t in cij.arrivals if opened_at + 2 < t < recovered_at]
        cij.default = None  # CIJ is back, throttling at first
        cij.then(*["429:1"] * THROTTLED_AFTER_RECOVERY)
        limit = recovered_at + MAX_DELAY_SECONDS + DRAIN_SECONDS
        # Polls CIJ's count and the queue's: nothing signals the drain's end.
        while (len(cij.received) < EVENTS or await store.count()) and time.monotonic() < limit:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        drained_at = time.monotonic()

    # Every answer the apps got was 202: stored at once while CIJ was down (the circuit open).
    assert collections.Counter(answers) == {(202, "queued"): EVENTS}
    # Every event delivered exactly once; the queue empty.
    delivered = collections.Counter(e["TrackingId"] for e in cij.received)
    assert set(delivered) == set(sent_ids) and max(delivered.values()) == 1, "lost or duplicated"
    assert await store.count() == 0
    # Nothing else delivered; what could not be is on the poison queue, with the reason.
    poisoned = await store.poisoned()
    reasons = collections.Counter(p["reason"].split(":")[0].split(" (")[0] for p in poisoned)
    assert reasons == {"not a relay event": 3, "not delivered within REDELIVERY_MAX_AGE_HOURS": 5}, reasons
    too_old = {
        p["message"]["event"]["TrackingId"] for p in poisoned if p["reason"].startswith("not delivered")
    }
    assert too_old == {e["TrackingId"] for e in expired}
    # While the circuit was open, CIJ saw at most one probe per probe interval (a 2 s grace after it
    # opened, for the events already retrying then).
    window = recovered_at - (opened_at + 2)
    assert len(during_outage) <= math.floor(window / PROBE_SECONDS) + 1, (len(during_outage), window)
    # After recovery: drained within the max delay, plus the time the trigger takes to work through
    # the backlog (batches of 16) and CIJ's 429s.
    drain = drained_at - recovered_at
    assert drain < MAX_DELAY_SECONDS + DRAIN_SECONDS, drain
    print(
        f"\ndrill: {EVENTS} events, CIJ down {recovered_at - started:.1f} s "
        f"({(recovered_at - started) / HOUR:.0f} h at the drill's scale), CIJ received "
        f"{len(during_outage)} requests in {window:.1f} s of open circuit "
        f"({len(during_outage) / window:.2f}/s), backlog drained {drain:.1f} s after recovery, "
        f"{len(cij.arrivals)} requests in all, {len(poisoned)} poisoned: {dict(reasons)}"
    )
