"""Driving a mode: workers sending items through a call, and the tallies of what came back."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import os
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.services import Services

Call = Callable[[Any], Awaitable[bool]]  # takes one item: a body (bare) or an HttpRequest


@dataclass
class Run:
    """One timed pass of a mode over its items."""

    events: int
    seconds: float
    cpu_seconds: float
    latencies: list[float]
    failed: int


async def drive(call: Call, items: Sequence[Any], concurrency: int, events: int | None = None) -> Run:
    """`concurrency` workers take the items in order, one call at a time each, until none are left."""
    pending = iter(items)
    latencies: list[float] = []
    failed = 0
    clock = time.perf_counter

    async def worker() -> None:
        nonlocal failed
        for item in pending:
            started = clock()
            ok = await call(item)
            latencies.append(clock() - started)
            failed += not ok

    cpu, started = time.process_time(), clock()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(items)))))
    seconds = clock() - started
    return Run(events or len(items), seconds, time.process_time() - cpu, latencies, failed)


def percentile_ms(latencies: list[float], q: float) -> float:
    """Nearest-rank percentile, in milliseconds."""
    ordered = sorted(latencies)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] * 1000


@dataclass
class Tally:
    """One mode's figures in one round, summed over its passes (warm-ups count as sent only)."""

    events: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    upstream_cpu_seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    failed: int = 0
    sent: int = 0
    upstream_requests: int = 0
    connection_ids: set[int] = field(default_factory=set)

    def figures(self) -> dict[str, Any]:
        """Throughput, latency percentiles, CPU shares and what the upstream saw."""
        return {
            "eps": self.events / self.seconds,
            "p50_ms": percentile_ms(self.latencies, 0.50),
            "p99_ms": percentile_ms(self.latencies, 0.99),
            "cpu_pct": 100 * self.cpu_seconds / self.seconds,
            "upstream_cpu_pct": 100 * self.upstream_cpu_seconds / self.seconds,
            "failed": self.failed,
            "sent": self.sent,
            "upstream_requests": self.upstream_requests,
            "upstream_connections": len(self.connection_ids),
        }


async def run_pass(
    services: Services,
    tally: Tally,
    call: Call,
    items: Sequence[Any],
    concurrency: int,
    events: int,
    timed: bool = True,
) -> None:
    """Send `items` (holding `events` events) through `call`; the upstream's counters cover just
    this pass. An untimed pass (warm-up) only counts what was sent and received."""
    before = await services.upstream_stats(reset=True)
    run = await drive(call, items, concurrency, events)
    after = await services.upstream_stats(reset=True, ids=True)
    tally.sent += events
    tally.failed += run.failed
    tally.upstream_requests += after["requests"]
    tally.connection_ids.update(after["connection_ids"])
    if timed:
        tally.events += events
        tally.seconds += run.seconds
        tally.cpu_seconds += run.cpu_seconds
        tally.upstream_cpu_seconds += after["cpu_s"] - before["cpu_s"]
        tally.latencies += run.latencies


@contextlib.contextmanager
def inputs_frozen() -> Iterator[None]:
    """Keep the objects that exist now (the prebuilt bodies and HttpRequests: ~80,000 for 10,000
    events) out of the garbage collector's reach while the modes run. A full collection walking
    them pauses for ~40 ms, and would land on whichever mode happens to be running."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def rss_mb() -> float:
    """This process's resident set size now (Linux /proc; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # pragma: no cover - not Linux
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def snapshot_rss() -> float:
    """RSS in MB after a full garbage collection."""
    gc.collect()
    return rss_mb()
