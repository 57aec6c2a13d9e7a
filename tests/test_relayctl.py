"""`python -m relayctl` end to end against Azurite: status, peek, replay and replay --dry-run, on
poison messages as the Functions host leaves them (the raw relay message) and as the relay gives
them up (an envelope with the reason); device tokens are never printed."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import pytest
from azure.storage.queue.aio import QueueServiceClient

from shared.delivery_queue import encode_message, poison_envelope
from shared.events import validate_event
from shared.relay import fingerprint
from tests.conftest import FUNCTIONS, TEXT_SOURCES, canonical, new_event, run_module
from tests.fakes.azurite import Azurite, azurite_fixture  # noqa: F401


def relay_message(event: dict[str, Any], hours_ago: float = 1) -> bytes:
    """The bytes the relay stores for `event` (before the queue's base64)."""
    return encode_message(validate_event(event), datetime.now(UTC) - timedelta(hours=hours_ago))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Queues:
    """A pending queue and its poison queue in Azurite, and relayctl pointed at them."""

    def __init__(self, service: QueueServiceClient, azurite: Azurite, name: str) -> None:
        self.service, self.azurite, self.name = service, azurite, name
        self.pending = service.get_queue_client(name)
        self.poison = service.get_queue_client(name + "-poison")

    def relayctl(self, *args: str) -> str:
        result = run_module(
            "relayctl", "--connection-string", self.azurite.connection_string, "--queue", self.name, *args
        )
        TEXT_SOURCES.append(lambda: result.stdout + result.stderr)  # checked for tokens at the end
        assert result.returncode == 0, result.stderr
        return result.stdout

    async def contents(self, client: Any) -> list[str]:
        return [m.content for m in await client.peek_messages(max_messages=32)]


@pytest.fixture
async def queues(azurite: Azurite) -> AsyncIterator[Queues]:
    name = f"pending-{uuid.uuid4().hex[:20]}"
    async with QueueServiceClient.from_connection_string(azurite.connection_string) as service:
        q = Queues(service, azurite, name)
        await q.pending.create_queue()
        await q.poison.create_queue()
        yield q
        await q.pending.delete_queue()
        await q.poison.delete_queue()


async def test_status_reports_depth_and_oldest_age_of_both_queues(queues: Queues):
    for _ in range(3):
        await queues.pending.send_message(b64(relay_message(new_event())))
    await queues.poison.send_message(b64(relay_message(new_event())))
    report = json.loads(queues.relayctl("status", "--json"))
    assert report["pending"]["messages"] == 3 and report["poison"]["messages"] == 1
    assert report["pending"]["queue"] == queues.name and report["poison"]["queue"] == queues.name + "-poison"
    assert 0 <= report["pending"]["oldestAgeSeconds"] < 120
    text = queues.relayctl("status")
    assert "pending" in text and "poison" in text and " 3 " in text


async def test_status_of_a_poison_queue_never_created(queues: Queues):
    await queues.poison.delete_queue()
    report = json.loads(queues.relayctl("status", "--json"))
    assert report["poison"] == {
        "queue": queues.name + "-poison",
        "messages": 0,
        "oldest": None,
        "oldestAgeSeconds": None,
    }
    await queues.poison.create_queue()


async def test_peek_shows_reason_and_fingerprint_never_the_token(queues: Queues):
    given_up, host_poisoned = new_event(), new_event(DeviceToken="a" * 64)
    envelope = {"reason": "CIJ unavailable for 72 hours", "message": json.loads(relay_message(given_up))}
    await queues.poison.send_message(b64(json.dumps(envelope).encode()))
    await queues.poison.send_message(b64(relay_message(host_poisoned)))
    await queues.poison.send_message("not a relay message")
    before = await queues.contents(queues.poison)
    peeked = json.loads(queues.relayctl("peek", "--json"))
    by_tracking = {p["trackingId"]: p for p in peeked}
    assert by_tracking[given_up["TrackingId"]]["reason"] == "CIJ unavailable for 72 hours"
    assert by_tracking[given_up["TrackingId"]]["device"] == fingerprint(given_up["DeviceToken"])
    assert by_tracking[host_poisoned["TrackingId"]]["reason"] is None
    assert by_tracking[None]["replayable"] is False
    text = queues.relayctl("peek")
    assert "CIJ unavailable for 72 hours" in text and fingerprint(host_poisoned["DeviceToken"]) in text
    assert "not recorded" in text and "will not be replayed" in text
    assert await queues.contents(queues.poison) == before  # peek changes nothing


async def test_replay_moves_each_event_back_once_and_the_relay_delivers_it(static_env, queues: Queues):
    a, b, c, waiting = new_event(), new_event(), new_event(), new_event()
    await queues.pending.send_message(b64(relay_message(waiting)))
    as_object = {"reason": "gave up", "message": json.loads(relay_message(a))}
    as_base64 = {"reason": "gave up", "message": b64(relay_message(b))}
    for body in (
        json.dumps(as_object).encode(),
        json.dumps(as_base64).encode(),
        relay_message(c),  # as the host leaves it
        relay_message(c),  # the same event given up on twice
        relay_message(waiting),  # already back on the pending queue
    ):
        await queues.poison.send_message(b64(body))
    await queues.poison.send_message("garbage")

    dry = queues.relayctl("replay", "--dry-run")
    assert "would replay 3, duplicates 2, not replayable 1" in dry
    assert len(await queues.contents(queues.poison)) == 6 and len(await queues.contents(queues.pending)) == 1

    done = queues.relayctl("replay")
    assert "replayed 3, duplicates 2, not replayable 1" in done
    assert await queues.contents(queues.poison) == ["garbage"]
    pending = await queues.contents(queues.pending)
    assert len(pending) == 4
    stored = [json.loads(base64.b64decode(text, validate=True)) for text in pending]
    assert sorted(m["event"]["TrackingId"] for m in stored) == sorted(
        e["TrackingId"] for e in (a, b, c, waiting)
    )

    for text in pending:  # the queue trigger takes what relayctl wrote, as the host hands it over
        await FUNCTIONS["redeliver"](func.QueueMessage(id="m", body=base64.b64decode(text)))
    assert sorted(static_env.received, key=lambda e: e["TrackingId"]) == sorted(
        (canonical(e) for e in (a, b, c, waiting)), key=lambda e: e["TrackingId"]
    )


async def test_the_relays_own_poison_envelopes_are_read_and_replayed(queues: Queues):
    """What the relay writes when it gives up (shared/delivery_queue.poison_envelope), as it writes it."""
    old, garbled = new_event(), b"\x00not json"
    await queues.poison.send_message(b64(poison_envelope(relay_message(old, hours_ago=80), "too old")))
    await queues.poison.send_message(b64(poison_envelope(garbled, "not a relay event")))
    peeked = {p["trackingId"]: p for p in json.loads(queues.relayctl("peek", "--json"))}
    assert peeked[old["TrackingId"]]["reason"] == "too old" and peeked[old["TrackingId"]]["replayable"]
    assert peeked[None]["reason"] == "not a relay event" and not peeked[None]["replayable"]
    assert "replayed 1, duplicates 0, not replayable 1" in queues.relayctl("replay")
    [text] = await queues.contents(queues.pending)
    assert json.loads(base64.b64decode(text))["event"]["TrackingId"] == old["TrackingId"]


async def test_replay_max_stops_after_that_many(queues: Queues):
    for _ in range(5):
        await queues.poison.send_message(b64(relay_message(new_event())))
    assert "replayed 2, duplicates 0" in queues.relayctl("replay", "--max", "2")
    props = await queues.pending.get_queue_properties()
    assert props.approximate_message_count == 2
    assert len(await queues.contents(queues.poison)) == 3  # the rest are visible again at once


def test_without_a_queue_service_it_says_what_to_give():
    result = run_module("relayctl", "status")
    assert result.returncode != 0
    assert "--account" in result.stderr and "--connection-string" in result.stderr
