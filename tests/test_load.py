"""Load over real HTTP: 10,000 events at concurrency 200 through the dev server reach CIJ, none lost."""

from __future__ import annotations

import asyncio
import collections
import time
import uuid

import aiohttp

from tests.conftest import leaks, sensitive
from tests.helpers_devserver import DevServer

EVENTS = 10_000
CONCURRENCY = 200


async def test_10k_events_at_concurrency_200_all_202_and_all_received_once():
    # A thousand devices, ten events each: none comes near its rate limit (DEVICE_RATE_BURST).
    tokens = [f"load-device-{n:04d}-" + uuid.uuid4().hex for n in range(1000)]
    sensitive(*tokens)
    events = [
        {
            "TrackingId": str(uuid.uuid4()),
            "DeviceToken": tokens[n % len(tokens)],
            "PushNotificationStatus": n % 2,
        }
        for n in range(EVENTS)
    ]
    statuses: collections.Counter[int] = collections.Counter()
    with DevServer() as server:
        connector = aiohttp.TCPConnector(limit=CONCURRENCY)
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            queue: asyncio.Queue[dict] = asyncio.Queue()
            for event in events:
                queue.put_nowait(event)

            async def worker() -> None:
                while not queue.empty():
                    event = queue.get_nowait()
                    async with http.post(f"{server.url}/events", json=event) as response:
                        await response.read()
                        statuses[response.status] += 1

            started = time.monotonic()
            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
            elapsed = time.monotonic() - started
            async with http.get(f"{server.emulator_url}_emulator/received") as response:
                report = await response.json()
        output = server.output()
    print(f"{EVENTS} events in {elapsed:.1f} s ({EVENTS / elapsed:.0f}/s)")
    assert statuses == {202: EVENTS}
    assert report["accepted"] == EVENTS and report["distinct_tracking_ids"] == EVENTS
    assert set(report["tracking_ids"]) == {e["TrackingId"] for e in events}
    assert report["requests"] == EVENTS  # no retries were needed, so none were made
    assert leaks(output) == []
