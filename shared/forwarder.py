"""Forwards events to CIJ on one pooled aiohttp session, retrying transient failures."""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
import re
import ssl
import time
from collections.abc import Callable
from errno import ECONNREFUSED, ECONNRESET

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
# How late after FORWARD_TIMEOUT_SECONDS an answer may come (scheduling, mapping, logging): the
# documented margin of the deadline (docs/contract.md, SECURITY.md).
DEADLINE_MARGIN_SECONDS = 0.25
# CIJ's answers are read at most this far (its 202 has a tiny body, or none); the rest is never
# read: the connection is closed instead of drained. Reading them waits at most ANSWER_READ_SECONDS.
MAX_ANSWER_BYTES = 4096
ANSWER_READ_SECONDS = 0.1
# aiohttp rounds timeouts of 5 s or more up to the next whole second of the loop's clock (up to 1 s
# late); an infinite threshold keeps every timeout exact.
_EXACT = math.inf
# Few default headers and no skip_auto_headers: aiohttp merges both on every request (~25 µs).
_HEADERS = {"Content-Type": "application/json", "User-Agent": "cij-push-relay/1.0"}
_DELTA_SECONDS = re.compile(r"[0-9]{1,10}")  # ASCII digits only: str.isdigit() takes "²" and "١"
_MAX_DATE_CHARS = 64


class UpstreamRejected(Exception):
    """CIJ answered 400: the event is wrong and must not be retried."""

    upstream_status = 400

    def __init__(self, message: str = "CIJ rejected the event", attempts: int = 1) -> None:
        super().__init__(message)
        self.attempts, self.reason = attempts, "HTTP 400"


class UpstreamMisconfigured(Exception):
    """CIJ answered a status that means the relay's target is wrong (401/403/404/other)."""

    def __init__(self, upstream_status: int, attempts: int = 1) -> None:
        super().__init__(f"CIJ answered HTTP {upstream_status}")
        self.upstream_status, self.attempts = upstream_status, attempts
        self.reason = f"HTTP {upstream_status}"


class UpstreamUnavailable(Exception):
    """CIJ could not take the event within the deadline; the app should retry later. `reason` says
    why the last attempt failed (timeout, refused, reset, HTTP 503, header too large, ...)."""

    def __init__(
        self,
        status: int,
        reason: str,
        retry_after: int,
        upstream_status: int | None = None,
        attempts: int = 0,
        hint: float | None = None,
    ) -> None:
        super().__init__(f"CIJ unavailable after {attempts} attempt(s): {reason}" if attempts else reason)
        self.status, self.reason, self.retry_after, self.attempts = status, reason, retry_after, attempts
        self.upstream_status = upstream_status  # CIJ's last status; None when it never answered
        self.hint = hint  # CIJ's own Retry-After, in seconds, when it gave one


def parse_retry_after(value: str | None) -> float | None:
    """Seconds (0 to MAX_RETRY_AFTER) from a Retry-After header (delta-seconds or HTTP-date), or
    None for anything else: the value comes from outside and may be any text."""
    if not value:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        return float(min(int(value), MAX_RETRY_AFTER))
    if len(value) > _MAX_DATE_CHARS or not value.isascii():
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
        seconds = when.timestamp() - time.time() if when.tzinfo is not None else None
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if seconds is None or not math.isfinite(seconds):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER)


def backoff(attempt: int) -> float:
    """Exponential backoff with full jitter before retry number `attempt` (1-based)."""
    return random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt))  # noqa: S311  # nosec B311


def _failure_status(upstream_status: int | None, timed_out: bool) -> int:
    if timed_out or upstream_status in (408, 504):
        return 504
    if upstream_status in (429, 503):
        return 503
    return 502


def why(exc: BaseException) -> str:
    """A short, value-free name for why an attempt failed (for the outcome log line)."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "dns"
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError):
        return "tls"
    if isinstance(exc, aiohttp.ClientResponseError):  # the answer's head did not parse
        return "header too large" if "Got more than" in str(exc.message) else "malformed answer"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "closed early"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "body broken"
    errno = getattr(exc, "errno", None)
    if errno == ECONNREFUSED or isinstance(exc, ConnectionRefusedError):
        return "refused"
    if errno == ECONNRESET or isinstance(exc, ConnectionResetError):
        return "reset"
    return "connection failed"


async def _read_whole(content: aiohttp.StreamReader, deadline: float) -> bool:
    """True when the body ended within MAX_ANSWER_BYTES and ANSWER_READ_SECONDS (never past `deadline`)."""
    if content.is_eof():  # the whole answer has arrived (CIJ's usual small 202): nothing to wait for
        return len(content.read_nowait(MAX_ANSWER_BYTES + 1)) <= MAX_ANSWER_BYTES and content.at_eof()
    left = MAX_ANSWER_BYTES + 1
    async with asyncio.timeout(max(0.0, min(deadline - time.monotonic(), ANSWER_READ_SECONDS))):
        while left > 0:
            chunk = await content.read(left)
            if not chunk:
                return True
            left -= len(chunk)
    return False


async def let_go(resp: aiohttp.ClientResponse, deadline: float) -> None:
    """Read at most MAX_ANSWER_BYTES of the answer; release the connection to the pool if that was
    the whole body, else close it (an unread body is never drained)."""
    try:
        whole = await _read_whole(resp.content, deadline)
    except (aiohttp.ClientError, TimeoutError):
        whole = False
    if whole:
        resp.release()
    else:
        resp.close()


class Forwarder:
    """Owns the process-wide ClientSession; created lazily on the running loop."""

    def __init__(self, max_connections: int, timeout: float) -> None:
        self._limit, self._timeout = max_connections, timeout
        # built once: most sends use it
        self._whole_budget = aiohttp.ClientTimeout(total=timeout, ceil_threshold=_EXACT)
        self._session: aiohttp.ClientSession | None = None

    def _open_session(self) -> aiohttp.ClientSession:
        """Create the pooled session on the running loop (on first use, and after close())."""
        connector = aiohttp.TCPConnector(
            limit=self._limit,
            keepalive_timeout=30,
            ttl_dns_cache=300,
            ssl=ssl.create_default_context(),  # honours SSL_CERT_FILE
            timeout_ceil_threshold=_EXACT,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers=_HEADERS,
            # No cookie jar: a cookie CIJ sets while taking one device's event must not ride along
            # with every other device's; answers are never decoded, so never decompressed.
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
        )
        return self._session

    @timed_cij
    async def send(
        self,
        target: Target,
        event: OpenEvent,
        deadline: float | None = None,
        max_attempts: int = MAX_ATTEMPTS,
        keep_trying: Callable[[], bool] | None = None,
    ) -> int:
        """Post one event, retrying 408/429/5xx/network errors with backoff until `deadline` (a
        time.monotonic() value; default: FORWARD_TIMEOUT_SECONDS from now), at most `max_attempts`
        times and only while `keep_trying()` holds. Returns the number of attempts CIJ's 2xx took;
        the exceptions carry the attempts made and why the last failed."""
        clock = time.monotonic
        timeout: aiohttp.ClientTimeout | None = None
        if deadline is None:  # the first attempt has the whole budget
            deadline, timeout = clock() + self._timeout, self._whole_budget
        body = event.upstream_json()
        session = self._session if self._session is not None else self._open_session()
        url = target.events_url
        for attempt in range(1, max_attempts + 1):
            status: int | None = None
            hint: float | None = None
            reason = "timeout"
            try:
                if timeout is None:
                    remaining = deadline - clock()
                    if remaining <= 0:
                        raise TimeoutError
                    timeout = aiohttp.ClientTimeout(total=remaining, ceil_threshold=_EXACT)
                # Awaited rather than `async with`: two coroutine layers fewer around every request.
                # Redirects are not followed: events go to the allow-listed endpoint or nowhere.
                resp = await session.post(url, data=body, timeout=timeout, allow_redirects=False)
                try:
                    status = resp.status
                    if status >= 300:
                        hint = parse_retry_after(resp.headers.get("Retry-After"))
                finally:
                    await let_go(resp, deadline)
            except (aiohttp.ClientError, TimeoutError) as exc:  # refused, reset, garbage: retryable
                reason = why(exc)
            if status is not None:
                if 200 <= status < 300:
                    return attempt
                if status == 400:
                    raise UpstreamRejected(attempts=attempt)
                if status != 408 and status != 429 and status < 500:
                    raise UpstreamMisconfigured(status, attempt)
                reason = f"HTTP {status}"
            delay = hint if hint is not None else backoff(attempt)
            if attempt < max_attempts and clock() + delay + MIN_ATTEMPT_SECONDS < deadline:
                timeout = None  # later attempts get what is left of the deadline
                # keep_trying is asked before the backoff and after it (it may change meanwhile).
                if keep_trying is None or keep_trying():
                    await asyncio.sleep(delay)
                    if keep_trying is None or keep_trying():
                        continue
            retry_after = math.ceil(hint) if hint else DEFAULT_RETRY_AFTER
            raise UpstreamUnavailable(
                _failure_status(status, reason == "timeout"),
                reason,
                max(1, retry_after),
                upstream_status=status,
                attempts=attempt,
                hint=hint,
            )
        raise AssertionError("unreachable")  # pragma: no cover

    async def close(self) -> None:
        """Close the pooled session."""
        if self._session is not None:
            await self._session.close()
            self._session = None
