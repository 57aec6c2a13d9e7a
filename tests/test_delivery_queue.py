"""Durable delivery (DELIVERY_FALLBACK=queue) against a real queue service: Azurite on loopback.

Events CIJ cannot take now are stored and answered 202 + `X-Delivery: queued`; the `redeliver`
queue-trigger function, called in-process here the way the Functions host calls it, delivers them later.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from aiohttp import web
from azure.storage.queue.aio import QueueClient

from shared import relay
from tests.conftest import CA, CLIENT_ID, FUNCTIONS, INDEXED, ORG_ID, call, canonical, new_event, problem
from tests.fakes.azurite import Azurite, azurite_fixture, connection_string  # noqa: F401
from tests.fakes.identity import FakeManagedIdentity
from tests.fakes.servers import Served, free_port

DOWN = "503:1"  # CIJ down, asking for a 1 s pause: with a 1 s deadline the relay gives up at once
ROOT = Path(__file__).resolve().parents[1]


class Store:
    """The test's own view of the delivery queue, read as raw text exactly as it is stored."""

    def __init__(self, client: QueueClient) -> None:
        self.client = client

    async def count(self) -> int:
        return (await self.client.get_queue_properties()).approximate_message_count

    async def bodies(self) -> list[dict[str, Any]]:
        """Every stored message, base64-decoded and parsed (peeked: they stay on the queue)."""
        raw = [m.content async for m in self._peek_all()]
        return [json.loads(base64.b64decode(text, validate=True)) for text in raw]

    async def _peek_all(self) -> AsyncIterator[Any]:
        # Peek returns at most 32; receive+restore would change dequeue counts, so keep batches small.
        assert await self.count() <= 32, "peek only for small queues"
        for message in await self.client.peek_messages(max_messages=32):
            yield message

    async def drain(self, pollers: int = 1) -> list[BaseException]:
        """Run every message through `redeliver` as the host does: fetch up to 32 at a time and delete
        each one on success; on a failure make it visible again (the host would wait host.json's
        visibilityTimeout) and stop. `pollers` fetch loops run side by side, like several instances."""
        failures: list[BaseException] = []

        async def one(message: Any) -> None:
            body = base64.b64decode(message.content, validate=True)  # the host's base64 decoding
            queued = func.QueueMessage(id=message.id, body=body, pop_receipt=message.pop_receipt)
            try:
                await FUNCTIONS["redeliver"](queued)
            except Exception as exc:
                failures.append(exc)
                await self.client.update_message(message, visibility_timeout=0)
                return
            await self.client.delete_message(message)

        async def poll() -> None:
            while not failures:
                batch = [
                    m async for m in self.client.receive_messages(max_messages=32, visibility_timeout=60)
                ]
                if not batch:
                    return
                await asyncio.gather(*(one(m) for m in batch))

        await asyncio.gather(*(poll() for _ in range(pollers)))
        return failures


@pytest.fixture
async def store(monkeypatch: pytest.MonkeyPatch, azurite: Azurite) -> AsyncIterator[Store]:
    """DELIVERY_FALLBACK=queue on a fresh queue in Azurite; a 1 s forward deadline.
    List it after `static_env`/`kv_env` so its FORWARD_TIMEOUT_SECONDS wins."""
    name = f"pending-{uuid.uuid4().hex[:20]}"
    monkeypatch.setenv("DELIVERY_FALLBACK", "queue")
    monkeypatch.setenv("DELIVERY_QUEUE_NAME", name)
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    monkeypatch.setenv("FORWARD_TIMEOUT_SECONDS", "1")
    async with QueueClient.from_connection_string(azurite.connection_string, name) as client:
        await client.create_queue()
        yield Store(client)
        await client.delete_queue()


def assert_queued(response: func.HttpResponse) -> None:
    assert response.status_code == 202, response.get_body()
    assert response.headers["X-Delivery"] == "queued"
    assert json.loads(response.get_body()) == {"status": "queued"}


@pytest.mark.parametrize("outage", [DOWN, "503", "500", "429:0", "hang", "reset", "refused"])
async def test_cij_down_stores_the_canonical_event_and_answers_202_queued(static_env, store, outage):
    if outage == "refused":
        await static_env.served.stop()  # type: ignore[attr-defined]
    else:
        static_env.default = outage
    event = new_event(PushNotificationStatus="Opened", Extra="dropped")
    before = datetime.now(UTC)
    response = await call("events", event)
    assert_queued(response)
    [message] = await store.bodies()
    assert set(message) == {"event", "receivedAt"}
    assert message["event"] == canonical(event)
    assert list(message["event"]) == ["TrackingId", "DeviceToken", "PushNotificationStatus"]
    received_at = datetime.fromisoformat(message["receivedAt"])
    assert received_at.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= received_at <= datetime.now(UTC)
    text = json.dumps(message)
    assert ORG_ID not in text and "127.0.0.1" not in text  # only the event, never the target
    assert static_env.received == []


async def test_cij_up_answers_202_without_touching_the_queue(static_env, store):
    response = await call("events", new_event())
    assert response.status_code == 202 and "X-Delivery" not in response.headers
    assert await store.count() == 0


async def test_cij_400_and_misconfiguration_are_not_queued(static_env, store):
    static_env.then("400")
    assert (await call("events", new_event())).status_code == 400
    static_env.then("404")
    assert (await call("events", new_event())).status_code == 502
    assert await store.count() == 0


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
async def test_redelivery_raises_while_cij_cannot_take_the_event(static_env, store, still):
    static_env.default = DOWN
    event = new_event()
    assert_queued(await call("events", event))
    if still == "refused":
        await static_env.served.stop()  # type: ignore[attr-defined]
    else:
        static_env.default = still
    [failure] = await store.drain()
    assert isinstance(failure, relay.RedeliveryFailed)
    assert await store.count() == 1  # left for the host to retry (and, after 8 tries, the poison queue)
    [message] = await store.client.peek_messages()
    assert message.dequeue_count == 1
    assert [m["event"] for m in await store.bodies()] == [canonical(event)]


async def test_a_message_that_is_not_an_event_is_dropped_not_retried(static_env, store, caplog):
    for body in (b"not json", b'{"event": {"TrackingId": "x"}, "receivedAt": "now"}', b"[]"):
        await FUNCTIONS["redeliver"](func.QueueMessage(id="m", body=body))
    assert any("not a relay event" in r.getMessage() for r in caplog.records)
    assert static_env.requests == 0


async def test_key_vault_down_with_nothing_cached_is_queued_then_delivered(kv_env, cij, store):
    kv_env.fault = "down"
    event = new_event()
    assert_queued(await call("events", event))
    assert cij.requests == 0
    [failure] = await store.drain()  # the vault is still down: the host will retry
    assert isinstance(failure, relay.RedeliveryFailed)
    kv_env.fault = None
    await relay.reset()  # a later retry, past the resolver's back-off
    assert await store.drain() == []
    assert cij.received == [canonical(event)]
    assert await store.count() == 0


async def test_enqueue_failure_answers_5xx_with_retry_after_never_202(monkeypatch, static_env, store):
    monkeypatch.setenv("AzureWebJobsStorage", connection_string(free_port()))  # nothing listens there
    static_env.default = DOWN
    started = time.monotonic()
    response = await call("events", new_event())
    elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) >= 1
    assert "X-Delivery" not in response.headers
    assert problem(response)["type"] == "urn:cij-push-relay:problem:upstream-unavailable"
    assert elapsed < 8, f"the app waited {elapsed:.1f} s for an answer"


async def test_a_missing_queue_is_an_enqueue_failure_not_created_on_the_fly(monkeypatch, static_env, store):
    monkeypatch.setenv("DELIVERY_QUEUE_NAME", f"missing-{uuid.uuid4().hex[:12]}")
    static_env.default = DOWN
    response = await call("events", new_event())
    assert response.status_code == 503 and "X-Delivery" not in response.headers
    assert await store.count() == 0


async def test_storage_going_away_turns_202_queued_into_5xx(monkeypatch, static_env):
    own = Azurite().start()
    try:
        name = "pending-events"
        monkeypatch.setenv("DELIVERY_FALLBACK", "queue")
        monkeypatch.setenv("AzureWebJobsStorage", own.connection_string)
        monkeypatch.setenv("FORWARD_TIMEOUT_SECONDS", "1")
        async with QueueClient.from_connection_string(own.connection_string, name) as client:
            await client.create_queue()
        static_env.default = DOWN
        assert_queued(await call("events", new_event()))  # the default queue name, on the pooled client
    finally:
        own.stop()
    response = await call("events", new_event())
    assert response.status_code == 503 and "Retry-After" in response.headers
    assert "X-Delivery" not in response.headers


async def test_batch_items_are_queued_while_cij_is_down(static_env, store):
    static_env.default = DOWN
    events = [new_event(), {"TrackingId": "nope"}, new_event()]
    response = await call("events/batch", events)
    assert response.status_code == 200
    results = json.loads(response.get_body())["results"]
    assert results[0] == {"index": 0, "status": 202, "delivery": "queued"}
    assert results[1]["status"] == 400 and "delivery" not in results[1]
    assert results[2] == {"index": 2, "status": 202, "delivery": "queued"}
    assert sorted(m["event"]["TrackingId"] for m in await store.bodies()) == sorted(
        (events[0]["TrackingId"], events[2]["TrackingId"])
    )


async def test_batch_items_are_5xx_when_the_queue_is_unreachable(monkeypatch, static_env, store):
    monkeypatch.setenv("AzureWebJobsStorage", connection_string(free_port()))
    static_env.default = DOWN
    response = await call("events/batch", [new_event(), new_event()])
    results = json.loads(response.get_body())["results"]
    assert [r["status"] for r in results] == [503, 503]
    assert all("delivery" not in r and r["error"]["status"] == 503 for r in results)


async def test_fallback_none_never_touches_storage(monkeypatch, static_env):
    connections = 0

    async def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        writer.close()

    trap = await asyncio.start_server(count, "127.0.0.1", 0)
    port = trap.sockets[0].getsockname()[1]
    monkeypatch.setenv("AzureWebJobsStorage", connection_string(port))
    monkeypatch.setenv("AzureWebJobsStorage__queueServiceUri", f"http://127.0.0.1:{port}/devstoreaccount1")
    monkeypatch.setenv("FORWARD_TIMEOUT_SECONDS", "1")
    static_env.default = DOWN
    try:
        response = await call("events", new_event())
        batch = await call("events/batch", [new_event()])
    finally:
        trap.close()
        await trap.wait_closed()
    assert response.status_code == 503 and "X-Delivery" not in response.headers
    assert json.loads(batch.get_body())["results"][0]["status"] == 503
    assert relay.current().queue is None
    assert connections == 0


def test_the_queue_trigger_matches_what_the_relay_writes():
    [trigger] = [f.get_trigger() for f in INDEXED if f.get_function_name() == "redeliver"]
    assert trigger.queue_name == "%DELIVERY_QUEUE_NAME%"
    assert trigger.connection == "AzureWebJobsStorage"
    queues = json.loads((ROOT / "host.json").read_text())["extensions"]["queues"]
    assert queues["messageEncoding"] == "base64"  # the relay writes base64 (BinaryBase64EncodePolicy)
    assert queues["maxDequeueCount"] == 8  # then the host moves the message to <queue>-poison


async def test_load_2000_events_with_cij_down_for_the_first_half_all_arrive_once(static_env, store):
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
    assert await store.drain(pollers=4) == []  # competing consumers, like several instances
    assert await store.count() == 0
    ids = [e["TrackingId"] for e in static_env.received]
    assert len(ids) == total and set(ids) == {e["TrackingId"] for e in events}


class JWTIdentity(FakeManagedIdentity):
    """Issues JWT-shaped tokens, which Azurite's `--oauth basic` checks (lifetime, issuer, audience;
    not the signature)."""

    audience = "https://storage.azure.com"

    async def token(self, request: web.Request) -> web.Response:
        self.requests.append(dict(request.query))
        if request.headers.get("X-IDENTITY-HEADER") != self.header_secret:
            return web.json_response({"error": "invalid identity header"}, status=401)
        now = int(time.time())
        claims = {
            "aud": self.audience,
            "iss": "https://sts.windows.net/72f988bf-0000-0000-0000-000000000000/",
            "iat": now - 60,
            "nbf": now - 60,
            "exp": now + 3600,
            "oid": CLIENT_ID,
        }

        def part(value: dict[str, Any]) -> str:
            return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

        token = f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"
        self.issued.add(token)
        return web.json_response(
            {
                "access_token": token,
                "expires_on": str(now + 3600),
                "resource": request.query["resource"],
                "token_type": "Bearer",
                "client_id": request.query.get("client_id", "system-assigned"),
            }
        )


async def test_managed_identity_path_stores_with_a_bearer_token_over_https(monkeypatch, static_env, tmp_path):
    identity = JWTIdentity()
    served = await Served(identity.app).start()
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    issued = CA.issue_cert("127.0.0.1")
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    storage = Azurite("--oauth", "basic", "--cert", str(cert), "--key", str(key)).start()
    try:
        name = f"pending-{uuid.uuid4().hex[:20]}"
        monkeypatch.setenv("DELIVERY_FALLBACK", "queue")
        monkeypatch.setenv("DELIVERY_QUEUE_NAME", name)
        monkeypatch.setenv("AzureWebJobsStorage__queueServiceUri", storage.queue_service_uri)
        monkeypatch.setenv("IDENTITY_ENDPOINT", f"{served.url}msi/token")
        monkeypatch.setenv("IDENTITY_HEADER", identity.header_secret)
        monkeypatch.setenv("AZURE_CLIENT_ID", CLIENT_ID)
        monkeypatch.setenv("FORWARD_TIMEOUT_SECONDS", "1")
        static_env.default = DOWN
        async with QueueClient.from_connection_string(storage.connection_string, name) as client:
            await client.create_queue()
            event = new_event()
            assert_queued(await call("events", event))
            [message] = await client.peek_messages()
            assert json.loads(base64.b64decode(message.content))["event"] == canonical(event)
            assert [(q["resource"], q["client_id"]) for q in identity.requests] == [
                ("https://storage.azure.com", CLIENT_ID)
            ]
            # The same setup with a token for another audience is refused by Azurite: never 202.
            await relay.reset()
            identity.audience = "https://vault.azure.net"
            refused = await call("events", new_event())
            assert refused.status_code == 503 and "X-Delivery" not in refused.headers
            assert await client.peek_messages() and len(await client.peek_messages()) == 1
    finally:
        storage.stop()
        await served.stop()
