"""The Functions host's queue trigger, for the dev server: polls each queue-triggered function's
queue and calls the function as the host does, with host.json's `extensions.queues` options.

As the host: a message is read with a 10-minute lease, decoded per `messageEncoding`, handed to
the function as a `func.QueueMessage` (the batch's messages concurrently); deleted when the
function returns; when it raises, made visible again after `visibilityTimeout`, or moved unchanged
to `<queue>-poison` once read `maxDequeueCount` times. An empty queue is polled less and less
often, up to `maxPollingInterval`. `%NAME%` in a queue name and the connection are app settings;
`AzureFunctionsJobHost__extensions__queues__<option>` in the environment overrides host.json, as
an app setting does in Azure.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import azure.functions as func
from azure.functions.queue import QueueMessage

ROOT = Path(__file__).resolve().parent.parent
LEASE_SECONDS = 600  # how long a message being processed stays invisible (the host's 10 minutes)
MIN_POLLING_SECONDS = 0.1
OVERRIDE_PREFIX = "AzureFunctionsJobHost__extensions__queues__"
log = logging.getLogger("devserver.queue")

Function = Callable[[func.QueueMessage], Awaitable[None]]


@dataclass(frozen=True)
class QueueOptions:
    """host.json `extensions.queues`, with the host's defaults."""

    batch_size: int = 16
    max_dequeue_count: int = 5
    visibility_timeout: float = 0.0  # seconds
    max_polling_interval: float = 60.0  # seconds
    message_encoding: str = "base64"


def _seconds(value: Any) -> float:
    """A host.json time span ("00:05:00", "1.00:00:00") or a number of milliseconds, in seconds."""
    if isinstance(value, int | float) or str(value).strip().isdigit():
        return float(value) / 1000
    match = re.fullmatch(r"(?:(\d+)\.)?(\d+):(\d+):(\d+(?:\.\d+)?)", str(value).strip())
    if not match:
        raise ValueError(f"not a time span: {value!r}")
    days, hours, minutes, seconds = match.groups()
    return ((int(days or 0) * 24 + int(hours)) * 60 + int(minutes)) * 60 + float(seconds)


def options(host_json: Path = ROOT / "host.json", env: Mapping[str, str] | None = None) -> QueueOptions:
    """The queue options of host.json, overridden by AzureFunctionsJobHost__ settings."""
    env = os.environ if env is None else env
    configured = {
        key.lower(): value
        for key, value in json.loads(host_json.read_text()).get("extensions", {}).get("queues", {}).items()
    }
    for key, value in env.items():
        if key.lower().startswith(OVERRIDE_PREFIX.lower()):
            configured[key[len(OVERRIDE_PREFIX) :].lower()] = value
    defaults = QueueOptions()
    return QueueOptions(
        batch_size=int(configured.get("batchsize", defaults.batch_size)),
        max_dequeue_count=int(configured.get("maxdequeuecount", defaults.max_dequeue_count)),
        visibility_timeout=_seconds(configured.get("visibilitytimeout", "00:00:00")),
        max_polling_interval=_seconds(configured.get("maxpollinginterval", "00:01:00")),
        message_encoding=str(configured.get("messageencoding", defaults.message_encoding)).lower(),
    )


class UnresolvedSetting(LookupError):
    """A binding names an app setting (`%NAME%`) that is not set: the host would not start it."""


def _app_setting(value: str) -> str:
    """`%NAME%` resolved from the app settings (the environment), as the host resolves bindings."""

    def setting(match: re.Match[str]) -> str:
        if not os.environ.get(match.group(1)):
            raise UnresolvedSetting(f"{value} names the app setting {match.group(1)}, which is not set")
        return os.environ[match.group(1)]

    return re.sub(r"%([^%]+)%", setting, value)


def queue_triggers(functions: list[Any]) -> list[tuple[str, str, str, Function]]:
    """(function name, queue name, connection setting, user function) for every queue trigger
    among a FunctionApp's indexed functions."""
    triggers = []
    for function in functions:
        trigger = function.get_trigger()
        if trigger.type == "queueTrigger":
            triggers.append(
                (
                    function.get_function_name(),
                    _app_setting(trigger.queue_name),
                    trigger.connection or "AzureWebJobsStorage",
                    function.get_user_function(),
                )
            )
    return triggers


class QueueListener:
    """Polls one queue and invokes one function per message, as the host's queue listener does."""

    def __init__(self, name: str, function: Function, connection_string: str, queue: str, opts: QueueOptions):
        from azure.storage.queue.aio import QueueClient

        self.name, self.function, self.options = name, function, opts
        self.queue = QueueClient.from_connection_string(connection_string, queue)
        self.poison = QueueClient.from_connection_string(connection_string, f"{queue}-poison")

    async def run(self) -> None:
        """Poll until cancelled: at once while messages come, backing off while the queue is empty."""
        delay = MIN_POLLING_SECONDS
        async with self.queue, self.poison:
            while True:
                try:
                    found = await self.poll()
                except Exception as exc:  # storage unavailable: keep polling, as the host does
                    log.warning("queue trigger %s: polling failed: %s", self.name, type(exc).__name__)
                    found = 0
                if found:
                    delay = MIN_POLLING_SECONDS
                    continue
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))  # noqa: S311 - jitter, not secrecy
                delay = min(delay * 2, self.options.max_polling_interval)

    async def poll(self) -> int:
        """Read up to batchSize messages and process them concurrently; how many there were."""
        messages = [
            message
            async for message in self.queue.receive_messages(
                messages_per_page=self.options.batch_size,
                max_messages=self.options.batch_size,
                visibility_timeout=LEASE_SECONDS,
            )
        ]
        await asyncio.gather(*(self.process(message) for message in messages))
        return len(messages)

    def decode(self, content: str) -> bytes:
        """The message's body as the function receives it."""
        if self.options.message_encoding == "base64":
            return base64.b64decode(content, validate=True)
        return content.encode()

    async def process(self, message: Any) -> None:
        """Invoke the function with one message; delete, retry later, or move it to the poison queue."""
        started = time.perf_counter()
        try:
            body = self.decode(message.content)
            await self.function(
                QueueMessage(
                    id=message.id,
                    body=body,
                    dequeue_count=message.dequeue_count,
                    expiration_time=message.expires_on,
                    insertion_time=message.inserted_on,
                    time_next_visible=message.next_visible_on,
                    pop_receipt=message.pop_receipt,
                )
            )
        except Exception as exc:  # a body that cannot be decoded fails like any other invocation
            self._executed(message, started, f"Failed, {type(exc).__name__}")
            await self.failed(message)
        else:
            self._executed(message, started, "Succeeded")
            await self.queue.delete_message(message)

    async def failed(self, message: Any) -> None:
        """Make the message visible again after visibilityTimeout, or give it to the poison queue."""
        if message.dequeue_count >= self.options.max_dequeue_count:
            await self.poison.send_message(message.content)
            await self.queue.delete_message(message)
            log.warning(
                "queue trigger %s: message %s moved to the poison queue after %d attempts",
                self.name,
                message.id,
                message.dequeue_count,
            )
            return
        await self.queue.update_message(message, visibility_timeout=int(self.options.visibility_timeout))

    def _executed(self, message: Any, started: float, result: str) -> None:
        ms = (time.perf_counter() - started) * 1000
        log.info(
            "Executed 'Functions.%s' (%s, message %s, attempt %d, %.0f ms)",
            self.name,
            result,
            message.id,
            message.dequeue_count,
            ms,
        )


@contextlib.asynccontextmanager
async def running(functions: list[Any], opts: QueueOptions | None = None) -> AsyncIterator[list[str]]:
    """Run a listener for every queue trigger among a FunctionApp's indexed functions for the block;
    yields their descriptions ("function <- queue")."""
    opts = opts or options()
    listeners = []
    for name, queue, connection, function in queue_triggers(functions):
        connection_string = os.environ.get(connection)
        if connection_string:
            listeners.append(
                (f"{name} <- {queue}", QueueListener(name, function, connection_string, queue, opts))
            )
    tasks = [asyncio.create_task(listener.run()) for _, listener in listeners]
    try:
        yield [description for description, _ in listeners]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
