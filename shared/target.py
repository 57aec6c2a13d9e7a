"""The CIJ target (org ID + public endpoint): where it comes from, how it is checked and cached."""

from __future__ import annotations

import asyncio
import fnmatch
import ipaddress
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol
from urllib.parse import urlsplit

import idna

from .events import GUID
from .metrics import target_refreshed
from .settings import Settings, is_loopback_host

log = logging.getLogger("cij_relay.target")

# CIJ's push data receiver, relative to the public endpoint (`{org_id}` is aiohttp route syntax too).
EVENTS_PATH = "api/v1.0/orgs/{org_id}/pushdatareceiver/events"
STALE_MAX_SECONDS = 24 * 3600
REFRESH_AHEAD = 0.8  # the background refresh starts at this fraction of SECRET_CACHE_TTL_SECONDS
READ_TIMEOUT_SECONDS = 5.0  # one refresh, both secrets, SDK retries included
_RETRY_FLOOR, _RETRY_CAP = 1.0, 60.0


class TargetUnavailable(Exception):
    """The org ID and endpoint cannot be had, or are not valid; CIJ is not called."""

    def __init__(self, reason: str, retry_after: int = 5) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class InvalidTarget(ValueError):
    """A secret's value does not pass validation."""


@dataclass(frozen=True)
class Target:
    """Where events go: the validated org ID and the normalised endpoint (ending in `/`)."""

    org_id: str
    base_url: str

    @cached_property
    def events_url(self) -> str:
        """The CIJ push data receiver URL for this org (built once per target)."""
        return self.base_url + EVENTS_PATH.format(org_id=self.org_id)


# A host name label (RFC 952/1123 "LDH": letters, digits, inner hyphens; 1-63 characters).
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# A last label that resolvers would read as part of an IPv4 address ("127.1", "0x7f.1"): not a name.
_NUMERIC = re.compile(r"[0-9]+|0x[0-9a-f]*")
# The path prefix: RFC 3986 path characters and percent escapes, nothing else.
_PATH = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*")
_MAX_HOST_CHARS = 253


def valid_host(host: str) -> str:
    """`host` as an IP literal (no zone) or a DNS host name in A-labels (LDH labels of at most 63
    characters, at most 253 in all, IDNA 2008 rules for internationalised names); else InvalidTarget."""
    invalid = InvalidTarget("endpoint host is not a valid host name or IP address")
    if "%" in host:  # IPv6 zone IDs and percent-escapes: no host needs them
        raise invalid
    try:
        return ipaddress.ip_address(host).compressed
    except ValueError:
        pass
    name = host[:-1] if host.endswith(".") else host  # the root label of a fully qualified name
    try:
        name = idna.encode(name, uts46=True).decode("ascii") if not name.isascii() else name
        labels = name.split(".")
        if any(label.startswith("xn--") for label in labels):
            idna.decode(name)  # an A-label must decode to a valid U-label
    except (idna.IDNAError, UnicodeError, ValueError):
        raise invalid from None
    if (
        len(name) > _MAX_HOST_CHARS
        or not all(_LABEL.fullmatch(label) for label in labels)
        or _NUMERIC.fullmatch(labels[-1])
    ):
        raise invalid
    return name


def normalise_endpoint(raw: str, allowed_hosts: tuple[str, ...]) -> str:
    """Check the endpoint (a valid host first, then the allow-list) and return it as
    `scheme://host[:port][/prefix]/`."""
    raw = raw.strip()
    if not raw.isprintable() or " " in raw:  # urlsplit would silently drop tabs and newlines
        raise InvalidTarget("endpoint holds whitespace or control characters")
    if "://" not in raw:
        raw = "https://" + raw
    try:
        parts = urlsplit(raw)
        host, port = (parts.hostname or "").lower(), parts.port
    except ValueError:
        raise InvalidTarget("endpoint is not a URL") from None
    if not host or parts.username or parts.password or parts.query or parts.fragment:
        raise InvalidTarget("endpoint must be a plain URL: scheme, host and an optional path")
    host = valid_host(host)
    if parts.netloc.startswith("[") != (":" in host):  # brackets hold an IPv6 address, nothing else
        raise InvalidTarget("endpoint host is not a valid host name or IP address")
    if port == 0:
        raise InvalidTarget("endpoint port must be 1-65535")
    path = parts.path.strip("/")
    segments = path.lower().replace("%2e", ".").split("/")
    if not _PATH.fullmatch(path) or "." in segments or ".." in segments:
        raise InvalidTarget("endpoint path must be plain URL path characters")
    if parts.scheme != "https" and not (parts.scheme == "http" and is_loopback_host(host)):
        raise InvalidTarget("endpoint must use https (http only for loopback hosts)")
    if not any(fnmatch.fnmatchcase(host, pattern) for pattern in allowed_hosts):
        raise InvalidTarget("endpoint host is not in CIJ_ALLOWED_HOSTS")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return f"{parts.scheme}://{netloc}/" + (f"{path}/" if path else "")


def validate_org_id(raw: str) -> str:
    """Return the org ID if it is a GUID."""
    value = raw.strip()
    if not GUID.fullmatch(value):
        raise InvalidTarget("org ID is not a GUID")
    return value


class SecretSource(Protocol):
    """Somewhere the raw org ID and endpoint can be read from."""

    async def read(self) -> tuple[str, str]:
        """Return (org ID, endpoint) as stored."""

    async def close(self) -> None:
        """Release connections and credentials."""


class StaticSource:
    """Org ID and endpoint given directly (CIJ_ORG_ID / CIJ_PUBLIC_ENDPOINT, for local runs)."""

    def __init__(self, org_id: str | None, endpoint: str | None) -> None:
        self._pair = (org_id, endpoint)

    async def read(self) -> tuple[str, str]:
        org_id, endpoint = self._pair
        if not org_id or not endpoint:
            raise TargetUnavailable("set KEY_VAULT_URL, or CIJ_ORG_ID and CIJ_PUBLIC_ENDPOINT")
        return org_id, endpoint

    async def close(self) -> None:
        return None


class TargetResolver:
    """Caches the target; refreshes it in the background from REFRESH_AHEAD of the TTL on, so that
    once it has been read no request waits for the source again. One read at a time
    (single-flight); stale values (up to STALE_MAX_SECONDS) while the source fails."""

    def __init__(
        self, source: SecretSource, settings: Settings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._source, self._settings, self._clock = source, settings, clock
        self._refresh_after = settings.secret_cache_ttl * REFRESH_AHEAD
        self._target: Target | None = None
        self._fetched_at = 0.0
        self._next_try = 0.0
        self._failures = 0
        self._inflight: asyncio.Task[Target] | None = None

    def fresh(self) -> Target | None:
        """The cached target without awaiting (None before the first read or once older than
        STALE_MAX_SECONDS); starts the background refresh when it is due."""
        target = self._target
        if target is None:
            return None
        age = self._clock() - self._fetched_at
        if age >= self._refresh_after:
            self._refresh_ahead()
            if age >= STALE_MAX_SECONDS:
                return None
        return target

    def _refresh_ahead(self) -> None:
        """Start a background refresh unless one is running or the source is backing off."""
        if self._inflight is None and self._clock() >= self._next_try:
            self._inflight = asyncio.ensure_future(self._refresh())
            # Its failure is logged and served stale by _refresh; nobody awaits it, so retrieve it here.
            self._inflight.add_done_callback(lambda task: task.cancelled() or task.exception())

    async def get(self) -> Target:
        """The current target: the cached one if there is one (see `fresh`), else read now."""
        target = self.fresh()
        if target is not None:
            return target
        now = self._clock()
        if now < self._next_try:  # a recent refresh failed: do not hammer the source
            return self._fallback(
                now,
                TargetUnavailable(
                    "target source failing; backing off", retry_after=max(1, round(self._next_try - now))
                ),
            )
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(self._refresh())
        try:
            return await asyncio.shield(self._inflight)
        except TargetUnavailable as exc:
            return self._fallback(self._clock(), exc)

    def _fallback(self, now: float, exc: TargetUnavailable) -> Target:
        if self._target is not None and now - self._fetched_at < STALE_MAX_SECONDS:
            return self._target
        raise exc

    async def _refresh(self) -> Target:
        try:
            try:
                org_id, endpoint = await asyncio.wait_for(self._source.read(), READ_TIMEOUT_SECONDS)
                target = Target(
                    validate_org_id(org_id), normalise_endpoint(endpoint, self._settings.allowed_hosts)
                )
            except InvalidTarget as exc:
                log.error(
                    "CIJ target rejected: %s; check the secrets %s and %s and CIJ_ALLOWED_HOSTS",
                    exc,
                    self._settings.org_id_secret_name,
                    self._settings.endpoint_secret_name,
                )
                raise TargetUnavailable(str(exc)) from None
            except TargetUnavailable:
                raise
            except Exception as exc:  # any SDK or network failure is the same outage
                status = getattr(exc, "status_code", None)
                raise TargetUnavailable(
                    f"reading the target failed: {type(exc).__name__}"
                    + (f" (HTTP {status})" if status else "")
                ) from None
        except TargetUnavailable as exc:
            target_refreshed(False)
            self._failures += 1
            delay = min(_RETRY_CAP, _RETRY_FLOOR * 2 ** (self._failures - 1))
            self._next_try = self._clock() + delay
            exc.retry_after = max(1, round(delay))
            log.warning(
                "CIJ target refresh failed (%s)%s",
                exc,
                "; serving cached values" if self._target is not None else "",
            )
            raise
        finally:
            self._inflight = None
        self._target, self._fetched_at, self._failures, self._next_try = target, self._clock(), 0, 0.0
        target_refreshed(True)
        return target

    async def close(self) -> None:
        """Stop a refresh in flight and close the underlying source."""
        if self._inflight is not None:
            self._inflight.cancel()
        await self._source.close()
