"""The benchmark harness works end to end: a short run in a subprocess. No speed is asserted."""

from __future__ import annotations

import json
import os

from tests.conftest import run_module

KEYS = (
    "events",
    "concurrency",
    "bare_eps",
    "relay_eps",
    "naive_eps",
    "relay_vs_bare",
    "relay_vs_naive",
    "relay_p50_ms",
    "relay_p99_ms",
    "kv_reads_per_secret",
    "upstream_connections",
    "rss_growth_mb",
    "import_ms",
    "import_baseline_ms",
    "relay_batch_eps",
    "connector_limit",
    "outage_p99_ms",
    "outage_cij_requests_per_s",
    "refresh_max_wait_ms",
    "appcheck_us_per_event",
    "appcheck_repeat_us_per_event",
    "ratelimit_us_per_event",
)


def test_a_short_run_reports_every_figure_and_loses_no_event():
    done = run_module("bench", "--events", "200", "--concurrency", "20", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)

    assert not [key for key in KEYS if key not in result]
    assert (result["events"], result["concurrency"]) == (200, 20)
    # The ratio is of the unrounded medians; the reported eps are rounded to whole events per second.
    ratio = result["relay_eps"] / result["bare_eps"]
    assert abs(result["relay_vs_bare"] - ratio) <= 0.5 / result["bare_eps"] * (1 + ratio) + 0.0005
    # One Key Vault read per secret for the whole run: the cache and single-flight hold.
    assert result["kv_reads_per_secret"] == 1
    assert 1 <= result["upstream_connections"] <= result["connector_limit"]
    # Every event any mode sent (warm-ups included) reached the upstream, and each was accepted.
    assert result["upstream_received_total"] == result["sent_total"] > 0
    assert result["failed"] == 0
    assert result["import_network_calls"] == 0
    # CIJ down: answered with and without the queue; one probe per 5 s at most; once warm, no
    # request waited on Key Vault across the cache's rollovers (the reads happened meanwhile).
    assert set(result["outage_p99_ms"]) == {"fallback_none", "fallback_queue"}
    assert result["outage_cij_requests_per_s"] <= 1 / 5 + 0.01
    assert result["refresh_waiting_requests"] == 0 and result["refresh_max_wait_ms"] == 0
    assert result["refresh_reads"] >= 2
    # With two or more cores the services run on cores the measured process does not use.
    if len(os.sched_getaffinity(0)) > 1:
        assert result["measured_on_cores"] and result["services_on_cores"]
        assert set(result["measured_on_cores"]).isdisjoint(result["services_on_cores"])
    else:
        assert result["measured_on_cores"] is None
