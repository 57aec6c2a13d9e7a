"""The redelivery backlog: how many events wait on the pending queue and how many were given up on
(the `-poison` queue), reported as `relay.queue.depth` and read by `python -m relayctl`.

Azure's own storage metrics cannot tell the two queues apart (they are per account, hourly).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from azure.core.exceptions import AzureError, ResourceNotFoundError

from . import metrics
from . import settings as settings_module

log = logging.getLogger("cij_relay.backlog")

POISON_SUFFIX = "-poison"  # the Functions host's name for a queue's poison queue
READ_TIMEOUT_SECONDS = 30.0


def queue_names(pending: str) -> dict[str, str]:
    """`pending` and `poison` -> the storage queue names."""
    return {"pending": pending, "poison": pending + POISON_SUFFIX}


async def depth(service: Any, name: str) -> int:
    """Approximate number of messages on queue `name` (0 when it does not exist, as the poison queue
    does not until the first message is given up on)."""
    try:
        properties = await service.get_queue_client(name).get_queue_properties()
    except ResourceNotFoundError:
        return 0
    return int(properties.approximate_message_count or 0)


def service_client(settings: settings_module.Settings) -> tuple[Any, Any]:
    """(QueueServiceClient, credential or None): the managed identity when a queue service URI is
    set, the connection string otherwise (local runs, Azurite)."""
    from azure.storage.queue.aio import QueueServiceClient

    if settings.queue_service_uri:
        from azure.identity.aio import DefaultAzureCredential

        credential = DefaultAzureCredential(exclude_interactive_browser_credential=True)
        return QueueServiceClient(settings.queue_service_uri, credential=credential), credential
    return QueueServiceClient.from_connection_string(settings.storage_connection_string or ""), None


async def report() -> dict[str, int] | None:
    """Set `relay.queue.depth` for both queues and export it now; None (and nothing reported) when
    the fallback queue is not in use, the settings are invalid, or storage cannot be read."""
    try:
        settings = settings_module.load()
    except settings_module.ConfigError:
        return None  # the relay itself reports invalid settings
    if settings.delivery_fallback != "queue":
        return None
    service, credential = service_client(settings)
    try:
        async with service:
            names = queue_names(settings.delivery_queue_name)
            found = await asyncio.wait_for(
                asyncio.gather(*(depth(service, name) for name in names.values())), READ_TIMEOUT_SECONDS
            )
    except (AzureError, OSError, TimeoutError) as exc:
        # No value rather than a wrong one: the alerts treat missing data as a fault of their own.
        log.warning("queue depth not reported: reading the queues failed (%s)", type(exc).__name__)
        return None
    finally:
        if credential is not None:
            await credential.close()
    depths = dict(zip(names, found, strict=True))
    for queue, messages in depths.items():
        metrics.queue_depth(queue, messages)
    await asyncio.to_thread(metrics.flush)
    return depths
