"""Forwards events to CIJ on one pooled aiohttp session, retrying transient failures."""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
import ssl
import time

import aiohttp

from .events import OpenEvent
from .metrics import timed_cij
from .target import Target

MAX_ATTEMPTS = 4
# A retry is only made if, after its backoff, at least this much of the deadline is left: an attempt
# with a few milliseconds would only time out and hide why the previous one failed.
MIN_ATTEMPT_SECONDS = 0.05
BACKOFF_BASE, BACKOFF_CAP = 0.2, 2.0
DEFAULT_RETRY_AFTER = 5
MAX_RETRY_AFTER = 3600
# Few default headers and no skip_auto_headers: aiohttp merges both on every request (~25 µs).
_HEADERS = {"Content-Type": "application/json", "User-Agent": "cij-push-relay/1.0"}


class UpstreamRejected(Exception):
    """CIJ answered 400: the event is wrong and must not be retried."""

    upstream_status = 400


class UpstreamMisconfigured(Exception):
    """CIJ answered a status that means the relay's target is wrong (401/403/404/other)."""

    def __init__(self, upstream_status: int) -> None:
        super().__init__(f"CIJ answered HTTP {upstream_status}")
        self.upstream_status = upstream_status


class UpstreamUnavailable(Exception):
    """CIJ could not take the event within the deadline; the app should retry later."""

    def __init__(
        self, status: int, reason: str, retry_after: int, upstream_status: int | None = None
    ) -> None:
        super().__init__(reason)
        self.status, self.retry_after = status, retry_after
        self.upstream_status = upstream_status  # CIJ's last status; None when it never answered


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return min(max(0.0, when.timestamp() - time.time()), MAX_RETRY_AFTER)


def backoff(attempt: int) -> float:
    """Exponential backoff with full jitter before retry number `attempt` (1-based)."""
    return random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt))  # noqa: S311  # nosec B311


def _failure_status(upstream_status: int | None, timed_out: bool) -> int:
    if timed_out or upstream_status in (408, 504):
        return 504
    if upstream_status in (429, 503):
        return 503
    return 502


class Forwarder:
    """Owns the process-wide ClientSession; created lazily on the running loop."""

    def __init__(self, max_connections: int, timeout: float) -> None:
        self._limit, self._timeout = max_connections, timeout
        self._whole_budget = aiohttp.ClientTimeout(total=timeout)  # built once: most sends use it
        self._session: aiohttp.ClientSession | None = None

    def _open_session(self) -> aiohttp.ClientSession:
        """Create the pooled session on the running loop (on first use, and after close())."""
        connector = aiohttp.TCPConnector(
            limit=self._limit,
            keepalive_timeout=30,
            ttl_dns_cache=300,
            ssl=ssl.create_default_context(),  # honours SSL_CERT_FILE
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers=_HEADERS,
            # No cookie jar: a cookie CIJ sets while taking one device's event must not ride along
            # with every other device's; answers are drained unread, so never decompressed.
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
        )
        return self._session

    @timed_cij
    async def send(self, target: Target, event: OpenEvent, deadline: float | None = None) -> int:
        """Post one event, retrying 408/429/5xx/network errors with backoff until `deadline` (a
        time.monotonic() value; default: FORWARD_TIMEOUT_SECONDS from now). Returns the number of
        attempts CIJ's 2xx took."""
        clock = time.monotonic
        timeout: aiohttp.ClientTimeout | None = None
        if deadline is None:  # the first attempt has the whole budget
            deadline, timeout = clock() + self._timeout, self._whole_budget
        body = event.upstream_json()
        session = self._session if self._session is not None else self._open_session()
        url = target.events_url
        for attempt in range(1, MAX_ATTEMPTS + 1):
            status: int | None = None
            hint: float | None = None
            timed_out = False
            try:
                if timeout is None:
                    remaining = deadline - clock()
                    if remaining <= 0:
                        raise TimeoutError
                    timeout = aiohttp.ClientTimeout(total=remaining)
                # Awaited rather than `async with`: two coroutine layers fewer around every request.
                # Redirects are not followed: events go to the allow-listed endpoint or nowhere.
                resp = await session.post(url, data=body, timeout=timeout, allow_redirects=False)
                try:
                    status = resp.status
                    if status >= 300:
                        hint = parse_retry_after(resp.headers.get("Retry-After"))
                    await resp.read()  # drained: the connection is back in the pool
                except BaseException:
                    resp.release()
                    raise
            except TimeoutError:
                timed_out = True
            except aiohttp.ClientError:
                pass  # connection refused/reset: retryable
            if status is not None and 200 <= status < 300:
                return attempt
            if status == 400:
                raise UpstreamRejected("CIJ rejected the event")
            if status is not None and status != 408 and status != 429 and status < 500:
                raise UpstreamMisconfigured(status)
            delay = hint if hint is not None else backoff(attempt)
            if attempt == MAX_ATTEMPTS or clock() + delay + MIN_ATTEMPT_SECONDS >= deadline:
                reason = "timed out" if timed_out else f"HTTP {status}" if status else "connection failed"
                retry_after = math.ceil(hint) if hint else DEFAULT_RETRY_AFTER
                raise UpstreamUnavailable(
                    _failure_status(status, timed_out),
                    f"CIJ unavailable after {attempt} attempt(s): {reason}",
                    max(1, retry_after),
                    upstream_status=status,
                )
            timeout = None  # later attempts get what is left of the deadline
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def close(self) -> None:
        """Close the pooled session."""
        if self._session is not None:
            await self._session.close()
            self._session = None
