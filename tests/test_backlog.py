"""The queue-depth timer function against Azurite: both queues reported as `relay.queue.depth`, and
nothing reported when the fallback queue is off or storage cannot be read."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from azure.functions.timer import TimerRequest
from azure.storage.queue.aio import QueueServiceClient

from shared import backlog
from tests.conftest import FUNCTIONS, INDEXED
from tests.fakes.azurite import Azurite, azurite_fixture, connection_string, use_fallback_queue  # noqa: F401
from tests.fakes.servers import free_port
from tests.metrics_reader import Meter, meter_fixture  # noqa: F401


@pytest.fixture
async def queues(monkeypatch: pytest.MonkeyPatch, azurite: Azurite) -> AsyncIterator[QueueServiceClient]:
    """DELIVERY_FALLBACK=queue with a fresh queue name in Azurite (neither queue created yet)."""
    name = use_fallback_queue(monkeypatch, azurite)
    async with QueueServiceClient.from_connection_string(azurite.connection_string) as service:
        service.pending = name  # type: ignore[attr-defined]
        yield service
        for queue in (name, name + "-poison"):
            try:
                await service.delete_queue(queue)
            except Exception:  # noqa: S110  # never created
                pass


async def fill(service: QueueServiceClient, name: str, messages: int) -> None:
    client = service.get_queue_client(name)
    await client.create_queue()
    for i in range(messages):
        await client.send_message(f"message {i}")


def tick() -> TimerRequest:
    return TimerRequest(past_due=False)


def test_the_timer_runs_every_five_minutes():
    [function] = [f for f in INDEXED if f.get_function_name() == "queue_depth"]
    trigger = function.get_trigger()
    assert trigger.type == "timerTrigger"
    assert trigger.schedule == "0 */5 * * * *"


async def test_both_queues_are_reported(queues, meter: Meter):
    await fill(queues, queues.pending, 3)
    await fill(queues, queues.pending + "-poison", 2)
    await FUNCTIONS["queue_depth"](tick())
    assert meter.read().depth == {"pending": 3, "poison": 2}
    await queues.get_queue_client(queues.pending + "-poison").clear_messages()
    await FUNCTIONS["queue_depth"](tick())
    assert meter.read().depth == {"pending": 3, "poison": 0}


async def test_a_poison_queue_not_yet_created_is_zero(queues, meter: Meter):
    await fill(queues, queues.pending, 1)
    assert await backlog.report() == {"pending": 1, "poison": 0}
    assert meter.read().depth == {"pending": 1, "poison": 0}


async def test_nothing_is_reported_without_the_fallback_queue(monkeypatch, queues, meter: Meter):
    monkeypatch.setenv("DELIVERY_FALLBACK", "none")
    await fill(queues, queues.pending, 4)
    assert await backlog.report() is None
    assert "pending" not in meter.read().depth or meter.read().depth.get("pending") != 4


async def test_unreachable_storage_reports_nothing_and_says_why(monkeypatch, meter: Meter, caplog):
    monkeypatch.setenv("DELIVERY_FALLBACK", "queue")
    monkeypatch.setenv("AzureWebJobsStorage", connection_string(free_port()))  # nothing listens there
    monkeypatch.setattr(backlog, "READ_TIMEOUT_SECONDS", 5.0)
    before = meter.read().depth
    assert await backlog.report() is None
    assert meter.read().depth == before  # the last value stands; no made-up zero
    assert any("queue depth not reported" in r.getMessage() for r in caplog.records)


async def test_invalid_settings_report_nothing(monkeypatch):
    monkeypatch.setenv("DELIVERY_FALLBACK", "queue")  # without any storage setting: invalid
    assert await backlog.report() is None
