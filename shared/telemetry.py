"""Where the relay's metrics go in Azure: Application Insights, through Azure Monitor's OpenTelemetry
exporter, authenticated with the app's managed identity (no instrumentation key).

Only metrics are exported from here. Requests, logs and their sampling stay with the Functions host
(host.json), which keeps logs with their request and the volume bounded; the worker's own
OpenTelemetry switch (PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY) would configure a second
pipeline in the same process, so when it is on this module steps aside. docs/operations.md says why.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

log = logging.getLogger("cij_relay.telemetry")

EXPORT_INTERVAL_SECONDS = 60  # Application Insights aggregates custom metrics per minute
_WORKER_SWITCHES = ("PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY", "PYTHON_ENABLE_OPENTELEMETRY")


def configure(env: Mapping[str, str] | None = None) -> bool:
    """Install a meter provider exporting to Application Insights when APPLICATIONINSIGHTS_CONNECTION_STRING
    is set (the exporter reads APPLICATIONINSIGHTS_AUTHENTICATION_STRING for Entra ID). Returns whether
    it did; never raises (the relay works without telemetry) and does no network I/O."""
    env = os.environ if env is None else env
    connection_string = env.get("APPLICATIONINSIGHTS_CONNECTION_STRING", "").strip()
    if not connection_string:
        return False
    switched_on = [name for name in _WORKER_SWITCHES if env.get(name, "").strip().lower() in ("true", "1")]
    if switched_on:
        log.warning(
            "%s is set: the Python worker exports OpenTelemetry itself; not configuring a second exporter",
            switched_on[0],
        )
        return False
    try:
        from azure.monitor.opentelemetry.exporter import AzureMonitorMetricExporter
        from opentelemetry import metrics
        from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
        from opentelemetry.sdk.metrics import _Gauge as Gauge
        from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import SERVICE_INSTANCE_ID, SERVICE_NAME, Resource

        if isinstance(metrics.get_meter_provider(), MeterProvider):
            return False  # someone installed one already: one provider per process
        exporter = AzureMonitorMetricExporter(connection_string=connection_string)
        # A gauge is exported only in the interval it was set: an instance the queue-depth timer
        # has left must not keep re-sending the depth it last saw (the alerts read the latest).
        exporter._preferred_temporality = {  # read by the reader below; the exporter has no option
            **exporter._preferred_temporality,
            Gauge: AggregationTemporality.DELTA,
        }
        reader = PeriodicExportingMetricReader(
            exporter, export_interval_millis=EXPORT_INTERVAL_SECONDS * 1000
        )
        resource = Resource.create(
            {
                SERVICE_NAME: env.get("WEBSITE_SITE_NAME") or "cij-push-relay",
                SERVICE_INSTANCE_ID: env.get("WEBSITE_INSTANCE_ID") or env.get("HOSTNAME") or "local",
            }
        )
        # No exemplars: Application Insights does not use them, and sampling one costs every event.
        provider = MeterProvider(
            metric_readers=[reader], resource=resource, exemplar_filter=AlwaysOffExemplarFilter()
        )
        metrics.set_meter_provider(provider)
    except Exception as exc:  # a telemetry fault must never stop the relay from starting
        log.error("metrics export not configured: %s: %s", type(exc).__name__, exc)
        return False
    return True
