"""The relay's metrics, read through the OpenTelemetry SDK's in-memory reader: every outcome of every
route, CIJ's answer classes with their timing, Key Vault reads, and what attributes may hold."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import azure.functions as func
import pytest

from shared import metrics, relay
from shared.delivery_queue import encode_message
from shared.events import MAX_EVENT_BYTES, validate_event
from tests.conftest import FUNCTIONS, call, new_event
from tests.fakes.azurite import azurite_fixture  # noqa: F401
from tests.metrics_reader import Meter, meter_fixture  # noqa: F401
from tests.queue_store import DOWN, store_fixture  # noqa: F401

# --------------------------------------------------------------------------------------------
# The mapping from an answer to its outcome, and from CIJ's status to its result class.


@pytest.mark.parametrize(
    ("status", "kind", "queued", "outcome"),
    [
        (202, None, False, "accepted"),
        (202, None, True, "queued"),
        (400, "urn:cij-push-relay:problem:invalid-event", False, "invalid"),
        (400, "urn:cij-push-relay:problem:rejected-upstream", False, "rejected"),
        (401, "urn:cij-push-relay:problem:app-check", False, "invalid"),
        (413, "urn:cij-push-relay:problem:payload-too-large", False, "invalid"),
        (415, "urn:cij-push-relay:problem:unsupported-media-type", False, "invalid"),
        (429, "urn:cij-push-relay:problem:rate-limited", False, "invalid"),
        (502, "urn:cij-push-relay:problem:upstream-misconfigured", False, "misconfigured"),
        (502, "urn:cij-push-relay:problem:upstream-unavailable", False, "unavailable"),
        (503, "urn:cij-push-relay:problem:settings-invalid", False, "unavailable"),
        (504, None, False, "unavailable"),
        (500, "urn:cij-push-relay:problem:internal", False, "unavailable"),
    ],
)
def test_outcome_of_an_answer(status, kind, queued, outcome):
    assert metrics.outcome_of(status, kind, queued) == outcome


@pytest.mark.parametrize(
    ("status", "result"),
    [(200, "2xx"), (202, "2xx"), (400, "400"), (401, "other_4xx"), (404, "other_4xx"), (429, "other_4xx"),
     (408, "other_4xx"), (500, "5xx"), (503, "5xx"), (302, "error"), (None, "error"), (700, "error")],
)  # fmt: skip
def test_cij_result_classes(status, result):
    assert metrics.cij_result(status) == result


# --------------------------------------------------------------------------------------------
# POST /api/events: one count per answer, whatever decided it.


@pytest.mark.parametrize(
    ("answer", "outcome", "result"),
    [
        (None, "accepted", "2xx"),
        ("400", "rejected", "400"),
        ("401", "misconfigured", "other_4xx"),
        ("403", "misconfigured", "other_4xx"),
        ("404", "misconfigured", "other_4xx"),
        ("302+redirect", "misconfigured", "error"),
        (DOWN, "unavailable", "5xx"),
        ("429:1", "unavailable", "other_4xx"),
        ("hang", "unavailable", "error"),
    ],
)
async def test_single_event_outcomes(monkeypatch, static_env, meter: Meter, answer, outcome, result):
    monkeypatch.setenv("FORWARD_TIMEOUT_SECONDS", "1")
    if answer:
        static_env.default = answer
    await call("events", new_event())
    readings = meter.read()
    assert readings.events == {("events", outcome): 1}
    assert set(readings.cij) == {result} and readings.cij_count(result) == 1
    [(_, seconds)] = readings.cij[result]
    assert 0 < seconds < 5


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"{not json", "application/json"),
        (b"x" * (MAX_EVENT_BYTES + 1), "application/json"),
        (b"{}", "text/plain"),
    ],
    ids=["400", "413", "415"],
)
async def test_single_event_refused_by_the_relay_is_invalid_and_never_timed(
    static_env, meter: Meter, body, content_type
):
    response = await call("events", body, headers={"Content-Type": content_type})
    assert 400 <= response.status_code < 500
    readings = meter.read()
    assert readings.events == {("events", "invalid"): 1}
    assert readings.cij == {}  # nothing was forwarded


async def test_single_event_queued(static_env, store, meter: Meter):
    static_env.default = DOWN
    response = await call("events", new_event())
    assert response.headers["X-Delivery"] == "queued"
    assert meter.read().events == {("events", "queued"): 1}


async def test_settings_invalid_is_unavailable(monkeypatch, meter: Meter):
    monkeypatch.setenv("DELIVERY_FALLBACK", "sometimes")
    assert (await call("events", new_event())).status_code == 503
    assert (await call("events/batch", [new_event()])).status_code == 503
    assert meter.read().events == {("events", "unavailable"): 1, ("batch", "unavailable"): 1}


# --------------------------------------------------------------------------------------------
# POST /api/events/batch: each item counts, with its own outcome.


async def test_batch_counts_each_item_with_its_outcome(monkeypatch, static_env, meter: Meter):
    monkeypatch.setenv("BATCH_CONCURRENCY", "1")  # items reach CIJ in order: the script applies in order
    monkeypatch.setenv("FORWARD_TIMEOUT_SECONDS", "1")
    static_env.then("202", "202", "400", "404", DOWN)
    items = [new_event(), new_event(), new_event(), new_event(), new_event(), {"TrackingId": "nope"}]
    response = await call("events/batch", items)
    assert [r["status"] for r in json.loads(response.get_body())["results"]] == [202, 202, 400, 502, 503, 400]
    readings = meter.read()
    assert readings.events == {
        ("batch", "accepted"): 2,
        ("batch", "rejected"): 1,
        ("batch", "misconfigured"): 1,
        ("batch", "unavailable"): 1,
        ("batch", "invalid"): 1,
    }
    assert {r: readings.cij_count(r) for r in readings.cij} == {"2xx": 2, "400": 1, "other_4xx": 1, "5xx": 1}


async def test_batch_items_queued(static_env, store, meter: Meter):
    static_env.default = DOWN
    await call("events/batch", [new_event(), new_event(), new_event()])
    assert meter.read().events == {("batch", "queued"): 3}


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"[", "application/json"),
        (b"{}", "text/plain"),
        (json.dumps([{}] * 101).encode(), "application/json"),
    ],
    ids=["400", "415", "too-many"],
)
async def test_batch_refused_as_a_whole_counts_once_as_invalid(static_env, meter: Meter, body, content_type):
    response = await call("events/batch", body, headers={"Content-Type": content_type})
    assert 400 <= response.status_code < 500
    assert meter.read().events == {("batch", "invalid"): 1}


# --------------------------------------------------------------------------------------------
# The queue trigger: one count per message handled.


def stored(event: dict) -> func.QueueMessage:
    """A queue message as the relay stores it, as the host hands it to `redeliver`."""
    body = encode_message(validate_event(event), datetime.now(UTC))
    return func.QueueMessage(id=str(uuid.uuid4()), body=body)


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [(None, "accepted"), ("400", "rejected"), ("403", "misconfigured"), (DOWN, "unavailable")],
)
async def test_redelivery_outcomes(monkeypatch, static_env, store, meter: Meter, answer, outcome):
    monkeypatch.setenv("FORWARD_TIMEOUT_SECONDS", "1")
    if answer:
        static_env.default = answer
    await FUNCTIONS["redeliver"](stored(new_event()))  # failures are stored again for a later try
    readings = meter.read()
    assert readings.events == {("redeliver", outcome): 1}
    assert sum(readings.cij_count(r) for r in readings.cij) == 1


async def test_redelivery_that_fails_on_a_bug_or_invalid_settings_is_unavailable(
    monkeypatch, static_env, store, meter: Meter
):
    async def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(relay.Forwarder, "send", broken)
    await FUNCTIONS["redeliver"](stored(new_event()))  # a bug: the event is stored again
    assert await store.count() == 1
    await relay.reset()
    monkeypatch.setenv("DELIVERY_FALLBACK", "sometimes")
    with pytest.raises(relay.RedeliveryFailed):  # invalid settings: the host keeps the message
        await FUNCTIONS["redeliver"](stored(new_event()))
    assert meter.read().events == {("redeliver", "unavailable"): 2}


async def test_redelivery_of_a_message_that_is_not_an_event_is_invalid(static_env, store, meter: Meter):
    await FUNCTIONS["redeliver"](func.QueueMessage(id="m", body=b"not json"))
    assert meter.read().events == {("redeliver", "invalid"): 1}


# --------------------------------------------------------------------------------------------
# Key Vault reads, and what attributes may hold.


async def test_key_vault_reads_are_counted_ok_and_failed(kv_env, meter: Meter):
    await call("events", new_event())
    await call("events", new_event())  # cached: no second read
    assert meter.read().refreshes == {"ok": 1}
    await relay.reset()  # a new relay has nothing cached
    kv_env.fault = "down"
    assert (await call("events", new_event())).status_code == 503
    assert meter.read().refreshes == {"failed": 1}


async def test_attributes_hold_only_the_contract_values(monkeypatch, static_env, meter: Meter):
    monkeypatch.setenv("FORWARD_TIMEOUT_SECONDS", "1")
    static_env.then("400", DOWN)
    for _ in range(3):
        await call("events", new_event())
    await call("events/batch", [new_event(), {"TrackingId": "bad", "DeviceToken": "t" * 64}])
    allowed = {
        "route": set(metrics.ROUTES),
        "outcome": set(metrics.OUTCOMES),
        "result": set(metrics.CIJ_RESULTS) | {"ok", "failed"},
        "queue": set(metrics.QUEUES),
    }
    attributes = meter.read().attributes
    assert attributes
    for attrs in attributes:
        assert set(attrs) <= set(allowed)
        assert all(value in allowed[key] for key, value in attrs.items()), attrs
