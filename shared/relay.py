"""The relay's flow: parse → validate → resolve target → forward → map outcome (one instance per loop)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from datetime import UTC, datetime

from . import logging_setup
from . import settings as settings_module
from .appcheck import AppCheckRefused, AppCheckUnavailable, make_app_check
from .circuit import Circuit, CircuitOpen
from .delivery_queue import DeliveryQueue, EnqueueFailed
from .events import BadRequest, InvalidEvent, OpenEvent, parse_batch, parse_event
from .forwarder import MAX_ATTEMPTS, Forwarder, UpstreamMisconfigured, UpstreamRejected, UpstreamUnavailable
from .metrics import count_redelivery
from .ratelimit import RateLimited, make_limiter
from .redelivery import Redelivery, RedeliveryFailed, fingerprint, next_delay
from .responses import ACCEPTED, Reply, accepted, from_error
from .settings import ConfigError, Settings
from .target import SecretSource, StaticSource, Target, TargetResolver, TargetUnavailable

log = logging.getLogger("cij_relay")

_RETRYABLE = (UpstreamUnavailable, TargetUnavailable, CircuitOpen)


async def _ready(reply: Reply) -> Reply:
    """`reply`, as an awaitable."""
    return reply


def where(exc: BaseException) -> str:
    """An exception's type and the file:line it was raised at: never its message, which may hold
    a value from a request or from CIJ."""
    frame = exc.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    place = f" at {frame.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.tb_lineno}" if frame else ""
    return type(exc).__name__ + place


class Unexpected(Exception):
    """A bug in the relay, named by the failing exception's type and place only (never its
    message); answered 503 + Retry-After like any failure that is not the app's or CIJ's."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(f"unexpected {where(exc)}")


def internal_error(exc: BaseException) -> Reply:
    """The answer to a bug (5xx + Retry-After), logged by type and place only."""
    log.error("relay failed unexpectedly (%s)", where(exc))
    return from_error(Unexpected(exc))


def make_source(settings: Settings) -> SecretSource:
    """Key Vault when KEY_VAULT_URL is set, otherwise the CIJ_* settings."""
    if settings.key_vault_url:
        from .keyvault import KeyVaultSource

        return KeyVaultSource(
            settings.key_vault_url, settings.org_id_secret_name, settings.endpoint_secret_name
        )
    return StaticSource(settings.org_id, settings.public_endpoint)


class Relay:
    """Long-lived parts (target cache, HTTP pool, queue client) and the operations on them."""

    def __init__(self, settings: Settings, source: SecretSource | None = None) -> None:
        self.settings = settings
        self.resolver = TargetResolver(source or make_source(settings), settings)
        self.forwarder = Forwarder(settings.max_connections, settings.forward_timeout)
        self.circuit = Circuit(settings.circuit_failure_threshold, settings.circuit_probe_seconds)
        # The store is built whatever DELIVERY_FALLBACK says (it connects only when used): stored
        # events are redelivered even after the fallback was turned off.
        self.store = DeliveryQueue(settings)
        self.queue = self.store if settings.delivery_fallback == "queue" else None
        self.redelivery = Redelivery(settings, self.store, self._send_stored)
        self.limiter = make_limiter(settings.device_rate_per_minute, settings.device_rate_burst)
        self.app_check = make_app_check(settings)

    async def _app_check_refusal(self, token: str | None) -> Reply | None:
        """401 (or 503 while the keys are unreadable) when App Check refuses the request."""
        try:
            await self.app_check.check(token)  # type: ignore[union-attr]
        except (AppCheckRefused, AppCheckUnavailable) as exc:
            return from_error(exc)
        return None

    async def _checked_event(self, body: bytes, content_type: str | None, token: str | None) -> Reply:
        """`handle_event` behind App Check."""
        refused = await self._app_check_refusal(token)
        return refused if refused is not None else await self._event(body, content_type)

    def _over_limit(self, event: OpenEvent) -> Reply | None:
        """429 when the event's device is over its rate limit (the event is not forwarded)."""
        wait = self.limiter.acquire(event.device_token) if self.limiter is not None else 0.0
        return from_error(RateLimited(wait)) if wait else None

    async def deliver(self, event: OpenEvent, deadline: float | None = None) -> Reply:
        """Forward one valid event and answer as the single route would, logging one line. The
        deadline (FORWARD_TIMEOUT_SECONDS from now unless given) bounds the whole of it, the target
        resolution included."""
        started, received_at = time.perf_counter(), time.time()
        if deadline is None:
            deadline = time.monotonic() + self.settings.forward_timeout
        attempts, outcome, reason = 0, "accepted", "-"
        try:
            attempts = await self._send(event, deadline)
            reply = ACCEPTED
        except _RETRYABLE as exc:
            attempts, reason = getattr(exc, "attempts", 0), getattr(exc, "reason", "target unavailable")
            reply, outcome = await self._fall_back(event, received_at, exc)
        except UpstreamRejected as exc:
            attempts, reason = exc.attempts, exc.reason
            reply, outcome = from_error(exc), "rejected"
        except UpstreamMisconfigured as exc:
            attempts, reason = exc.attempts, exc.reason
            log.error(
                "CIJ answered HTTP %d: check the org ID and endpoint secrets and that the org "
                "has push enabled",
                exc.upstream_status,
            )
            reply, outcome = from_error(exc), "misconfigured"
        except Exception as exc:  # a bug: 5xx + Retry-After, and the event kept when it can be
            reason = "internal error"
            log.error("relay failed unexpectedly (%s) tracking_id=%s", where(exc), event.tracking_id)
            reply, outcome = await self._fall_back(event, received_at, Unexpected(exc))
            outcome = "queued" if outcome == "queued" else "error"
        if log.isEnabledFor(logging.INFO):  # skip the hashing and formatting when INFO is filtered
            log.info(
                "event outcome=%s status=%d tracking_id=%s device=%s attempts=%d reason=%s ms=%.1f",
                outcome,
                reply.status,
                event.tracking_id,
                fingerprint(event.device_token),
                attempts,
                reason,
                (time.perf_counter() - started) * 1000,
            )
        return reply

    async def _resolve(self, deadline: float) -> Target:
        """The target, waited for no longer than the event's deadline."""
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                return await self.resolver.get()
        except TimeoutError:
            raise TargetUnavailable("reading the target timed out") from None

    async def _send(self, event: OpenEvent, deadline: float) -> int:
        """Post the event to the current target through the circuit (the probe makes one attempt;
        others stop retrying once the circuit opens). Returns the attempts CIJ's 2xx took."""
        target = self.resolver.fresh() or await self._resolve(deadline)
        probe = self.circuit.enter()
        try:
            attempts = await self.forwarder.send(
                target, event, deadline, 1 if probe else MAX_ATTEMPTS, self.circuit.is_closed
            )
        except BaseException as exc:
            self.circuit.settle(probe, exc)
            raise
        self.circuit.settle(probe, None)
        return attempts

    async def _fall_back(self, event: OpenEvent, received_at: float, exc: Exception) -> tuple[Reply, str]:
        if self.queue is None:
            return from_error(exc), "unavailable"
        # While the circuit is open, CIJ has been failing for a while: the first redelivery waits
        # as a failed one would (about a minute), instead of meeting the open circuit at once.
        delay = next_delay(0, self.settings.redelivery_max_delay) if isinstance(exc, CircuitOpen) else 0
        try:
            await self.queue.put(event, datetime.fromtimestamp(received_at, UTC), delay=delay)
        except EnqueueFailed as failure:
            log.error("enqueue for redelivery failed (%s) after: %s", failure, exc)
            return from_error(exc), "unavailable"
        return accepted(queued=True), "queued"

    def handle_event(
        self, body: bytes, content_type: str | None, app_check_token: str | None = None
    ) -> Awaitable[Reply]:
        """`POST /api/events`. Returns `deliver`'s coroutine itself: one coroutine less per event."""
        if self.app_check is not None:
            return self._checked_event(body, content_type, app_check_token)
        return self._event(body, content_type)

    def _event(self, body: bytes, content_type: str | None) -> Awaitable[Reply]:
        """Parse, rate-limit and deliver one event."""
        try:
            event = parse_event(body, content_type)
        except BadRequest as exc:
            return _ready(from_error(exc))
        if (limited := self._over_limit(event)) is not None:
            return _ready(limited)
        return self.deliver(event)

    async def handle_batch(
        self, body: bytes, content_type: str | None, app_check_token: str | None = None
    ) -> Reply:
        """`POST /api/events/batch`: per-item results in request order, one shared deadline."""
        if self.app_check is not None and (refused := await self._app_check_refusal(app_check_token)):
            return refused  # one token per request, checked once for all its events
        try:
            items = parse_batch(body, content_type)
        except BadRequest as exc:
            return from_error(exc)
        deadline = time.monotonic() + self.settings.forward_timeout
        gate = asyncio.Semaphore(self.settings.batch_concurrency)

        async def one(item: OpenEvent | InvalidEvent | Reply) -> Reply:
            if isinstance(item, Reply):
                return item
            if isinstance(item, InvalidEvent):
                return from_error(item)
            async with gate:
                return await self.deliver(item, deadline)

        # The limit is taken in request order, before anything is sent: the last items are over it.
        checked = [(self._over_limit(i) or i) if isinstance(i, OpenEvent) else i for i in items]
        replies = await asyncio.gather(*(one(item) for item in checked))
        results = []
        for index, reply in enumerate(replies):
            result: dict[str, object] = {"index": index, "status": reply.status}
            if reply.status >= 300:
                result["error"] = reply.body
                if "Retry-After" in reply.headers:
                    result["retryAfter"] = int(reply.headers["Retry-After"])
            elif reply.headers.get("X-Delivery") == "queued":
                result["delivery"] = "queued"
            results.append(result)
        return Reply(200, {"results": results})

    async def health(self) -> Reply:
        """`GET /api/health`: 200 when the target resolves, 503 otherwise, with the circuit's state."""
        circuit = self.circuit.state
        try:
            await self.resolver.get()
        except TargetUnavailable as exc:
            body = {"status": "unavailable", "circuit": circuit}
            return Reply(503, body, {"Retry-After": str(exc.retry_after)})
        return Reply(200, {"status": "ok", "circuit": circuit})

    async def redeliver(self, message: bytes) -> None:
        """Queue trigger: deliver a stored event, or store it again for later, or give up on it
        (shared/redelivery.py); RedeliveryFailed when storage fails, so that the host retries."""
        await self.redelivery.handle(message)

    def _send_stored(self, event: OpenEvent) -> Awaitable[int]:
        """Send a stored event through the circuit, with FORWARD_TIMEOUT_SECONDS to do it."""
        return self._send(event, time.monotonic() + self.settings.forward_timeout)

    async def aclose(self) -> None:
        """Close the HTTP pool, the target source, the queue client and the App Check key fetcher."""
        await self.forwarder.close()
        if self.app_check is not None:
            await self.app_check.close()
        await self.resolver.close()
        await self.store.close()


class Unconfigured:
    """Stands in for the relay while its settings are invalid: every HTTP route answers 503
    (settings-invalid, with Retry-After) and queued events stay queued for the host to retry."""

    def __init__(self, error: ConfigError) -> None:
        self.error, self._reply = error, from_error(error)

    async def handle_event(
        self, body: bytes, content_type: str | None, app_check_token: str | None = None
    ) -> Reply:
        """503: nothing is forwarded without valid settings."""
        return self._reply

    async def handle_batch(
        self, body: bytes, content_type: str | None, app_check_token: str | None = None
    ) -> Reply:
        """503, as for a single event."""
        return self._reply

    async def health(self) -> Reply:
        """503: the relay cannot work until its settings are fixed."""
        return self._reply

    async def redeliver(self, message: bytes) -> None:
        """Leave the message queued: the host retries it."""
        count_redelivery("unavailable")
        raise RedeliveryFailed(f"relay settings invalid: {self.error}")


_relay: Relay | None = None
_relay_loop: asyncio.AbstractEventLoop | None = None
_reported: str | None = None  # the last settings error logged, so that it is logged once


def current() -> Relay | Unconfigured:
    """The relay bound to the running loop, built on first use (never at import); while the
    settings are invalid, a stand-in that refuses work (they are read again on the next call)."""
    global _relay, _relay_loop, _reported
    loop = asyncio.get_running_loop()
    if _relay is None or _relay_loop is not loop:
        # A relay from another loop cannot be reused (its session is bound to that loop).
        try:
            settings = settings_module.load()
        except ConfigError as exc:
            if str(exc) != _reported:
                log.error("relay settings invalid, answering 503 until fixed: %s", exc)
                _reported = str(exc)
            return Unconfigured(exc)
        logging_setup.apply(settings)
        _relay, _relay_loop = Relay(settings), loop
    return _relay


async def reset() -> None:
    """Close and forget the current relay (tests, shutdown); the next call builds a new one."""
    global _relay, _relay_loop, _reported
    relay, _relay, _relay_loop, _reported = _relay, None, None, None
    if relay is not None:
        try:
            await relay.aclose()
        except RuntimeError:  # bound to a loop that is already closed
            pass


__all__ = [
    "RedeliveryFailed",
    "Relay",
    "Unconfigured",
    "Unexpected",
    "current",
    "fingerprint",
    "internal_error",
    "reset",
    "where",
]
