"""Throughput and latency of the relay against the bare client and the naive function, with the
Key Vault reads, upstream connections and memory growth they took: medians over the rounds."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from bench.figure import Bench, Result, Target
from bench.modes import MODES, bare_and_relay, batch_requests_in_flight, naive_mode, relay_batch
from bench.services import Services
from bench.workload import BATCH_SIZE, Workload
from shared import settings as settings_module

Round = dict[str, dict[str, Any]]  # mode → its figures in one round

TARGETS = {
    "relay_vs_bare": Target(
        ">= 0.85", lambda r: r["relay_vs_bare"] >= 0.85, lambda r: f"{r['relay_vs_bare']:.3f}"
    ),
    "relay_vs_naive": Target(
        ">= 5", lambda r: r["relay_vs_naive"] >= 5, lambda r: f"{r['relay_vs_naive']:.1f}"
    ),
    "kv_reads_per_secret": Target(
        "== 1", lambda r: r["kv_reads_per_secret"] == 1, lambda r: f"{r['kv_reads_per_secret']}"
    ),
    "upstream_connections": Target(
        "<= connector limit",
        lambda r: r["upstream_connections"] <= r["connector_limit"],
        lambda r: f"{r['upstream_connections']} (connector limit {r['connector_limit']})",
    ),
    "rss_growth_mb": Target(
        "< 5",
        lambda r: r["rss_growth_mb"] < 5,
        lambda r: f"{r['rss_growth_mb']:.2f} (after a {r['warmup_events']}-event warm-up)",
    ),
}


async def one_round(services: Services, work: Workload, say: Callable[[str], None]) -> Round:
    """Every mode once, over the same events."""
    say("bare and relay, interleaved ...")
    figures = await bare_and_relay(services, work)
    say(f"  bare {figures['bare']['eps']:,.0f} events/s, relay {figures['relay']['eps']:,.0f} events/s")
    say("relay, events/batch ...")
    figures["relay_batch"] = await relay_batch(services, work)
    say(f"  relay_batch {figures['relay_batch']['eps']:,.0f} events/s")
    say("naive function ...")
    figures["naive"] = await naive_mode(services, work)
    say(f"  naive {figures['naive']['eps']:,.0f} events/s")
    return figures


async def measure(bench: Bench) -> Result:
    """Every mode `bench.rounds` times, summarised with medians."""
    services = await bench.services()
    settings = settings_module.load()
    work = Workload.build(
        bench.events, bench.concurrency, settings.max_connections, settings.batch_concurrency
    )
    per_round: list[Round] = []
    for r in range(bench.rounds):
        per_round.append(
            await one_round(services, work, lambda m, r=r: bench.say(f"round {r + 1}/{bench.rounds}: {m}"))
        )
    return summarise(work, per_round)


def summarise(work: Workload, per_round: list[Round]) -> Result:
    """The medians (and worst cases) over the rounds, and each round's figures."""

    def median(mode: str, key: str) -> float:
        return statistics.median(figures[mode][key] for figures in per_round)

    def worst(mode: str, key: str) -> Any:
        return max(figures[mode][key] for figures in per_round)

    relay_runs = [figures[m] for figures in per_round for m in ("relay", "relay_batch")]
    bare_eps, relay_eps, naive_eps = median("bare", "eps"), median("relay", "eps"), median("naive", "eps")
    phases = [f for figures in per_round for f in figures.values()]
    return {
        "bare_eps": round(bare_eps),
        "relay_eps": round(relay_eps),
        "naive_eps": round(naive_eps, 1),
        "relay_vs_bare": round(relay_eps / bare_eps, 3),
        "relay_vs_naive": round(relay_eps / naive_eps, 1),
        "relay_p50_ms": round(median("relay", "p50_ms"), 2),
        "relay_p99_ms": round(median("relay", "p99_ms"), 2),
        "kv_reads_per_secret": max(max(f["kv_reads"].values(), default=0) for f in relay_runs),
        "upstream_connections": worst("relay", "upstream_connections"),
        "connector_limit": work.limit,
        "rss_growth_mb": round(worst("relay", "rss_growth_mb"), 2),
        "relay_batch_eps": round(median("relay_batch", "eps")),
        "batch_size": BATCH_SIZE,
        "batch_requests_in_flight": batch_requests_in_flight(work),
        "bare_p50_ms": round(median("bare", "p50_ms"), 2),
        "bare_p99_ms": round(median("bare", "p99_ms"), 2),
        "naive_p50_ms": round(median("naive", "p50_ms"), 2),
        "naive_p99_ms": round(median("naive", "p99_ms"), 2),
        "bare_upstream_connections": worst("bare", "upstream_connections"),
        "rounds": len(per_round),
        "slices": len(work.slices()),
        "warmup_events": len(work.warmup),
        "sent_total": sum(f["sent"] for f in phases),
        "upstream_received_total": sum(f["upstream_requests"] for f in phases),
        "failed": sum(f["failed"] for f in phases),
        "per_round": [{mode: _rounded(figures[mode]) for mode in MODES} for figures in per_round],
    }


def _rounded(figures: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in figures.items()}


def lines(r: Result) -> list[str]:
    """The table of modes (as in docs/performance.md) and what the upstream received."""
    rows = [
        ("bare: aiohttp client straight to the upstream", r["bare_eps"], r["bare_p50_ms"], r["bare_p99_ms"]),
        ("relay: `events` function", r["relay_eps"], r["relay_p50_ms"], r["relay_p99_ms"]),
        ("naive function (bench/naive.py)", r["naive_eps"], r["naive_p50_ms"], r["naive_p99_ms"]),
    ]
    out = ["| mode | events/s | p50 ms | p99 ms | vs bare |", "|---|---:|---:|---:|---:|"]
    for name, eps, p50, p99 in rows:
        out.append(f"| {name} | {eps:,.0f} | {p50:.2f} | {p99:.2f} | {eps / r['bare_eps']:.2f} |")
    batch = r["relay_batch_eps"]
    out.append(
        f"| relay: `events/batch`, {r['batch_size']} events per request | {batch:,.0f} | | | "
        f"{batch / r['bare_eps']:.2f} |"
    )
    out.append(
        f"upstream received {r['upstream_received_total']} of {r['sent_total']} events sent "
        f"(warm-ups included); {r['failed']} not accepted"
    )
    return out
