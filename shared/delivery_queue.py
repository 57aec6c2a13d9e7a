"""Durable fallback: events CIJ could not take now are stored on an Azure Storage queue."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
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


class EnqueueFailed(Exception):
    """The event could not be stored; the app must be told to retry."""


def encode_message(event: OpenEvent, received_at: datetime) -> bytes:
    """The queue message: the canonical event and when the relay first received it, nothing else."""
    return json.dumps(
        {"event": event.to_upstream(), "receivedAt": received_at.astimezone(UTC).isoformat()},
        separators=(",", ":"),
    ).encode()


def decode_message(body: bytes) -> tuple[OpenEvent, str]:
    """Read a queue message back into (event, receivedAt); InvalidEvent if it is not one of ours."""
    try:
        data: Any = json.loads(body)
        event, received_at = validate_event(data["event"]), str(data["receivedAt"])
    except (ValueError, KeyError, TypeError):
        raise InvalidEvent() from None
    return event, received_at


class DeliveryQueue:
    """A long-lived QueueClient: managed identity in Azure, a connection string locally."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: Any = None
        self._credential: Any = None

    def _get_client(self) -> Any:
        if self._client is None:
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
                from azure.identity.aio import DefaultAzureCredential

                self._credential = DefaultAzureCredential(exclude_interactive_browser_credential=True)
                self._client = QueueClient(
                    s.queue_service_uri,
                    s.delivery_queue_name,
                    credential=self._credential,
                    **codecs,
                    **_SDK_OPTIONS,
                )
            else:
                self._client = QueueClient.from_connection_string(
                    s.storage_connection_string or "", s.delivery_queue_name, **codecs, **_SDK_OPTIONS
                )
        return self._client

    async def put(self, event: OpenEvent, received_at: datetime) -> None:
        """Store one event for redelivery, or raise EnqueueFailed."""
        try:
            await asyncio.wait_for(
                self._get_client().send_message(encode_message(event, received_at)), ENQUEUE_TIMEOUT_SECONDS
            )
        except (AzureError, ValueError, OSError, TimeoutError) as exc:
            raise EnqueueFailed(type(exc).__name__) from None

    async def close(self) -> None:
        """Close the client and its credential."""
        if self._client is not None:
            await self._client.close()
        if self._credential is not None:
            await self._credential.close()
        self._client = self._credential = None
