"""The targets the figures are held to, and the human-readable output of `python -m bench`."""

from __future__ import annotations

import sys
from typing import Any

# Figure → (what the target says, whether a result meets it).
TARGETS: dict[str, tuple[str, Any]] = {
    "relay_vs_bare": (">= 0.85", lambda r: r["relay_vs_bare"] >= 0.85),
    "relay_vs_naive": (">= 5", lambda r: r["relay_vs_naive"] >= 5),
    "kv_reads_per_secret": ("== 1", lambda r: r["kv_reads_per_secret"] == 1),
    "upstream_connections": (
        "<= connector limit",
        lambda r: r["upstream_connections"] <= r["connector_limit"],
    ),
    "rss_growth_mb": ("< 5", lambda r: r["rss_growth_mb"] < 5),
    "import_ms": (
        "<= 1.1 x import_baseline_ms, no network at import",
        lambda r: r["import_ms"] <= 1.1 * r["import_baseline_ms"] and r["import_network_calls"] == 0,
    ),
}


def targets_met(result: dict[str, Any]) -> dict[str, bool]:
    """Whether each target is met by `result`."""
    return {name: bool(check(result)) for name, (_, check) in TARGETS.items()}


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def table(r: dict[str, Any]) -> str:
    """The results as the table in the README's Performance section, followed by the figures with targets."""
    rows = [
        ("bare: aiohttp client straight to the upstream", r["bare_eps"], r["bare_p50_ms"], r["bare_p99_ms"]),
        ("relay: `events` function", r["relay_eps"], r["relay_p50_ms"], r["relay_p99_ms"]),
        ("naive function (bench/naive.py)", r["naive_eps"], r["naive_p50_ms"], r["naive_p99_ms"]),
    ]
    placement = (
        f"measured on core {', '.join(map(str, r['measured_on_cores']))}, upstream and Key Vault "
        f"fakes on core {', '.join(map(str, r['services_on_cores']))}"
        if r.get("measured_on_cores")
        else "nothing pinned"
    )
    lines = [
        f"{r['events']} events per mode and round, concurrency {r['concurrency']}, median of "
        f"{r['rounds']} rounds; {r['cpu_count']} cores ({r['cpu_model']}), {placement}; "
        f"Python {r['python']}, aiohttp {r['aiohttp']}",
        "",
        "| mode | events/s | p50 ms | p99 ms | vs bare |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, eps, p50, p99 in rows:
        lines.append(f"| {name} | {eps:,.0f} | {p50:.2f} | {p99:.2f} | {eps / r['bare_eps']:.2f} |")
    batch = r["relay_batch_eps"]
    lines.append(
        f"| relay: `events/batch`, {r['batch_size']} events per request | {batch:,.0f} | | | "
        f"{batch / r['bare_eps']:.2f} |"
    )
    met = r.get("targets_met") or targets_met(r)
    figures = {
        "relay_vs_bare": f"{r['relay_vs_bare']:.3f}",
        "relay_vs_naive": f"{r['relay_vs_naive']:.1f}",
        "kv_reads_per_secret": f"{r['kv_reads_per_secret']}",
        "upstream_connections": f"{r['upstream_connections']} (connector limit {r['connector_limit']})",
        "rss_growth_mb": f"{r['rss_growth_mb']:.2f} (after a {r['warmup_events']}-event warm-up)",
        "import_ms": f"{r['import_ms']:.1f} (four runtime packages alone: {r['import_baseline_ms']:.1f}; "
        f"network calls at import: {r['import_network_calls']})",
    }
    lines.append("")
    for name, (target, _) in TARGETS.items():
        verdict = "met" if met[name] else "NOT MET"
        lines.append(f"{name:21s} {figures[name]}  [target {target}: {verdict}]")
    lines.append(
        f"{'upstream received':21s} {r['upstream_received_total']} of {r['sent_total']} events sent "
        f"(warm-ups included); {r['failed']} not accepted"
    )
    return "\n".join(lines)
