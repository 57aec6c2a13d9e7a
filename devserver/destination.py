"""Where the dev server's events go, checked before it serves: the target's settings are validated
as the relay would, and a short connection attempt tells whether anything answers there."""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.settings import Settings
from shared.target import InvalidTarget, normalise_endpoint, validate_org_id

from .errors import StartError

PROBE_SECONDS = 2.0


@dataclass(frozen=True)
class Destination:
    """A configured CIJ target (or Key Vault), described without the org ID."""

    description: str
    url: str  # what the probe connects to


def configured(settings: Settings, from_file: set[str]) -> Destination:
    """The target the settings name; StartError when the relay would reject it."""

    def origin(*names: str) -> str:
        return "local.settings.json" if any(n in from_file for n in names) else "the environment"

    if settings.key_vault_url:
        return Destination(
            f"the CIJ target read from the Key Vault on {_host_of(settings.key_vault_url)} "
            f"(KEY_VAULT_URL, from {origin('KEY_VAULT_URL')})",
            settings.key_vault_url,
        )
    org_id, endpoint = settings.org_id, settings.public_endpoint
    if not org_id or not endpoint:
        missing = "CIJ_ORG_ID" if not org_id else "CIJ_PUBLIC_ENDPOINT"
        raise StartError(f"{missing} is not set: set CIJ_ORG_ID and CIJ_PUBLIC_ENDPOINT, or KEY_VAULT_URL")
    try:
        validate_org_id(org_id)
        endpoint = normalise_endpoint(endpoint, settings.allowed_hosts)
    except InvalidTarget as exc:
        raise StartError(
            f"CIJ target rejected: {exc}; check CIJ_ORG_ID, CIJ_PUBLIC_ENDPOINT and CIJ_ALLOWED_HOSTS"
        ) from None
    return Destination(
        f"CIJ on {_host_of(endpoint)} (CIJ_PUBLIC_ENDPOINT, from {origin('CIJ_PUBLIC_ENDPOINT')})",
        endpoint,
    )


def _host_of(url: str) -> str:
    """The host of a URL: all that is shown of a target (the developer's own configuration, but an
    endpoint is not printed whole, as the relay never logs it)."""
    return urlsplit(url).hostname or "?"


async def unanswered(url: str) -> str | None:
    """Why nothing answers at the URL's host and port within PROBE_SECONDS (None: a TCP connection
    was accepted); the reason names neither."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), PROBE_SECONDS)
    except TimeoutError:
        return f"no connection within {PROBE_SECONDS:g} s"
    except socket.gaierror as exc:
        return f"host name not found: {exc.strerror}"
    except OSError as exc:
        return os.strerror(exc.errno) if exc.errno else type(exc).__name__
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), PROBE_SECONDS)
    except (TimeoutError, OSError):
        pass
    return None
