"""The outage figures: how fast the app is answered while CIJ is down and the circuit is open (with
and without the queue), how many requests CIJ still gets from one instance meanwhile, and the
longest a warm request waits on Key Vault across a cache rollover (target 0)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from bench.driving import percentile_ms
from bench.figure import Bench, Result, Target
from devserver import azurite
from shared.relay import Relay
from shared.settings import load
from shared.target import TargetResolver
from tests.fakes.cij import FakeCIJ
from tests.fakes.servers import Served

ORG_ID = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
OUTAGE_SECONDS = 10.0  # traffic sent while the circuit is open, per fallback
QUEUE = "pending-events"
KV_SECONDS, KV_READ_SECONDS, KV_TTL = 3.0, 0.2, 1.0  # three rollovers of a 1 s cache, 200 ms reads


def _body() -> bytes:
    event = {
        "TrackingId": str(uuid.uuid4()),
        "DeviceToken": uuid.uuid4().hex * 2,
        "PushNotificationStatus": 1,
    }
    return json.dumps(event).encode()


async def _outage(cij: FakeCIJ, env: dict[str, str], concurrency: int) -> tuple[float, float, int]:
    """Open the circuit, then send events for OUTAGE_SECONDS: (p99 ms, CIJ requests/s, events)."""
    relay = Relay(load(env))
    try:
        cij.requests = 0
        await asyncio.gather(*(relay.handle_event(_body(), "application/json") for _ in range(10)))
        assert relay.circuit.state != "closed", "ten failed events must open the circuit"
        before, latencies, stop = cij.requests, [], time.monotonic() + OUTAGE_SECONDS
        started = time.monotonic()

        async def client() -> None:
            while time.monotonic() < stop:
                sent = time.perf_counter()
                reply = await relay.handle_event(_body(), "application/json")
                latencies.append(time.perf_counter() - sent)
                assert reply.status in (202, 503), reply.status

        await asyncio.gather(*(client() for _ in range(concurrency)))
        rate = (cij.requests - before) / (time.monotonic() - started)
        return percentile_ms(latencies, 0.99), rate, len(latencies)
    finally:
        await relay.aclose()


class _SlowVault:
    """A target source that answers like a Key Vault a continent away: KV_READ_SECONDS per read."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint, self.reads = endpoint, 0

    async def read(self) -> tuple[str, str]:
        self.reads += 1
        await asyncio.sleep(KV_READ_SECONDS)
        return ORG_ID, self.endpoint

    async def close(self) -> None:
        return None


async def refresh_max_wait_ms(concurrency: int) -> tuple[float, int, int]:
    """Longest wait, in ms, on the target source by a request asking for the target as the relay
    does (fresh(), else await get()), over KV_SECONDS of warm traffic with a KV_TTL cache; how
    many requests had to wait at all; and how many reads were made meanwhile."""
    source = _SlowVault("https://public-eur.mkt.dynamics.com")
    resolver = TargetResolver(source, load({"SECRET_CACHE_TTL_SECONDS": str(KV_TTL)}))
    await resolver.get()  # warm
    longest, waited, stop = 0.0, 0, time.monotonic() + KV_SECONDS

    async def client() -> None:
        nonlocal longest, waited
        while time.monotonic() < stop:
            if resolver.fresh() is None:  # nothing to serve at once: this request waits
                started = time.perf_counter()
                await resolver.get()
                longest, waited = max(longest, time.perf_counter() - started), waited + 1
            await asyncio.sleep(0.001)

    await asyncio.gather(*(client() for _ in range(concurrency)))
    await resolver.close()
    return longest * 1000, waited, source.reads - 1


async def measure(bench: Bench) -> Result:
    """The three figures (one run each: they are about bounds, not throughput)."""
    concurrency = min(bench.concurrency, 50)
    cij = FakeCIJ(ORG_ID)
    cij.default = "503"
    served = await Served(cij.app()).start()
    env = {
        "CIJ_ORG_ID": ORG_ID,
        "CIJ_PUBLIC_ENDPOINT": served.url,
        "CIJ_ALLOWED_HOSTS": "127.0.0.1",
        "DEVICE_RATE_PER_MINUTE": "0",
    }
    try:
        bench.say(f"outage: CIJ answering 503, circuit open, {OUTAGE_SECONDS:g} s without the queue ...")
        none_p99, rate, none_events = await _outage(cij, env, concurrency)
        bench.say(f"outage: the same with DELIVERY_FALLBACK=queue (Azurite) for {OUTAGE_SECONDS:g} s ...")
        async with azurite.queue_service(QUEUE) as connection:
            queued = {**env, "DELIVERY_FALLBACK": "queue", "AzureWebJobsStorage": connection}
            queue_p99, queue_rate, queue_events = await _outage(cij, queued, concurrency)
    finally:
        await served.stop()
    bench.say(f"refresh ahead: {KV_SECONDS:g} s of warm requests across 1 s cache rollovers ...")
    waited, waiting, reads = await refresh_max_wait_ms(concurrency)
    return {
        "outage_p99_ms": {"fallback_none": round(none_p99, 2), "fallback_queue": round(queue_p99, 2)},
        "outage_events": {"fallback_none": none_events, "fallback_queue": queue_events},
        "outage_cij_requests_per_s": round(max(rate, queue_rate), 3),
        "refresh_max_wait_ms": round(waited, 3),
        "refresh_waiting_requests": waiting,
        "refresh_reads": reads,
    }


TARGETS = {
    "refresh_max_wait_ms": Target(
        "0 (no warm request waits on Key Vault)",
        lambda r: r["refresh_max_wait_ms"] == 0,
        lambda r: f"{r['refresh_max_wait_ms']:.3f} ms",
    ),
}


def lines(r: dict[str, Any]) -> list[str]:
    """The outage figures in words."""
    p99, events = r["outage_p99_ms"], r["outage_events"]
    return [
        f"CIJ down, circuit open: p99 answer {p99['fallback_none']:.2f} ms without the queue (503 + "
        f"Retry-After, {events['fallback_none']} events), {p99['fallback_queue']:.2f} ms with it (202 "
        f"queued in Azurite, {events['fallback_queue']} events); CIJ got "
        f"{r['outage_cij_requests_per_s']:.2f} requests/s from the instance (one probe per "
        "CIRCUIT_PROBE_SECONDS)",
        f"refresh ahead: longest warm wait for the target across {KV_SECONDS / KV_TTL:.0f} cache "
        f"rollovers (Key Vault reads of {KV_READ_SECONDS * 1000:.0f} ms): {r['refresh_max_wait_ms']:.3f} ms; "
        f"{r['refresh_waiting_requests']} requests waited; {r['refresh_reads']} reads in the background",
    ]
