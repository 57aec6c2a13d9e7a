"""Durable fallback: events CIJ could not take now are stored on an Azure Storage queue."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.exceptions import AzureError

from .events import InvalidEvent, OpenEvent, validate_event
from .settings import Settings

# The app is waiting for its answer: two quick retries, not the SDK's default back-off (15 s, then
# 18 s: a storage outage held every request for ~45 s before its 5xx). The SDK's ExponentialRetry
# waits initial_backoff + increment_base**n ± random_jitter_range seconds before retry n: ~1 s each here.
_SDK_OPTIONS = {
    "retry_total": 2,
    "initial_backoff": 0,
    "increment_base": 1,
    "random_jitter_range": 0.5,
    "connection_timeout": 3,
    "read_timeout": 5,
}


ENQUEUE_TIMEOUT_SECONDS = 5.0  # the whole store, SDK retries included: the app is waiting
POISON_SUFFIX = "-poison"  # the host's poison queue for a queue trigger is <queue>-poison
NEVER_EXPIRES = -1  # a stored event lives until it is delivered or given up on, never expires
FUTURE_SKEW = timedelta(hours=1)  # a receivedAt later than now by more than this is not the relay's


class EnqueueFailed(Exception):
    """The event could not be stored; the app must be told to retry."""


def encode_message(event: OpenEvent, received_at: datetime, attempts: int = 0) -> bytes:
    """The queue message: the canonical event, when the relay first received it and, once it has
    been redelivered, how many redeliveries failed; nothing else."""
    data: dict[str, Any] = {
        "event": event.to_upstream(),
        "receivedAt": received_at.astimezone(UTC).isoformat(),
    }
    if attempts:
        data["attempts"] = attempts
    return json.dumps(data, separators=(",", ":")).encode()


def decode_message(body: bytes) -> tuple[OpenEvent, str]:
    """Read a queue message back into (event, receivedAt); InvalidEvent if it is not one of ours."""
    try:
        data: Any = json.loads(body)
        event, received_at = validate_event(data["event"]), str(data["receivedAt"])
    except (ValueError, KeyError, TypeError):
        raise InvalidEvent() from None
    return event, received_at


def read_message(body: bytes) -> tuple[OpenEvent, datetime, int]:
    """(event, receivedAt as an aware datetime, failed redeliveries); InvalidEvent if not ours."""
    event, text = decode_message(body)
    try:
        attempts: Any = json.loads(body).get("attempts", 0)
        received_at = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidEvent() from None
    if received_at.tzinfo is None or type(attempts) is not int or not 0 <= attempts < 1_000_000:
        raise InvalidEvent()
    if received_at > datetime.now(UTC) + FUTURE_SKEW:  # it would never grow old enough to give up on
        raise InvalidEvent()
    return event, received_at, attempts


def poison_envelope(body: bytes, reason: str) -> bytes:
    """What the relay puts on the poison queue: the reason, when, and the original message (as
    JSON when it is a JSON object, else its bytes in base64) for `python -m relayctl replay`."""
    try:
        original: Any = json.loads(body)
    except ValueError:
        original = None
    if not isinstance(original, dict):
        original = base64.b64encode(body).decode()
    envelope = {"reason": reason, "poisonedAt": datetime.now(UTC).isoformat(), "message": original}
    return json.dumps(envelope, separators=(",", ":")).encode()


class DeliveryQueue:
    """A long-lived QueueClient: managed identity in Azure, a connection string locally."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._clients: dict[str, Any] = {}
        self._credential: Any = None

    def _get_client(self, suffix: str = "") -> Any:
        """The QueueClient for the delivery queue, or for `<name><suffix>` (the poison queue)."""
        name = self._settings.delivery_queue_name + suffix
        if name not in self._clients:
            # Imported here: only apps with DELIVERY_FALLBACK=queue pay for the storage SDK.
            from azure.storage.queue import BinaryBase64DecodePolicy, BinaryBase64EncodePolicy
            from azure.storage.queue.aio import QueueClient

            s = self._settings
            # Base64 is what the Functions queue trigger expects by default (host.json messageEncoding).
            codecs = {
                "message_encode_policy": BinaryBase64EncodePolicy(),
                "message_decode_policy": BinaryBase64DecodePolicy(),
            }
            if s.queue_service_uri:
                if self._credential is None:
                    from azure.identity.aio import DefaultAzureCredential

                    self._credential = DefaultAzureCredential(exclude_interactive_browser_credential=True)
                client = QueueClient(
                    s.queue_service_uri, name, credential=self._credential, **codecs, **_SDK_OPTIONS
                )
            else:
                client = QueueClient.from_connection_string(
                    s.storage_connection_string or "", name, **codecs, **_SDK_OPTIONS
                )
            self._clients[name] = client
        return self._clients[name]

    async def put(self, event: OpenEvent, received_at: datetime, attempts: int = 0, delay: int = 0) -> None:
        """Store one event for redelivery, invisible for `delay` seconds and never expiring, or
        raise EnqueueFailed."""
        message = encode_message(event, received_at, attempts)
        send = self._get_client().send_message(message, visibility_timeout=delay, time_to_live=NEVER_EXPIRES)
        try:
            await asyncio.wait_for(send, ENQUEUE_TIMEOUT_SECONDS)
        except (AzureError, ValueError, OSError, TimeoutError) as exc:
            raise EnqueueFailed(type(exc).__name__) from None

    async def poison(self, body: bytes, reason: str) -> None:
        """Put a message the relay gives up on, with the reason, on `<name>-poison` (created when
        missing, as the host does), or raise EnqueueFailed."""
        from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

        client = self._get_client(POISON_SUFFIX)
        message = poison_envelope(body, reason)

        async def send() -> None:
            await client.send_message(message, time_to_live=NEVER_EXPIRES)

        try:
            try:
                await asyncio.wait_for(send(), ENQUEUE_TIMEOUT_SECONDS)
            except ResourceNotFoundError:
                with contextlib.suppress(ResourceExistsError):  # created meanwhile by another call
                    await asyncio.wait_for(client.create_queue(), ENQUEUE_TIMEOUT_SECONDS)
                await asyncio.wait_for(send(), ENQUEUE_TIMEOUT_SECONDS)
        except (AzureError, ValueError, OSError, TimeoutError) as exc:
            raise EnqueueFailed(type(exc).__name__) from None

    async def close(self) -> None:
        """Close the clients and their credential."""
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.close()
        if self._credential is not None:
            await self._credential.close()
        self._credential = None
