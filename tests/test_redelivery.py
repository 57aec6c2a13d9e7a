"""The `redeliver` queue trigger against Azurite: delivered once, stored again with growing delays
while CIJ cannot take the event (never calling it while the circuit is open), and given up on only
after REDELIVERY_MAX_AGE_HOURS, on the poison queue with the reason."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

from relayctl import messages
from shared import relay
from shared.delivery_queue import encode_message
from shared.events import validate_event
from shared.redelivery import next_delay
from tests.conftest import FUNCTIONS, INDEXED, call, canonical, new_event
from tests.fakes.azurite import azurite_fixture  # noqa: F401
from tests.queue_store import DOWN, Store, assert_queued, store_fixture  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
FUTURE_EVENT = {
    "TrackingId": "5d8c3e1a-7b2f-4c9e-a146-0f3b9d2e7c58",
    "DeviceToken": "a" * 64,
    "PushNotificationStatus": 1,
}


async def test_redelivery_after_recovery_delivers_each_event_exactly_once(static_env, store):
    static_env.default = DOWN
    events = [new_event(PushNotificationStatus=s) for s in (1, 0, "Opened")]
    for event in events:
        assert_queued(await call("events", event))
    assert await store.count() == 3
    static_env.default = None  # CIJ is back
    assert await store.drain() == []
    assert await store.count() == 0
    assert sorted(static_env.received, key=lambda e: e["TrackingId"]) == sorted(
        (canonical(e, 0 if e["PushNotificationStatus"] == 0 else 1) for e in events),
        key=lambda e: e["TrackingId"],
    )
    assert await store.drain() == []  # nothing left to deliver twice
    assert len(static_env.received) == 3


async def test_redelivery_rejected_by_cij_is_dropped_with_a_warning(static_env, store, caplog):
    static_env.default = DOWN
    event = new_event()
    assert_queued(await call("events", event))
    static_env.default = None
    static_env.then("400")
    assert await store.drain() == []  # no raise: the message is done with
    assert await store.count() == 0
    assert static_env.received == [] and static_env.requests == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("dropped" in w and event["TrackingId"] in w for w in warnings), warnings
    assert not any(event["DeviceToken"] in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("still", [DOWN, "hang", "refused", "404"])
async def test_while_cij_cannot_take_the_event_it_is_stored_again_for_later(
    monkeypatch, static_env, store, still
):
    monkeypatch.setenv("REDELIVERY_MAX_DELAY_MINUTES", str(1 / 60))  # delays of one second
    static_env.default = DOWN
    event = new_event()
    assert_queued(await call("events", event))
    [first] = await store.bodies()
    if still == "refused":
        await static_env.served.stop()  # type: ignore[attr-defined]
    else:
        static_env.default = still
    for attempts in (1, 2):
        assert await store.drain() == []  # the function returns: the host deletes what it handed over
        assert await store.count() == 1  # ... and the event waits again, invisible for the delay
        assert await store.client.peek_messages() == []
        await asyncio.sleep(1.2)
        [message] = await store.client.peek_messages()
        assert message.dequeue_count == 0  # a new message, not the host's retry of the old one
        assert message.expires_on.year == 9999  # time-to-live -1: it never expires
        [stored] = await store.bodies()
        assert stored["event"] == canonical(event) and stored["attempts"] == attempts
        assert stored["receivedAt"] == first["receivedAt"]  # the age counts from the first receipt


def test_delays_start_at_a_minute_double_and_stop_at_the_max():
    random.seed(7)
    delays = [next_delay(n, 1800) for n in range(12)]
    for attempts, (low, high) in enumerate([(48, 60), (96, 120), (192, 240), (384, 480), (768, 960)]):
        assert low <= delays[attempts] <= high
    assert all(1440 <= d <= 1800 for d in delays[5:])
    assert all(1 <= next_delay(n, 2) <= 2 for n in range(40))  # compressed: the first is the max delay
    assert next_delay(0, 1800, hint=600) == 600  # CIJ's Retry-After, when longer
    assert next_delay(0, 1800, hint=7200) == 1800  # ... but never past the max delay
    assert next_delay(10_000, 1800) <= 1800


async def stored_message(store: Store, event: dict[str, Any], hours_ago: float, attempts: int = 0) -> bytes:
    """Put a relay message received `hours_ago` on the queue, as the relay writes it."""
    body = encode_message(validate_event(event), datetime.now(UTC) - timedelta(hours=hours_ago), attempts)
    await store.client.send_message(base64.b64encode(body).decode())
    return body


async def test_past_the_max_age_it_goes_to_the_poison_queue_with_the_reason(static_env, store, caplog):
    static_env.default = DOWN
    event = new_event()
    body = await stored_message(store, event, hours_ago=72.1, attempts=150)
    assert await store.drain() == []
    assert await store.count() == 0
    [poisoned] = await store.poisoned()
    assert poisoned["message"] == json.loads(body)  # the original, for relayctl replay
    assert "REDELIVERY_MAX_AGE_HOURS (72 h)" in poisoned["reason"] and "HTTP 503" in poisoned["reason"]
    assert messages.read(json.dumps(poisoned)).reason == poisoned["reason"]
    assert messages.read(json.dumps(poisoned)).original == body
    assert static_env.requests >= 1  # tried one last time before giving up
    assert any(
        "redelivery given up" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
    )


async def test_an_event_older_than_the_max_age_is_still_delivered_when_cij_takes_it(static_env, store):
    event = new_event()
    await stored_message(store, event, hours_ago=100)  # e.g. replayed from the poison queue
    assert await store.drain() == []
    assert static_env.received == [canonical(event)] and await store.poisoned() == []


async def test_the_last_try_falls_on_the_max_age(monkeypatch, static_env, store, caplog):
    static_env.default = DOWN
    event = new_event()
    await stored_message(store, event, hours_ago=72 - 10 / 3600, attempts=140)
    assert await store.drain() == []
    lines = [r.getMessage() for r in caplog.records if "next try in" in r.getMessage()]
    assert len(lines) == 1 and re.search(r"next try in (9|10|11) s", lines[0]), lines


async def test_cij_429_retry_after_pushes_the_next_try_back(static_env, store, caplog):
    static_env.default = "429:600"
    await stored_message(store, new_event(), hours_ago=0)
    assert await store.drain() == []
    assert any("next try in 600 s" in r.getMessage() for r in caplog.records)
    assert static_env.requests == 1  # no retry within the call: Retry-After is past the deadline


async def test_while_the_circuit_is_open_redelivery_does_not_call_cij(monkeypatch, static_env, store, caplog):
    monkeypatch.setenv("CIRCUIT_FAILURE_THRESHOLD", "1")
    monkeypatch.setenv("CIRCUIT_PROBE_SECONDS", "60")
    monkeypatch.setenv("REDELIVERY_MAX_DELAY_MINUTES", str(1 / 60))
    static_env.default = DOWN
    events = [new_event() for _ in range(20)]
    for event in events:
        assert_queued(await call("events", event))
    assert static_env.requests == 1  # the first opened the circuit; the others were queued at once
    static_env.default = None  # CIJ is back, but the circuit holds until its next probe
    await asyncio.sleep(1.2)  # queued while the circuit was open: they wait one delay first
    assert await store.drain() == []
    assert static_env.requests == 1 and await store.count() == 20  # all stored again, none sent
    assert sum("redelivery failed (circuit open)" in r.getMessage() for r in caplog.records) == 20


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"event": {"TrackingId": "x"}, "receivedAt": "now"}',
        b"[]",
        b"\xff\xfe",
        # a valid event received in 2999 would never grow old enough to be given up on
        json.dumps({"event": FUTURE_EVENT, "receivedAt": "2999-01-01T00:00:00+00:00"}).encode(),
    ],
)
async def test_a_message_that_is_not_an_event_goes_to_the_poison_queue_with_a_warning(
    static_env, store, caplog, body
):
    await FUNCTIONS["redeliver"](func.QueueMessage(id="m", body=body))
    [poisoned] = await store.poisoned()
    assert poisoned["reason"].startswith("not a relay event")
    if body.startswith(b"{"):  # a JSON object is kept as it is
        assert poisoned["message"] == json.loads(body)
    else:  # anything else as its bytes, in base64
        assert base64.b64decode(poisoned["message"]) == body
    assert any("not a relay event" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert static_env.requests == 0


async def test_when_storage_fails_the_function_raises_so_the_host_keeps_the_message(
    monkeypatch, static_env, store
):
    static_env.default = DOWN
    body = encode_message(validate_event(new_event()), datetime.now(UTC))
    monkeypatch.setenv("DELIVERY_QUEUE_NAME", "missing-queue")  # cannot be stored again
    with pytest.raises(relay.RedeliveryFailed):
        await FUNCTIONS["redeliver"](func.QueueMessage(id="m", body=body))


async def test_key_vault_down_with_nothing_cached_is_queued_then_delivered(monkeypatch, kv_env, cij, store):
    monkeypatch.setenv("REDELIVERY_MAX_DELAY_MINUTES", str(1 / 60))
    kv_env.fault = "down"
    event = new_event()
    assert_queued(await call("events", event))
    assert cij.requests == 0
    assert await store.drain() == []  # the vault is still down: stored again for later
    assert await store.count() == 1
    kv_env.fault = None
    await relay.reset()  # a later try, past the resolver's back-off
    await asyncio.sleep(1.2)
    assert await store.drain() == []
    assert cij.received == [canonical(event)]
    assert await store.count() == 0


def test_the_queue_trigger_matches_what_the_relay_writes():
    [trigger] = [f.get_trigger() for f in INDEXED if f.get_function_name() == "redeliver"]
    assert trigger.queue_name == "%DELIVERY_QUEUE_NAME%"
    assert trigger.connection == "AzureWebJobsStorage"
    queues = json.loads((ROOT / "host.json").read_text())["extensions"]["queues"]
    assert queues["messageEncoding"] == "base64"  # the relay writes base64 (BinaryBase64EncodePolicy)
    assert queues["maxDequeueCount"] == 8  # then the host moves the message to <queue>-poison
    # At most 16 + 8 redeliveries in flight per instance (the drain after an outage is bounded).
    assert (queues["batchSize"], queues["newBatchThreshold"]) == (16, 8)


async def test_load_2000_events_with_cij_down_for_the_first_half_all_arrive_once(
    monkeypatch, static_env, store
):
    monkeypatch.setenv("REDELIVERY_MAX_DELAY_MINUTES", str(1 / 60))
    total, in_flight = 2000, asyncio.Semaphore(100)
    events = [new_event() for _ in range(total)]

    async def send(event: dict[str, Any]) -> func.HttpResponse:
        async with in_flight:
            return await call("events", event)

    static_env.default = DOWN
    first = await asyncio.gather(*(send(e) for e in events[: total // 2]))
    static_env.default = None  # CIJ is back: the circuit, open by now, closes on its next probe
    second = await asyncio.gather(*(send(e) for e in events[total // 2 :]))
    assert {(r.status_code, r.headers.get("X-Delivery")) for r in first} == {(202, "queued")}
    assert {r.status_code for r in second} == {202}
    queued = sum(r.headers.get("X-Delivery") == "queued" for r in second)
    assert await store.count() == total // 2 + queued
    await asyncio.sleep(1.2)  # those queued while the circuit was open wait one delay first
    assert await store.drain(pollers=4) == []  # competing consumers, like several instances
    assert await store.count() == 0
    ids = [e["TrackingId"] for e in static_env.received]
    assert len(ids) == total and set(ids) == {e["TrackingId"] for e in events}
