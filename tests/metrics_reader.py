"""The relay's metrics as a meter provider receives them: the OpenTelemetry SDK's in-memory reader,
installed once per process (the API's global provider can be set only once) and read as deltas.

Use the `meter` fixture (import `meter_fixture`); it also fails the test if any metric attribute
holds a string the test registered as sensitive (a device token, the org ID, an endpoint).
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from opentelemetry import metrics
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader

from tests.conftest import SENSITIVE, leaks

_READER = InMemoryMetricReader(
    preferred_temporality={Counter: AggregationTemporality.DELTA, Histogram: AggregationTemporality.DELTA}
)
_installed = False


def install() -> InMemoryMetricReader:
    """Install the in-memory reader as the global meter provider (once per process)."""
    global _installed
    if not _installed:
        metrics.set_meter_provider(MeterProvider(metric_readers=[_READER]))
        _installed = True
    return _READER


@dataclass
class Readings:
    """What was recorded since the previous read, by metric."""

    events: Tally = field(default_factory=Tally)  # (route, outcome) -> count
    cij: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # result -> [(count, sum)]
    refreshes: Tally = field(default_factory=Tally)  # result -> count
    depth: dict[str, int] = field(default_factory=dict)  # queue -> last value
    attributes: list[dict] = field(default_factory=list)  # every attribute set seen
    names: set[str] = field(default_factory=set)  # every metric name seen

    def cij_count(self, result: str) -> int:
        """How many CIJ answers of class `result` were timed."""
        return sum(count for count, _ in self.cij.get(result, []))


class Meter:
    """Reads what the relay recorded since the last read."""

    def __init__(self) -> None:
        self.seen: list[dict] = []  # every attribute set read during the test

    def read(self) -> Readings:
        """Collect now; each call returns only what was recorded after the previous one."""
        readings = Readings()
        data = _READER.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    readings.names.add(metric.name)
                    for point in metric.data.data_points:
                        attrs = dict(point.attributes or {})
                        readings.attributes.append(attrs)
                        if metric.name == "relay.events":
                            readings.events[attrs["route"], attrs["outcome"]] += point.value
                        elif metric.name == "relay.cij.duration":
                            readings.cij.setdefault(attrs["result"], []).append((point.count, point.sum))
                        elif metric.name == "relay.target.refreshes":
                            readings.refreshes[attrs["result"]] += point.value
                        elif metric.name == "relay.queue.depth":
                            readings.depth[attrs["queue"]] = point.value
        self.seen.extend(readings.attributes)
        return readings


@pytest.fixture(name="meter")
def meter_fixture() -> Iterator[Meter]:
    """The in-memory reader, emptied of earlier tests' measurements; attributes checked for leaks."""
    install()
    meter = Meter()
    meter.read()
    meter.seen.clear()
    yield meter
    meter.read()
    values = [str(v) for attrs in meter.seen for v in attrs.values()]
    leaked = [secret for value in values for secret in leaks(value)]
    assert not leaked, f"sensitive data in metric attributes: {leaked} (of {sorted(SENSITIVE)})"
