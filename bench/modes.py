"""The four modes, each over the same events: `bare` and `relay` (interleaved), `relay_batch`, `naive`."""

from __future__ import annotations

import math
from typing import Any

from bench import naive
from bench.calls import bare_caller, bare_session, batch_invoker, host_requests, invoker, routes
from bench.driving import Tally, inputs_frozen, run_pass, snapshot_rss
from bench.services import ORG_ID, Services
from bench.workload import BATCH_SIZE, Workload
from shared import relay, target

MODES = ("bare", "relay", "naive", "relay_batch")
EVENTS_PATH = target.EVENTS_PATH.format(org_id=ORG_ID)


async def bare_and_relay(services: Services, work: Workload) -> dict[str, dict[str, Any]]:
    """`bare` and `relay` over the same N events, interleaved in slices (A B B A ...) so that load
    from outside the benchmark falls on both alike. Both are warmed up first with 1000 events."""
    await relay.reset()
    kv_before = await services.vault_reads()
    session = bare_session(work.limit)
    calls = {
        "bare": bare_caller(session, services.upstream_url + EVENTS_PATH),
        "relay": invoker(routes()["events"]),
    }
    # Each mode's warm-up items and timed slices: bodies for bare, the host's requests for relay.
    slices = work.slices()
    items = {
        "bare": (work.warmup, slices),
        "relay": (host_requests(work.warmup, "events"), [host_requests(p, "events") for p in slices]),
    }
    tallies = {"bare": Tally(), "relay": Tally()}
    try:
        with inputs_frozen():
            for mode, call in calls.items():
                warmup = items[mode][0]
                await run_pass(
                    services, tallies[mode], call, warmup, work.concurrency, len(warmup), timed=False
                )
            rss_before = snapshot_rss()
            for i in range(len(slices)):
                order = ("bare", "relay") if i % 2 == 0 else ("relay", "bare")
                for mode in order:
                    part = items[mode][1][i]
                    await run_pass(services, tallies[mode], calls[mode], part, work.concurrency, len(part))
            rss_after = snapshot_rss()
    finally:
        await session.close()
        await relay.reset()
    figures = {mode: tally.figures() for mode, tally in tallies.items()}
    figures["relay"]["kv_reads"] = await services.kv_reads_since(kv_before)
    figures["relay"]["rss_growth_mb"] = rss_after - rss_before
    return figures


def batch_requests_in_flight(work: Workload) -> int:
    """Batch requests in flight so that as many events are in flight as `relay` has."""
    return max(1, math.ceil(work.concurrency / work.batch_concurrency))


async def relay_batch(services: Services, work: Workload) -> dict[str, Any]:
    """The `events/batch` route, BATCH_SIZE events per request, with as many events in flight as
    `relay` has (requests in flight x BATCH_CONCURRENCY)."""
    await relay.reset()
    kv_before = await services.vault_reads()
    call = batch_invoker(routes()["events/batch"])
    in_flight = batch_requests_in_flight(work)
    warmup = host_requests(work.batches[: max(1, len(work.warmup) // BATCH_SIZE)], "events/batch")
    batches = host_requests(work.batches, "events/batch")
    tally = Tally()
    try:
        with inputs_frozen():
            warmup_events = min(len(work.bodies), len(warmup) * BATCH_SIZE)
            await run_pass(services, tally, call, warmup, in_flight, warmup_events, timed=False)
            await run_pass(services, tally, call, batches, in_flight, len(work.bodies))
    finally:
        await relay.reset()
    figures = tally.figures()
    figures["kv_reads"] = await services.kv_reads_since(kv_before)
    return figures


async def naive_mode(services: Services, work: Workload) -> dict[str, Any]:
    """bench/naive.py: credential, SecretClient and session per request, both secrets every time."""
    call = invoker(naive.main)
    warmup = host_requests(work.bodies[: min(work.concurrency, len(work.bodies))], "events")
    requests = host_requests(work.bodies, "events")
    tally = Tally()
    with inputs_frozen():
        await run_pass(services, tally, call, warmup, work.concurrency, len(warmup), timed=False)
        await run_pass(services, tally, call, requests, work.concurrency, len(work.bodies))
    return tally.figures()
