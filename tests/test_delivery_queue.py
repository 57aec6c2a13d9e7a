"""Storing events (DELIVERY_FALLBACK=queue) against a real queue service: Azurite on loopback.

Events CIJ cannot take now are stored and answered 202 + `X-Delivery: queued`; what happens to
them then (the `redeliver` queue trigger) is in test_redelivery.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from azure.storage.queue.aio import QueueClient

from shared import relay
from tests.conftest import CA, CLIENT_ID, ORG_ID, call, canonical, new_event, problem
from tests.fakes.azurite import Azurite, azurite_fixture, connection_string  # noqa: F401
from tests.fakes.identity import FakeManagedIdentity
from tests.fakes.servers import Served, free_port
from tests.queue_store import DOWN, assert_queued, store_fixture  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]


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
