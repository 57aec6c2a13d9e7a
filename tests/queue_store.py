"""The tests' own view of the delivery queue in Azurite, and the fixture that turns the queue on."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import azure.functions as func
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue.aio import QueueClient

from tests.conftest import FUNCTIONS
from tests.fakes.azurite import Azurite

DOWN = "503:1"  # CIJ down, asking for a 1 s pause: with a 1 s deadline the relay gives up at once


class Store:
    """The test's own view of the delivery queue, read as raw text exactly as it is stored."""

    def __init__(self, client: QueueClient, poison: QueueClient) -> None:
        self.client, self.poison = client, poison

    async def count(self) -> int:
        return (await self.client.get_queue_properties()).approximate_message_count

    async def bodies(self) -> list[dict[str, Any]]:
        """Every stored message, base64-decoded and parsed (peeked: they stay on the queue)."""
        raw = [m.content async for m in self._peek_all()]
        return [json.loads(base64.b64decode(text, validate=True)) for text in raw]

    async def poisoned(self) -> list[dict[str, Any]]:
        """The envelopes on the poison queue (base64 JSON, as the relay writes them)."""
        try:
            peeked = await self.poison.peek_messages(max_messages=32)
        except ResourceNotFoundError:  # created by the relay (or the host) on first use
            return []
        return [json.loads(base64.b64decode(m.content, validate=True)) for m in peeked]

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


@pytest.fixture(name="store")
async def store_fixture(monkeypatch: pytest.MonkeyPatch, azurite: Azurite) -> AsyncIterator[Store]:
    """DELIVERY_FALLBACK=queue on a fresh queue in Azurite (its -poison queue removed after the test);
    a 1 s forward deadline.
    List it after `static_env`/`kv_env` so its FORWARD_TIMEOUT_SECONDS wins."""
    name = f"pending-{uuid.uuid4().hex[:20]}"
    monkeypatch.setenv("DELIVERY_FALLBACK", "queue")
    monkeypatch.setenv("DELIVERY_QUEUE_NAME", name)
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    monkeypatch.setenv("FORWARD_TIMEOUT_SECONDS", "1")
    async with (
        QueueClient.from_connection_string(azurite.connection_string, name) as client,
        QueueClient.from_connection_string(azurite.connection_string, f"{name}-poison") as poison,
    ):
        await client.create_queue()
        yield Store(client, poison)
        await client.delete_queue()
        with contextlib.suppress(ResourceNotFoundError):
            await poison.delete_queue()


def assert_queued(response: func.HttpResponse) -> None:
    """202 + `X-Delivery: queued`: the event was stored."""
    assert response.status_code == 202, response.get_body()
    assert response.headers["X-Delivery"] == "queued"
    assert json.loads(response.get_body()) == {"status": "queued"}
