"""devserver/queue_trigger.py: the host's queue trigger against Azurite — host.json's options, delete
on success, visible again on failure, the poison queue after maxDequeueCount."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import uuid

import pytest
from azure.storage.queue import QueueClient

from devserver import queue_trigger
from devserver.queue_trigger import QueueOptions, UnresolvedSetting, options
from tests.fakes.azurite import Azurite, azurite_fixture  # noqa: F401


def test_host_json_options_and_their_app_setting_overrides(tmp_path):
    host = tmp_path / "host.json"
    host.write_text(
        json.dumps(
            {
                "version": "2.0",
                "extensions": {
                    "queues": {"maxDequeueCount": 8, "visibilityTimeout": "00:05:00", "batchSize": 16}
                },
            }
        )
    )
    assert options(host, {}) == QueueOptions(16, 8, 300.0, 60.0, "base64")
    overridden = options(
        host,
        {
            "AzureFunctionsJobHost__extensions__queues__visibilityTimeout": "00:00:30",
            "AzureFunctionsJobHost__extensions__queues__maxPollingInterval": "2000",
            "AzureFunctionsJobHost__extensions__queues__messageEncoding": "None",
        },
    )
    assert overridden == QueueOptions(16, 8, 30.0, 2.0, "none")


def test_the_repository_host_json_is_read_as_the_host_reads_it():
    assert options(env={}) == QueueOptions(16, 8, 300.0, 60.0, "base64")


class FakeFunction:
    """A queue-triggered function: what the host handed it; raises while `failing`."""

    def __init__(self, trigger_queue: str, failing: bool = False) -> None:
        self.bodies: list[bytes] = []
        self.dequeue_counts: list[int] = []
        self.failing = failing
        self.trigger_queue = trigger_queue

    async def __call__(self, msg) -> None:
        self.bodies.append(msg.get_body())
        self.dequeue_counts.append(msg.dequeue_count)
        if self.failing:
            raise RuntimeError("CIJ still down")

    def indexed(self):
        """Stands in for FunctionApp.get_functions(): one queue trigger on %TEST_QUEUE%."""
        function = self

        class Trigger:
            type = "queueTrigger"
            queue_name = "%TEST_QUEUE%"
            connection = "TEST_STORAGE"

        class Indexed:
            def get_trigger(self):
                return Trigger()

            def get_function_name(self):
                return "redeliver"

            def get_user_function(self):
                return function

        return [Indexed()]


@pytest.fixture
def queues(azurite, monkeypatch):
    name = f"q{uuid.uuid4().hex[:12]}"
    for queue in (name, f"{name}-poison"):
        QueueClient.from_connection_string(azurite.connection_string, queue).create_queue()
    monkeypatch.setenv("TEST_QUEUE", name)
    monkeypatch.setenv("TEST_STORAGE", azurite.connection_string)
    return (
        QueueClient.from_connection_string(azurite.connection_string, name),
        QueueClient.from_connection_string(azurite.connection_string, f"{name}-poison"),
    )


FAST = QueueOptions(batch_size=16, max_dequeue_count=3, visibility_timeout=0, max_polling_interval=0.2)


async def until(condition, seconds: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_a_message_is_decoded_handed_over_and_deleted(queues):
    queue, _ = queues
    function = FakeFunction(os.environ["TEST_QUEUE"])
    body = json.dumps({"event": {"TrackingId": str(uuid.uuid4())}}).encode()
    queue.send_message(base64.b64encode(body).decode())
    async with queue_trigger.running(function.indexed(), FAST) as described:
        assert described == [f"redeliver <- {os.environ['TEST_QUEUE']}"]
        await until(lambda: function.bodies)
        await until(lambda: queue.get_queue_properties().approximate_message_count == 0)
    assert function.bodies == [body] and function.dequeue_counts == [1]


async def test_a_failing_message_is_retried_then_moved_unchanged_to_the_poison_queue(queues):
    queue, poison = queues
    function = FakeFunction(os.environ["TEST_QUEUE"], failing=True)
    content = base64.b64encode(b'{"event": "x"}').decode()
    queue.send_message(content)
    async with queue_trigger.running(function.indexed(), FAST):
        # Moved means both: the copy is on the poison queue and the original has been deleted.
        await until(
            lambda: poison.get_queue_properties().approximate_message_count == 1
            and queue.get_queue_properties().approximate_message_count == 0
        )
    assert function.dequeue_counts == [1, 2, 3]
    assert [m.content for m in poison.peek_messages()] == [content]
    assert queue.get_queue_properties().approximate_message_count == 0


async def test_a_body_that_is_not_base64_fails_like_any_invocation(queues):
    queue, poison = queues
    function = FakeFunction(os.environ["TEST_QUEUE"])
    queue.send_message("not base64 at all!")
    async with queue_trigger.running(function.indexed(), FAST):
        await until(lambda: poison.get_queue_properties().approximate_message_count == 1)
    assert function.bodies == []


def test_a_queue_name_naming_a_missing_app_setting_is_refused(monkeypatch):
    monkeypatch.delenv("TEST_QUEUE", raising=False)
    with pytest.raises(UnresolvedSetting, match="TEST_QUEUE"):
        queue_trigger.queue_triggers(FakeFunction("x").indexed())
