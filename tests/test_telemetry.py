"""Metrics reach Application Insights as deployed: the relay's process with the connection string
and Entra authentication string of the Bicep exports `relay.*` to an ingestion endpoint on loopback,
with a managed-identity token; and it never configures a second pipeline beside the worker's."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import AsyncIterator

import pytest

from shared import telemetry
from tests.conftest import CA_FILE, CLIENT_ID, ROOT, server_ssl_context
from tests.fakes.appinsights import FakeIngestion
from tests.fakes.identity import FakeManagedIdentity
from tests.fakes.servers import Served

IKEY = "00000000-0000-4000-8000-00000000a1b2"

# What the worker would do: import the app (which configures the export), then the relay records.
CHILD = """
import function_app
from shared import metrics
from shared.responses import ACCEPTED, Reply
metrics.counted("events", ACCEPTED)
metrics.counted("batch", Reply(200, {"results": [{"index": 0, "status": 202}, {"index": 1, "status": 400}]}))
metrics.target_refreshed(True)
metrics.queue_depth("poison", 7)
metrics.flush()
metrics.flush()  # nothing new: a gauge set once is not sent again
print("flushed")
"""


@pytest.fixture
async def ingestion() -> AsyncIterator[FakeIngestion]:
    fake = FakeIngestion()
    served = await Served(fake.app, server_ssl_context()).start()  # tokens are only sent over TLS
    fake.url = served.url  # type: ignore[attr-defined]
    yield fake
    await served.stop()


async def run_app(env: dict[str, str]) -> tuple[int, str]:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, cwd=ROOT, env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(child.communicate(), 120)
    return child.returncode or 0, output.decode(errors="replace")


async def test_metrics_reach_application_insights_with_a_managed_identity_token(
    ingestion: FakeIngestion, identity: FakeManagedIdentity
):
    endpoint = ingestion.url.rstrip("/")  # type: ignore[attr-defined]
    connection = f"InstrumentationKey={IKEY};IngestionEndpoint={endpoint}"
    code, output = await run_app(
        {
            "APPLICATIONINSIGHTS_CONNECTION_STRING": connection,
            "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": f"ClientId={CLIENT_ID};Authorization=AAD",
            "IDENTITY_ENDPOINT": identity.url,  # type: ignore[attr-defined]
            "IDENTITY_HEADER": identity.header_secret,
            "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
            "REQUESTS_CA_BUNDLE": CA_FILE,  # the exporter's transport trusts the test CA
        }
    )
    assert code == 0 and "flushed" in output, output
    assert ingestion.envelopes, output
    points = {(p["name"], tuple(sorted(p["properties"].items()))): p for p in ingestion.metrics()}
    assert points[("relay.events", (("outcome", "accepted"), ("route", "events")))]["value"] == 1
    assert points[("relay.events", (("outcome", "accepted"), ("route", "batch")))]["value"] == 1
    assert points[("relay.events", (("outcome", "invalid"), ("route", "batch")))]["value"] == 1
    assert points[("relay.target.refreshes", (("result", "ok"),))]["value"] == 1
    assert points[("relay.queue.depth", (("queue", "poison"),))]["value"] == 7
    assert [p["value"] for p in ingestion.metrics() if p["name"] == "relay.queue.depth"] == [7]
    # Entra ID: every post carries a token the identity endpoint issued for this client ID.
    assert ingestion.authorizations and all(
        a and a.removeprefix("Bearer ") in identity.issued for a in ingestion.authorizations
    )
    assert {r.get("client_id") for r in identity.requests} == {CLIENT_ID}


async def test_without_a_connection_string_nothing_is_exported(ingestion: FakeIngestion):
    code, output = await run_app({"REQUESTS_CA_BUNDLE": CA_FILE})
    assert code == 0 and "flushed" in output, output
    assert ingestion.envelopes == []


@pytest.mark.parametrize(
    "switch", ["PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY", "PYTHON_ENABLE_OPENTELEMETRY"]
)
def test_the_worker_switch_means_no_second_pipeline(switch, caplog):
    env = {"APPLICATIONINSIGHTS_CONNECTION_STRING": f"InstrumentationKey={IKEY}", switch: "true"}
    with caplog.at_level(logging.WARNING):
        assert telemetry.configure(env) is False
    assert any(switch in r.getMessage() for r in caplog.records)


def test_no_connection_string_configures_nothing():
    assert telemetry.configure({}) is False


def test_host_samples_requests_with_their_logs_at_a_bounded_rate():
    """Requests and the logs of each sampled request are kept or dropped together by the host's
    adaptive sampling, at most maxTelemetryItemsPerSecond per instance: no type of the per-event
    telemetry is excluded from it, and the host stays in the mode where host.json's sampling applies."""
    host = json.loads((ROOT / "host.json").read_text())
    sampling = host["logging"]["applicationInsights"]["samplingSettings"]
    assert sampling["isEnabled"] is True
    assert 0 < sampling["maxTelemetryItemsPerSecond"] <= 5
    excluded = {t.strip() for t in sampling.get("excludedTypes", "").split(";") if t.strip()}
    assert not excluded & {"Request", "Trace", "Dependency"}
    assert host.get("telemetryMode", "ApplicationInsights").lower() != "opentelemetry"
